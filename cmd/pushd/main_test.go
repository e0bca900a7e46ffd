package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigDefaultsFollowTheContract(t *testing.T) {
	c, err := parseConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":3001" || c.HeartbeatInterval != 30*time.Second || c.HeartbeatTimeout != 10*time.Second ||
		!c.OfflineEnabled || c.OfflineMaxCount != 100 || c.OfflineTTL != 24*time.Hour || !c.AuthRequired ||
		c.AuthTimeout != 10*time.Second || c.MaxMessageBytes != 65536 || c.SSEPadding != 2048 ||
		c.IdempotencyTTL != 24*time.Hour {
		t.Fatalf("defaults differ from CONTRACT §1: %+v", c)
	}
	if c.LogFormat != "text" || c.MaxConnections != 0 || c.MaxConnectionsPerUser != 100 || c.ConnectRateLimit != 0 ||
		c.UserRateLimit != 0 || c.TrustedProxies != "" || c.ShutdownTimeout != 10*time.Second {
		t.Fatalf("defaults differ from CONTRACT §9: %+v", c)
	}
	if !c.generatedKey || !c.generatedJWT || len(c.APIKey) < 32 || c.APIKey == c.JWTSecret {
		t.Fatal("without --api-key/--jwt-secret pushd must generate distinct random secrets")
	}
}

func TestConfigEnvAndFlagPrecedence(t *testing.T) {
	c, err := parseConfig([]string{"--offline-max-count", "7"}, env(map[string]string{
		"PUSH_OFFLINE_MAX_COUNT": "9", "PUSH_ADDR": "127.0.0.1:9", "PUSH_AUTH_REQUIRED": "false",
		"PUSH_ALLOWED_ORIGINS": "https://a.example, https://b.example/", "PUSH_API_KEY": "key",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.OfflineMaxCount != 7 {
		t.Fatalf("flag must win over env: %d", c.OfflineMaxCount)
	}
	if c.Addr != "127.0.0.1:9" || c.AuthRequired || c.APIKey != "key" || c.generatedKey {
		t.Fatalf("env not applied: %+v", c)
	}
	if got := strings.Join(c.origins(), " "); got != "https://a.example https://b.example" {
		t.Fatalf("origins = %q", got)
	}
}

func TestBadConfigExitsTwoWithOneLine(t *testing.T) {
	cases := map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unparsable duration":   {args: []string{"--heartbeat-interval", "soon"}, want: "heartbeat-interval"},
		"negative count":        {args: []string{"--offline-max-count=-1"}, want: "--offline-max-count must not be negative"},
		"negative writers":      {args: []string{"--fanout-writers=-2"}, want: "--fanout-writers must not be negative"},
		"zero duration":         {args: []string{"--offline-ttl=0s"}, want: "--offline-ttl must be a positive duration"},
		"zero key ttl":          {args: []string{"--idempotency-ttl=0s"}, want: "--idempotency-ttl must be a positive duration"},
		"bad env":               {env: map[string]string{"PUSH_OFFLINE_TTL": "forever"}, want: "PUSH_OFFLINE_TTL"},
		"tls half":              {args: []string{"--tls-cert", "x.pem"}, want: "--tls-cert and --tls-key go together"},
		"bad origin":            {args: []string{"--allowed-origins", "not an origin"}, want: "--allowed-origins"},
		"bad public url":        {args: []string{"--public-url", "ftp://x"}, want: "--public-url"},
		"short secret":          {args: []string{"--jwt-secret", "short"}, want: "--jwt-secret must be at least 16 bytes"},
		"unknown flag":          {args: []string{"--nope"}, want: "flag provided but not defined"},
		"stray argument":        {args: []string{"serve"}, want: "unexpected argument"},
		"unreachable database":  {args: []string{"--database-url", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"}, want: "database"},
		"busy address":          {args: []string{"--addr", "BUSY"}, want: "listen on"},
		"migrate without url":   {args: []string{"migrate"}, want: "migrate needs --database-url"},
		"bad log format":        {args: []string{"--log-format", "xml"}, want: "--log-format must be text or json"},
		"negative max conns":    {args: []string{"--max-connections=-1"}, want: "--max-connections must not be negative"},
		"negative per user":     {args: []string{"--max-connections-per-user=-1"}, want: "--max-connections-per-user must not be negative"},
		"negative connect rate": {args: []string{"--connect-rate-limit=-1"}, want: "--connect-rate-limit"},
		"negative user burst":   {args: []string{"--user-rate-burst=-1"}, want: "--user-rate-limit and --user-rate-burst"},
		"bad trusted proxy":     {env: map[string]string{"PUSH_TRUSTED_PROXIES": "10.0.0.0/8,nope"}, want: "--trusted-proxies: nope"},
		"zero shutdown":         {args: []string{"--shutdown-timeout=0s"}, want: "--shutdown-timeout must be a positive duration"},
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := tc.args
			for i, a := range args {
				if a == "BUSY" {
					args = append([]string(nil), args...)
					args[i] = busy.Addr().String()
				}
			}
			if (len(args) == 0 || args[0] != "migrate") && !strings.Contains(strings.Join(args, " "), "--addr") {
				args = append(args, "--addr", "127.0.0.1:0")
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, env(tc.env), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "pushd: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("stderr last line %q, want 'pushd: …%s…'", last, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestRunServesAndShutsDownGracefully starts pushd as main does, follows the
// printed curl lines' route, and stops it as SIGTERM would: exit 0.
func TestRunServesAndShutsDownGracefully(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0"}, env(nil), &stdout, &stderr)
	}()
	re := regexp.MustCompile(`pushd listening on (http://[^ ]+)`)
	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" {
		if m := re.FindStringSubmatch(stdout.String()); m != nil && strings.Contains(stdout.String(), "curl -X POST") {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no listening line; stdout %q stderr %q", stdout.String(), stderr.String())
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	out := stdout.String()
	key := regexp.MustCompile(`API key \(generated[^:]*\): (\w+)`).FindStringSubmatch(out)
	if key == nil || !strings.Contains(out, "curl -N") || !strings.Contains(out, "/#") || !strings.Contains(stderr.String(), "NOT durable") {
		t.Fatalf("banner lacks the API key, curl lines, demo link or the durability warning:\n%s\n%s", out, stderr.String())
	}
	req, _ := http.NewRequest("POST", base+"/api/ws/connect", strings.NewReader(`{"userId":"alice"}`))
	req.Header.Set("Authorization", "Bearer "+key[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"token"`) {
		t.Fatalf("connect: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after shutdown, want 0; stderr %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no graceful shutdown")
	}
}
