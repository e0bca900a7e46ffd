package browsertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

// pushd is one pushd process (restartable on the same address).
type pushd struct {
	t      *testing.T
	addr   string
	apiKey string
	secret string
	args   []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPushd starts pushd on a free loopback port with short heartbeats;
// extra flags are appended.
func startPushd(t *testing.T, extra ...string) *pushd {
	t.Helper()
	needBrowser(t) // without a browser there is nothing to test (and no pushd was built)
	p := &pushd{
		t:      t,
		addr:   freeAddr(t),
		apiKey: "test-key-" + randHex(8),
		secret: "test-secret-" + randHex(16), // at least 16 bytes
		logs:   &syncBuffer{},
	}
	p.args = append([]string{
		"--addr", p.addr,
		"--api-key", p.apiKey,
		"--jwt-secret", p.secret,
		"--heartbeat-interval", "1s",
		"--heartbeat-timeout", "2s",
		"--demo-user", "",
	}, extra...)
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pushd output:\n%s", tail(p.logs.String(), 60))
		}
	})
	return p
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func (p *pushd) start() {
	p.t.Helper()
	p.mu.Lock()
	cmd := exec.Command(pushdBin, p.args...)
	cmd.Env = pushdEnv()
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatalf("start pushd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			p.t.Fatalf("pushd exited at start:\n%s", tail(p.logs.String(), 30))
		default:
		}
		res, err := http.Get(p.URL() + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pushd not healthy after 30s (%v):\n%s", err, tail(p.logs.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pushdEnv is the environment without PUSH_* variables, so only our flags count.
func pushdEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSH_") {
			env = append(env, kv)
		}
	}
	return env
}

// stop ends pushd with SIGTERM (graceful) and waits for it.
func (p *pushd) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		p.t.Errorf("pushd did not exit within 15s of SIGTERM")
	}
}

func (p *pushd) restart() {
	p.t.Helper()
	p.stop()
	p.start()
}

func (p *pushd) URL() string { return "http://" + p.addr }

// call sends a REST request with the API key and decodes the JSON answer.
func (p *pushd) call(method, path string, body any) (int, map[string]any) {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.URL()+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.apiKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			p.t.Fatalf("%s %s: %d, not JSON: %q", method, path, res.StatusCode, raw)
		}
	}
	return res.StatusCode, out
}

// mustCall is call that fails the test unless the status is 2xx.
func (p *pushd) mustCall(method, path string, body any) map[string]any {
	p.t.Helper()
	code, out := p.call(method, path, body)
	if code/100 != 2 {
		p.t.Fatalf("%s %s: status %d: %v", method, path, code, out)
	}
	return out
}

// token mints a subscriber token for user through POST /api/ws/connect.
func (p *pushd) token(user string) string {
	p.t.Helper()
	out := p.mustCall("POST", "/api/ws/connect", map[string]any{"userId": user})
	tok, _ := out["token"].(string)
	if tok == "" {
		p.t.Fatalf("POST /api/ws/connect: no token in %v", out)
	}
	return tok
}

// notify pushes a notification and returns its event id.
func (p *pushd) notify(user, title string) string {
	p.t.Helper()
	out := p.mustCall("POST", "/api/ws/push/notification", map[string]any{"userId": user, "title": title, "body": "body of " + title})
	id, _ := out["id"].(string)
	return id
}

// connections returns the user's live connections (GET /api/ws/connections/:userId).
func (p *pushd) connections(user string) []map[string]any {
	p.t.Helper()
	out := p.mustCall("GET", "/api/ws/connections/"+url.PathEscape(user), nil)
	var conns []map[string]any
	list, _ := out["connections"].([]any)
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			conns = append(conns, m)
		}
	}
	return conns
}

// testDatabase creates a fresh database in the PostgreSQL server of
// PUSH_TEST_DATABASE_URL and returns its URL; it is dropped at cleanup.
// The second result is false when the variable is not set.
func testDatabase(t *testing.T) (string, bool) {
	t.Helper()
	base := os.Getenv("PUSH_TEST_DATABASE_URL")
	if base == "" {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("PUSH_TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(context.Background())
	name := "pushd_browsertest_" + randHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("PUSH_TEST_DATABASE_URL: %v", err)
	}
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u.Path = "/" + name
		return u.String(), true
	}
	return fmt.Sprintf("%s dbname=%s", base, name), true
}

// httpPost posts a JSON body with the API key; safe to call from any goroutine.
func httpPost(p *pushd, path, body string) (int, error) {
	req, err := http.NewRequest("POST", p.URL()+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+p.apiKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// expiredToken signs a subscriber token for user that expired a minute ago.
func (p *pushd) expiredToken(t *testing.T, user string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user,
		"iat": time.Now().Add(-2 * time.Hour).Unix(),
		"exp": time.Now().Add(-time.Minute).Unix(),
	})
	s, err := tok.SignedString([]byte(p.secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
