package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pushd/pushd/auth"
)

// TestLogsNeverCarrySecrets runs pushd with JSON logs at debug level through
// auth failures and successes on every route and transport, then greps all
// its output for the API key, the JWT secret and every token used: none may
// appear. It also checks the connect and disconnect lines and that a
// request's log line names its X-Request-Id.
func TestLogsNeverCarrySecrets(t *testing.T) {
	p := startProc(t, "--log-format", "json", "--log-level", "debug", "--user-rate-limit", "0.001", "--user-rate-burst", "1")
	good := p.mintToken(t, "alice")
	wrongSecret, _, _ := auth.NewTokens("some-other-secret-0123456789", time.Hour).Mint("alice")
	expired, _, _ := auth.NewTokens(procSecret, -time.Hour).Mint("alice")

	do := func(method, path, authz, body string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, p.base+path, strings.NewReader(body))
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// REST: wrong key, bare key, right key.
	for _, authz := range []string{"Bearer wrong-" + procKey, procKey, "Bearer " + procKey + "x"} {
		if r := do("GET", "/api/ws/stats", authz, ""); r.StatusCode != 401 {
			t.Fatalf("bad key %q: %d", authz, r.StatusCode)
		}
	}
	push := `{"userId":"alice","title":"t","body":"b"}`
	if r := do("POST", "/api/ws/push/notification", "Bearer "+procKey, push, "X-Request-Id", "req-first"); r.StatusCode != 202 {
		t.Fatalf("push: %d", r.StatusCode)
	}
	if r := do("POST", "/api/ws/push/notification", "Bearer "+procKey, push, "X-Request-Id", "req-limited-42"); r.StatusCode != 429 || r.Header.Get("X-Request-Id") != "req-limited-42" {
		t.Fatalf("second push: %d, X-Request-Id %q; want 429 echoing the id", r.StatusCode, r.Header.Get("X-Request-Id"))
	}

	// SSE: good (query and header), wrong secret, expired.
	sse := func(tok string, inHeader bool) int {
		t.Helper()
		u := p.base + "/sse"
		authz := ""
		if inHeader {
			authz = "Bearer " + tok
		} else {
			u += "?access_token=" + url.QueryEscape(tok)
		}
		req, _ := http.NewRequest("GET", u, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			br := bufio.NewReader(resp.Body)
			for { // through the connected event
				line, err := br.ReadString('\n')
				if err != nil || strings.HasPrefix(line, "event: connected") {
					break
				}
			}
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		tok    string
		header bool
		want   int
	}{{good, false, 200}, {good, true, 200}, {wrongSecret, false, 401}, {expired, true, 401}} {
		if got := sse(c.tok, c.header); got != c.want {
			t.Fatalf("SSE: %d, want %d", got, c.want)
		}
	}
	// WebSocket: token in the URL, in the first message, and bad ones.
	wsBase := "ws://" + p.host() + "/ws"
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	wsSession := func(query, first string) int {
		t.Helper()
		conn, _, err := d.Dial(wsBase+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if first != "" {
			_ = conn.WriteMessage(websocket.TextMessage, []byte(first))
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, data, err := conn.ReadMessage()
			var ce *websocket.CloseError
			if err != nil {
				if errors.As(err, &ce) {
					return ce.Code
				}
				t.Fatalf("WS: %v", err)
			}
			if strings.Contains(string(data), `"connected"`) {
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
				return 1000
			}
		}
	}
	if c := wsSession("?access_token="+url.QueryEscape(good), ""); c != 1000 {
		t.Fatalf("WS with a good token: %d", c)
	}
	if c := wsSession("", `{"type":"auth","payload":{"token":"`+good+`"}}`); c != 1000 {
		t.Fatalf("WS with an auth message: %d", c)
	}
	if c := wsSession("?access_token="+url.QueryEscape(expired), ""); c != 4001 {
		t.Fatalf("WS with an expired token: %d", c)
	}
	if c := wsSession("", `{"type":"auth","payload":{"token":"`+wrongSecret+`"}}`); c != 4001 {
		t.Fatalf("WS with a badly signed token: %d", c)
	}
	time.Sleep(300 * time.Millisecond) // disconnect lines of the last sockets
	if code, _ := p.terminate(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}

	all := p.stdout.String() + p.stderr.String()
	for name, secret := range map[string]string{"API key": procKey, "JWT secret": procSecret, "good token": good, "badly signed token": wrongSecret, "expired token": expired} {
		if strings.Contains(all, secret) {
			t.Errorf("the output contains the %s", name)
		}
		// A token's signature alone identifies it too.
		if sig := secret[strings.LastIndexByte(secret, '.')+1:]; len(sig) > 20 && strings.Contains(all, sig) {
			t.Errorf("the output contains the signature of the %s", name)
		}
	}
	var connects, authFails, disconnects int
	limited := false
	for _, line := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log line: %q", line)
			continue
		}
		switch {
		case rec["msg"] == "connect":
			connects++
			for _, k := range []string{"user", "connection", "transport", "remote"} {
				if rec[k] == nil || rec[k] == "" {
					t.Errorf("connect line without %s: %s", k, line)
				}
			}
		case rec["msg"] == "disconnect" && rec["reason"] == "auth":
			authFails++
		case rec["msg"] == "disconnect":
			disconnects++
			if rec["reason"] == nil || rec["connection"] == nil || rec["user"] != "alice" {
				t.Errorf("disconnect line without reason, connection or user: %s", line)
			}
		case rec["request_id"] == "req-limited-42":
			limited = true
		}
	}
	if connects != 4 || disconnects != 4 || authFails != 4 {
		t.Errorf("%d connect, %d disconnect and %d auth-failure lines; want 4 of each:\n%s", connects, disconnects, authFails, p.stderr.String())
	}
	if !limited {
		t.Errorf("no log line names the request id of the refused publish:\n%s", p.stderr.String())
	}
}
