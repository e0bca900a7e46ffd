package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(execEnv) == "1" {
		main() // the test binary re-executed as pushd (process_test.go)
		return
	}
	os.Exit(pgtest.Main(m))
}

// node is one pushd started through run(), as main does.
type node struct {
	base   string
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
}

const (
	testKey    = "pg-test-key"
	testSecret = "pg-test-secret-0123456789"
)

func startNode(t *testing.T, dbURL string, extra ...string) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	var stdout syncBuffer
	args := append([]string{"--addr", "127.0.0.1:0", "--api-key", testKey, "--jwt-secret", testSecret,
		"--database-url", dbURL, "--demo-user", ""}, extra...)
	go func() { n.done <- run(ctx, args, env(nil), &stdout, n.stderr) }()
	re := regexp.MustCompile(`pushd listening on (http://[^ ]+)`)
	deadline := time.Now().Add(30 * time.Second)
	for n.base == "" {
		select {
		case code := <-n.done:
			t.Fatalf("pushd exited %d: %s", code, n.stderr.String())
		default:
		}
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			n.base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("pushd did not start: %s", n.stderr.String())
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case code := <-n.done:
		if code != 0 {
			t.Errorf("pushd exit %d: %s", code, n.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Error("pushd did not shut down")
	}
}

func (n *node) post(t *testing.T, path, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", n.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 || json.Unmarshal(b, &out) != nil {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return out
}

// sse connects to /sse and returns a channel of (id, type) pairs.
func (n *node) sse(t *testing.T, user string) <-chan [2]string {
	t.Helper()
	out := make(chan [2]string, 100)
	n.subscribe(t, user, func(id, typ, _ string) { out <- [2]string{id, typ} }, func() { close(out) })
	return out
}

// subscribe connects to /sse as user and calls event for every event (its
// id, type and data) from a goroutine, then end when the stream ends.
func (n *node) subscribe(t *testing.T, user string, event func(id, typ, data string), end func()) {
	t.Helper()
	tok := n.post(t, "/api/ws/connect", fmt.Sprintf(`{"userId":%q}`, user))["token"].(string)
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /sse?access_token=%s HTTP/1.1\r\nHost: x\r\n\r\n", tok)
	go func() {
		defer end()
		br := bufio.NewReader(conn)
		var id, typ, data string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "event: "):
				typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && typ != "":
				event(id, typ, data)
				id, typ, data = "", "", ""
			}
		}
	}()
}

func expectEvent(t *testing.T, ch <-chan [2]string, id, typ string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for %s %s", typ, id)
			}
			if ev[1] == "heartbeat" {
				continue
			}
			if ev[1] != typ || ev[0] != id {
				t.Fatalf("got %s %q, want %s %q", ev[1], ev[0], typ, id)
			}
			return
		case <-deadline:
			t.Fatalf("no %s %s within 15s", typ, id)
		}
	}
}

// TestOfflineMessagesSurviveRestart: pushed while the user was offline,
// pushd restarted on the same database, the user connects and receives them.
func TestOfflineMessagesSurviveRestart(t *testing.T) {
	db := pgtest.NewDB(t)
	first := startNode(t, db)
	a := first.post(t, "/api/ws/push/notification", `{"userId":"olga","title":"one","body":"1"}`)["id"].(string)
	b := first.post(t, "/api/ws/push/dashboard", `{"userId":"olga","widgetId":"w","data":7}`)["id"].(string)
	first.stop(t)

	second := startNode(t, db)
	ev := second.sse(t, "olga")
	expectEvent(t, ev, "", "connected")
	expectEvent(t, ev, a, "notification")
	expectEvent(t, ev, b, "dashboard_update")
}

// TestTwoNodesOneService: a message published through one node reaches the
// user's connection on another node on the same database (CONTRACT §4.9).
func TestTwoNodesOneService(t *testing.T) {
	db := pgtest.NewDB(t)
	n1, n2 := startNode(t, db), startNode(t, db)
	ev := n2.sse(t, "nina")
	expectEvent(t, ev, "", "connected")
	id := n1.post(t, "/api/ws/push/notification", `{"userId":"nina","title":"across","body":"nodes"}`)["id"].(string)
	expectEvent(t, ev, id, "notification")
	bid := n2.post(t, "/api/ws/broadcast", `{"title":"all","body":"of them"}`)["id"].(string)
	expectEvent(t, ev, bid, "notification")
}

func TestMigrateSubcommand(t *testing.T) {
	db := pgtest.NewDB(t)
	for range 2 { // idempotent
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"migrate", "--database-url", db}, env(nil), &stdout, &stderr); code != 0 {
			t.Fatalf("migrate exit %d: %s", code, stderr.String())
		}
	}
}
