package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// apiJSON sends an authenticated REST request and decodes the answer into
// out, returning the status.
func (p *proc) apiJSON(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, p.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+procKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: %d, undecodable answer: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// mintToken gets a subscriber token for user from POST /api/ws/connect.
func (p *proc) mintToken(t *testing.T, user string) string {
	t.Helper()
	var body struct{ Token string }
	if st := p.apiJSON(t, "POST", "/api/ws/connect", `{"userId":"`+user+`"}`, &body); st != 200 || body.Token == "" {
		t.Fatalf("connect: %d", st)
	}
	return body.Token
}

func (p *proc) connections(t *testing.T) int {
	t.Helper()
	var body struct{ TotalConnections int }
	p.apiJSON(t, "GET", "/api/ws/stats", "", &body)
	return body.TotalConnections
}

func (p *proc) host() string { return strings.TrimPrefix(p.base, "http://") }

// TestShutdownWithReconnectingSSEClients: 100 SSE clients that reconnect
// the moment their stream ends, and 20 connections accepted but without a
// request yet, do not hold up the exit. Before the fix pushd took over 5 s:
// http.Server.Shutdown counts a connection that has not sent a request as
// busy until it is 5 s old, and reconnects accepted during shutdown were
// registered after the streams to end had been collected.
func TestShutdownWithReconnectingSSEClients(t *testing.T) {
	p := startProc(t, "--shutdown-timeout", "20s")
	tok := p.mintToken(t, "storm")
	const clients = 100
	var wg sync.WaitGroup
	var afterStatus sync.Map // status code -> count, of answers after SIGTERM
	var termSent atomic.Bool
	for range clients {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
			for {
				select {
				case <-p.exited:
					return
				default:
				}
				resp, err := c.Get(p.base + "/sse?access_token=" + url.QueryEscape(tok))
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				if termSent.Load() {
					n, _ := afterStatus.LoadOrStore(resp.StatusCode, new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.connections(t) < clients {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d SSE clients connected", p.connections(t), clients)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 20 {
		c, err := net.Dial("tcp", p.host())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(50 * time.Millisecond) // accepted by the server
	termSent.Store(true)
	code, took := p.terminate(t, 30*time.Second)
	wg.Wait()
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, p.stderr.String())
	}
	// Not a performance target: the bug made this 5 s or more, every time.
	if took > 4*time.Second {
		t.Errorf("pushd took %v to exit after SIGTERM with reconnecting clients; want well under the 5 s that fresh connections used to cost", took)
	}
	t.Logf("exit after %v", took)
	afterStatus.Range(func(k, v any) bool {
		if st := k.(int); st != http.StatusServiceUnavailable && st != http.StatusOK {
			t.Errorf("a reconnect during shutdown got %d, want 503", st)
		}
		t.Logf("answers after SIGTERM: %d × %d", v.(*atomic.Int64).Load(), k)
		return true
	})
	if !strings.Contains(p.stderr.String(), `msg="shutdown complete" outcome=drained`) {
		t.Errorf("no drained outcome in the log:\n%s", p.stderr.String())
	}
}

// startSlowPublish sends a push's headers and half its body, and returns the
// connection and the rest of the body.
func startSlowPublish(t *testing.T, p *proc) (net.Conn, string) {
	t.Helper()
	body := `{"userId":"inflight","title":"t","body":"sent across the shutdown"}`
	c, err := net.Dial("tcp", p.host())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /api/ws/push/notification HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		p.host(), procKey, len(body), body[:len(body)/2])
	time.Sleep(200 * time.Millisecond) // the headers are read: the request is in flight
	return c, body[len(body)/2:]
}

// TestShutdownAnswersPublishInFlight: a publish whose body is still arriving
// at SIGTERM is finished and answered 202; the exit is 0, logged as drained.
func TestShutdownAnswersPublishInFlight(t *testing.T) {
	p := startProc(t, "--shutdown-timeout", "10s")
	c, rest := startSlowPublish(t, p)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := io.WriteString(c, rest); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the publish in flight: %v; stderr:\n%s", err, p.stderr.String())
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish in flight: %d, want 202", resp.StatusCode)
	}
	<-p.exited
	if p.code != 0 || !strings.Contains(p.stderr.String(), "outcome=drained") {
		t.Fatalf("exit %d; stderr:\n%s", p.code, p.stderr.String())
	}
}

// TestShutdownCutShort: a request that does not finish within
// --shutdown-timeout is cut off; pushd still exits 0 in time and logs the
// shutdown as cut short.
func TestShutdownCutShort(t *testing.T) {
	p := startProc(t, "--shutdown-timeout", "1s")
	startSlowPublish(t, p)
	code, took := p.terminate(t, 10*time.Second)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if !strings.Contains(p.stderr.String(), `outcome="cut short"`) {
		t.Errorf("no cut-short outcome in the log:\n%s", p.stderr.String())
	}
	t.Logf("exit after %v with --shutdown-timeout 1s", took)
}

// TestSlowlorisHeaders: a client that trickles its headers is dropped after
// --read-header-timeout; headers over the size limit get 431.
func TestSlowlorisHeaders(t *testing.T) {
	p := startProc(t, "--read-header-timeout", "300ms")
	c, err := net.Dial("tcp", p.host())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Slow: ", p.host())
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a connection with unfinished headers is still open after %v", time.Since(start))
	}

	big, err := net.Dial("tcp", p.host())
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	fmt.Fprintf(big, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", p.host(), strings.Repeat("a", maxHeaderBytes+8192))
	_ = big.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d, want 431", resp.StatusCode)
	}
}
