package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/persist"
)

func runCmd(t *testing.T, args []string, environ map[string]string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, env(environ), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, []string{"version"}, nil)
	if code != 0 || !regexp.MustCompile(`^pushd \S+.* go1\.\d+\S* \w+/\w+\n$`).MatchString(out) {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	code, _, errOut := runCmd(t, []string{"version", "--json"}, nil)
	if code != 2 || !strings.HasPrefix(errOut, "pushd: ") {
		t.Fatalf("version with an argument: exit %d, %q", code, errOut)
	}
}

func TestCheckConfigPrintsTheEffectiveConfigurationMasked(t *testing.T) {
	const key, secret = "api-key-that-must-not-show", "jwt-secret-that-must-not-show"
	code, out, errOut := runCmd(t, []string{"check-config", "--jwt-secret", secret, "--offline-max-count", "7"},
		map[string]string{"PUSH_API_KEY": key, "PUSH_HEARTBEAT_INTERVAL": "5s"})
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^offline-max-count\s+7\s+flag$`),
		regexp.MustCompile(`(?m)^heartbeat-interval\s+5s\s+env PUSH_HEARTBEAT_INTERVAL$`),
		regexp.MustCompile(`(?m)^addr\s+:3001\s+default$`),
		regexp.MustCompile(`(?m)^api-key\s+\*+ \(26 bytes\)\s+env PUSH_API_KEY$`),
		regexp.MustCompile(`(?m)^jwt-secret\s+\*+ \(29 bytes\)\s+flag$`),
		regexp.MustCompile(`(?m)^store: embedded in-memory`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, key) || strings.Contains(out+errOut, secret) {
		t.Fatalf("a secret was printed:\n%s", out)
	}
	// Generated secrets are said to be generated, not shown.
	code, out, _ = runCmd(t, []string{"check-config"}, nil)
	if code != 0 || !regexp.MustCompile(`(?m)^api-key\s+\(generated at start\)`).MatchString(out) || !strings.Contains(out, "note: --api-key or --jwt-secret is not set") {
		t.Fatalf("generated secrets: exit %d\n%s", code, out)
	}
}

func TestCheckConfigRejectsWhatAStartRejects(t *testing.T) {
	dir := t.TempDir()
	notCert := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(notCert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"bad duration":   {"--offline-ttl", "forever"},
		"bad address":    {"--addr", "localhost"},
		"bad pprof addr": {"--pprof-addr", "6060"},
		"bad TLS files":  {"--tls-cert", notCert, "--tls-key", notCert},
		"no database":    {"--database-url", "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"},
		"stray argument": {"extra"},
	} {
		code, _, errOut := runCmd(t, append([]string{"check-config"}, args...), nil)
		if code != 2 || !strings.HasPrefix(errOut, "pushd: ") {
			t.Errorf("%s: exit %d, stderr %q", name, code, errOut)
		}
	}
}

// TestCheckConfigChecksTheSchema: a fresh database fails (the schema is
// not applied), a migrated one passes, and one migrated by a newer pushd
// fails; the URL's password is never printed.
func TestCheckConfigChecksTheSchema(t *testing.T) {
	db := pgtest.NewDB(t)
	withPassword := db
	if u, err := url.Parse(db); err == nil && u.Scheme != "" {
		u.User = url.UserPassword(u.User.Username(), "hunter2-secret") // trust auth ignores it
		withPassword = u.String()
	}
	code, out, errOut := runCmd(t, []string{"check-config", "--database-url", withPassword}, nil)
	if code != 2 || !strings.Contains(errOut, "not current") || !strings.Contains(errOut, "0001_log") {
		t.Fatalf("fresh database: exit %d, %s", code, errOut)
	}
	if strings.Contains(out+errOut, "hunter2") {
		t.Fatalf("the database password was printed:\n%s%s", out, errOut)
	}
	ctx := context.Background()
	if err := persist.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, []string{"check-config", "--database-url", withPassword}, nil)
	if code != 0 || !strings.Contains(out, "schema current") || !strings.Contains(out, "configuration OK") {
		t.Fatalf("migrated database: exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "hunter2") {
		t.Fatalf("the database password was printed:\n%s", out)
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO push.schema_migrations (version, name) VALUES (9999, '9999_future')`); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd(t, []string{"check-config", "--database-url", db}, nil)
	if code != 2 || !strings.Contains(errOut, "newer pushd") {
		t.Fatalf("database of a newer pushd: exit %d, %s", code, errOut)
	}
}

func TestMaskDatabaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db?password=pw":             "postgres://u@h/db?password=xxxxx",
		"host=h user=u password=pw dbname=d":        "host=h user=u password=xxxxx dbname=d",
		"host=h password='p w' dbname=d":            "host=h password=xxxxx dbname=d",
		"postgres://u@h/db":                         "postgres://u@h/db",
	} {
		if got := maskDatabaseURL(in); got != want {
			t.Errorf("maskDatabaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}
