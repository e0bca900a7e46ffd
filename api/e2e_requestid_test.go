package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestE2ERequestID: every REST answer, errors included, carries X-Request-Id:
// the caller's when it is 1–200 visible ASCII characters, else a fresh one.
func TestE2ERequestID(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	seen := map[string]bool{}
	for _, c := range []struct{ method, path, authz string }{
		{"GET", "/api/ws/stats", "Bearer " + e2eAPIKey},
		{"GET", "/api/ws/stats", ""},
		{"GET", "/api/nowhere", ""},
		{"DELETE", "/api/ws/stats", "Bearer " + e2eAPIKey},
		{"POST", "/api/ws/push/notification", "Bearer " + e2eAPIKey},
		{"GET", "/healthz", ""},
	} {
		r := h.do(c.method, c.path, nil, c.authz)
		id := r.Header.Get("X-Request-Id")
		if id == "" || seen[id] {
			t.Errorf("%s %s (%d): X-Request-Id %q, want a new unique id", c.method, c.path, r.Status, id)
		}
		seen[id] = true
		r = h.do(c.method, c.path, nil, c.authz, "X-Request-Id", "caller-id-7")
		if got := r.Header.Get("X-Request-Id"); got != "caller-id-7" {
			t.Errorf("%s %s: X-Request-Id %q, want the caller's echoed", c.method, c.path, got)
		}
	}
	for _, bad := range []string{"has space", "line\tbreak", strings.Repeat("x", 201), "ünïcode"} {
		r := h.do("GET", "/healthz", nil, "", "X-Request-Id", bad)
		if got := r.Header.Get("X-Request-Id"); got == bad || got == "" {
			t.Errorf("caller id %q: answered %q, want it replaced by a fresh one", bad, got)
		}
	}
	if got := h.do("GET", "/healthz", nil, "", "X-Request-Id", strings.Repeat("y", 200)).Header.Get("X-Request-Id"); got != strings.Repeat("y", 200) {
		t.Errorf("a 200-character id was not kept")
	}
	// The streams' answers carry it too: the SSE head and the WebSocket
	// upgrade.
	sse := h.openSSE("rid", "", func(r *http.Request) { r.Header.Set("X-Request-Id", "sse-req-1") })
	if got := sse.Resp.Header.Get("X-Request-Id"); got != "sse-req-1" {
		t.Errorf("SSE answer: X-Request-Id %q, want sse-req-1", got)
	}
	conn, resp, err := h.dialWS("access_token="+url.QueryEscape(h.token("rid")), http.Header{"X-Request-Id": {"ws-req-1"}})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "ws-req-1" {
		t.Errorf("WebSocket upgrade: X-Request-Id %q, want ws-req-1", got)
	}
}
