package clustertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	apiKey    = "cluster-test-key"
	jwtSecret = "cluster-test-secret-0123456789"
)

// node is one pushd process, restartable on the same address.
type node struct {
	t    *testing.T
	name string
	addr string
	args []string

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

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCluster starts n nodes on database db.
func startCluster(t *testing.T, db string, n int, extra ...string) []*node {
	t.Helper()
	nodes := make([]*node, n)
	var wg sync.WaitGroup
	for i := range nodes {
		nodes[i] = newNode(t, fmt.Sprintf("node%d", i+1), db, extra...)
		wg.Go(nodes[i].startAsync)
	}
	wg.Wait()
	for _, nd := range nodes {
		nd.waitReady()
	}
	return nodes
}

func newNode(t *testing.T, name, db string, extra ...string) *node {
	n := &node{t: t, name: name, addr: freeAddr(t), logs: &syncBuffer{}}
	// A small pool: the tests run several clusters at once against a server
	// that may allow only 100 connections.
	switch {
	case !strings.HasPrefix(db, "postgres"):
		db += " pool_max_conns=4" // a key=value connection string
	case strings.Contains(db, "?"):
		db += "&pool_max_conns=4"
	default:
		db += "?pool_max_conns=4"
	}
	n.args = append([]string{
		"--addr", n.addr, "--api-key", apiKey, "--jwt-secret", jwtSecret,
		"--database-url", db, "--heartbeat-interval", "2s", "--demo-user", "",
	}, extra...)
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", n.name, tail(n.logs.String(), 40))
		}
	})
	return n
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
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

func (n *node) startAsync() {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(pushdBin, n.args...)
	cmd.Env = pushdEnv()
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	if err := cmd.Start(); err != nil {
		n.t.Errorf("start %s: %v", n.name, err)
		return
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
}

// start starts the process and waits until it is ready.
func (n *node) start() {
	n.t.Helper()
	n.startAsync()
	n.waitReady()
}

func (n *node) waitReady() {
	n.t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			n.t.Fatalf("%s exited at start:\n%s", n.name, tail(n.logs.String(), 30))
		default:
		}
		res, err := http.Get(n.URL() + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not ready after 30s (%v):\n%s", n.name, err, tail(n.logs.String(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM (graceful) and waits for its exit.
func (n *node) stop() { n.signal(syscall.SIGTERM) }

// kill ends the process with SIGKILL: no shutdown, no cursor flush, no
// leaving the registry.
func (n *node) kill() { n.signal(syscall.SIGKILL) }

func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		n.t.Errorf("%s did not exit within 20s of %v", n.name, sig)
	}
	if sig == syscall.SIGTERM && cmd.ProcessState != nil && cmd.ProcessState.ExitCode() != 0 {
		n.t.Errorf("%s exited %d after SIGTERM", n.name, cmd.ProcessState.ExitCode())
	}
}

func (n *node) URL() string { return "http://" + n.addr }

// client is a REST client of one base URL (a node or the proxy).
type client struct {
	t    *testing.T
	base string
	hc   *http.Client // nil: httpClient
}

func (n *node) api() client { return client{t: n.t, base: n.URL()} }

// call sends a REST request with the API key and decodes the JSON answer.
func (c client) call(method, path string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	hc := c.hc
	if hc == nil {
		hc = httpClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return res.StatusCode, nil, fmt.Errorf("%s %s: %d, not JSON: %q", method, path, res.StatusCode, raw)
	}
	return res.StatusCode, out, nil
}

// statusError is a publish answered with another status than 202.
type statusError struct {
	code int
	body map[string]any
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %v", e.code, e.body) }

var httpClient = &http.Client{Timeout: 20 * time.Second}

// must is call that fails the test unless the answer is wantStatus.
func (c client) must(wantStatus int, method, path string, body any) map[string]any {
	c.t.Helper()
	code, out, err := c.call(method, path, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if code != wantStatus {
		c.t.Fatalf("%s %s: status %d, want %d: %v", method, path, code, wantStatus, out)
	}
	return out
}

func (c client) token(user string) string {
	c.t.Helper()
	tok, _ := c.must(200, "POST", "/api/ws/connect", map[string]any{"userId": user})["token"].(string)
	if tok == "" {
		c.t.Fatalf("no token for %s", user)
	}
	return tok
}

// notify publishes a notification to user (a broadcast when user is "")
// and returns its id.
func (c client) notify(user, title string) (string, error) {
	path, body := "/api/ws/broadcast", map[string]any{"title": title, "body": "b"}
	if user != "" {
		path, body["userId"] = "/api/ws/push/notification", user
	}
	code, out, err := c.call("POST", path, body)
	if err != nil {
		return "", err
	}
	if code != 202 {
		return "", &statusError{code, out}
	}
	id, _ := out["id"].(string)
	return id, nil
}

// nodeIDs lists the ids GET /api/ws/nodes gives.
func (c client) nodeIDs() []string {
	c.t.Helper()
	list, _ := c.must(200, "GET", "/api/ws/nodes", nil)["nodes"].([]any)
	var ids []string
	for _, v := range list {
		m, _ := v.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// selfID is the node's own id (the only one with ?scope=node).
func (c client) selfID() string {
	c.t.Helper()
	list, _ := c.must(200, "GET", "/api/ws/nodes?scope=node", nil)["nodes"].([]any)
	if len(list) != 1 {
		c.t.Fatalf("nodes?scope=node: %v, want one", list)
	}
	m, _ := list[0].(map[string]any)
	id, _ := m["id"].(string)
	return id
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
