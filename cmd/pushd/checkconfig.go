package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushd/pushd/persist"
)

// secretFlags are printed masked by check-config.
var secretFlags = map[string]bool{"api-key": true, "jwt-secret": true}

// runCheckConfig is `pushd check-config`: it reads flags and environment as
// a start would, validates everything a start checks — including that the
// database answers and its schema is current — without listening or
// changing anything, and prints the effective configuration with secrets
// masked. Exit status 0 when pushd would start with it, 2 otherwise.
func runCheckConfig(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, fs, source, err := loadConfig(args, getenv)
	if errors.Is(err, errHelp) {
		usage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushd: %v\n", oneLine(err))
		return 2
	}
	printEffective(stdout, cfg, fs, source)
	var problems []string
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		problems = append(problems, fmt.Sprintf("--addr %q: %v", cfg.Addr, err))
	}
	if cfg.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.PprofAddr); err != nil {
			problems = append(problems, fmt.Sprintf("--pprof-addr %q: %v", cfg.PprofAddr, err))
		}
	}
	if cfg.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			problems = append(problems, "TLS certificate and key: "+oneLine(err))
		}
	}
	if cfg.DatabaseURL == "" {
		fmt.Fprintln(stdout, "store: embedded in-memory (not durable across restarts)")
	} else if line, err := checkDatabase(ctx, cfg.DatabaseURL); err != nil {
		problems = append(problems, "database: "+oneLine(err))
	} else {
		fmt.Fprintln(stdout, line)
	}
	if cfg.generatedKey || cfg.generatedJWT {
		fmt.Fprintln(stdout, "note: --api-key or --jwt-secret is not set; each start generates a new one (nodes of one service need the same)")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "pushd: %s\n", p)
		}
		return 2
	}
	fmt.Fprintln(stdout, "configuration OK")
	return 0
}

// checkDatabase connects and compares the schema with this build's.
func checkDatabase(ctx context.Context, dbURL string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := persist.CheckSchema(cctx, dbURL)
	if err != nil {
		return "", err
	}
	if len(st.Unknown) > 0 {
		return "", fmt.Errorf("the schema has migrations this pushd does not know (%v): a newer pushd migrated it", st.Unknown)
	}
	if len(st.Pending) > 0 {
		names := make([]string, len(st.Pending))
		for i, m := range st.Pending {
			names[i] = m.Name
		}
		return "", fmt.Errorf("the schema is not current: %s not applied (run pushd migrate, or let pushd apply them at start)", strings.Join(names, ", "))
	}
	return fmt.Sprintf("database: PostgreSQL %s reachable, schema current (%d migrations)", st.ServerVersion, len(st.Applied)), nil
}

// printEffective writes every flag's value and where it came from.
func printEffective(w io.Writer, cfg *config, fs *flag.FlagSet, source map[string]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "flag\tvalue\tfrom")
	fs.VisitAll(func(f *flag.Flag) {
		val := f.Value.String()
		from := source[f.Name]
		switch from {
		case "env":
			from = "env " + envName(f.Name)
		case "":
			from = "default"
		}
		switch {
		case f.Name == "api-key" && cfg.generatedKey, f.Name == "jwt-secret" && cfg.generatedJWT:
			val = "(generated at start)"
		case secretFlags[f.Name]:
			val = maskSecret(val)
		case f.Name == "database-url":
			val = maskDatabaseURL(val)
		}
		if val == "" {
			val = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, val, from)
	})
	_ = tw.Flush()
}

// maskSecret shows that a secret is set, and its length, never its value.
func maskSecret(s string) string {
	return fmt.Sprintf("******** (%d bytes)", len(s))
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// maskDatabaseURL hides the password of a postgres:// URL or of a
// key=value connection string.
func maskDatabaseURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return dsnPassword.ReplaceAllString(s, "${1}xxxxx")
}
