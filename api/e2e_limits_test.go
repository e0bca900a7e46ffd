package api_test

// The limits of CONTRACT §9: each answered with the §5 error shape before
// any stream byte (SSE) or before the upgrade (WS), each counted in
// pushd_rate_limited_total{limit}.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sseAttempt tries GET /sse for user with extra headers; a 200 is returned
// as an open client.
func (h *e2e) sseAttempt(t *testing.T, user string, hdr ...string) (*sseClient, *e2eResp) {
	t.Helper()
	req, cancel := h.sseRequest("access_token=" + url.QueryEscape(h.token(user)))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /sse: %v", err)
	}
	if resp.StatusCode == 200 {
		c := &sseClient{name: "SSE(" + user + ")", Resp: resp, cancel: cancel, events: make(chan sseEvent, 1<<10), quit: make(chan struct{}), ended: make(chan struct{})}
		go c.read(resp.Body)
		t.Cleanup(c.Close)
		c.expectPreamble(t, h.cfg.Opts.SSEPadding)
		return c, nil
	}
	defer cancel()
	r := h.sendResp(t, resp)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("refused SSE: Content-Type %q, want a JSON error and no stream byte", ct)
	}
	return nil, r
}

func (h *e2e) sendResp(t *testing.T, resp *http.Response) *e2eResp {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &e2eResp{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// expectRefused checks a refusal: status, the §5 error code and, where
// wanted, Retry-After.
func expectRefused(t *testing.T, what string, r *e2eResp, status int, code string, wantRetry bool) {
	t.Helper()
	if r == nil {
		t.Fatalf("%s: connected, want %d %s", what, status, code)
	}
	r.expectError(t, status, code)
	if wantRetry && r.Header.Get("Retry-After") == "" {
		t.Errorf("%s: no Retry-After: %s", what, r)
	}
}

// wsRefusedBeforeUpgrade dials /ws for user and expects an HTTP answer
// instead of an upgrade.
func (h *e2e) wsRefusedBeforeUpgrade(t *testing.T, user string, status int, code string, hdr http.Header) {
	t.Helper()
	conn, resp, err := h.dialWS("access_token="+url.QueryEscape(h.token(user)), hdr)
	if err == nil {
		conn.Close()
		t.Fatalf("WS(%s): upgraded, want %d before the upgrade", user, status)
	}
	if resp == nil {
		t.Fatalf("WS(%s): %v, want an HTTP %d", user, err, status)
	}
	expectRefused(t, "WS("+user+")", h.sendResp(t, resp), status, code, status != 429 || code == "rate_limited")
}

func (h *e2e) limited(limit string) float64 {
	h.t.Helper()
	v, ok := h.metric("pushd_rate_limited_total", `limit="`+limit+`"`)
	if !ok {
		h.t.Fatalf("/metrics has no pushd_rate_limited_total{limit=%q}", limit)
	}
	return v
}

func TestE2EMaxConnections(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) {
		c.Stream.MaxConnections = 2
		c.Opts.AllowedOrigins = []string{"https://app.example"}
	})
	a := h.openSSE("mia", "")
	expectConnected(t, a, "mia", "sse")
	b := h.openWS("noa", "")
	expectConnected(t, b, "noa", "ws")

	_, r := h.sseAttempt(t, "ola", "Origin", "https://app.example")
	expectRefused(t, "third SSE", r, 503, "unavailable", true)
	// A browser page may read the refusal and its Retry-After.
	if r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Errorf("refused SSE from an allowed origin without CORS headers: %v", r.Header)
	}
	h.wsRefusedBeforeUpgrade(t, "ola", 503, "unavailable", nil)
	if n := h.limited("max_connections"); n != 2 {
		t.Errorf("pushd_rate_limited_total{limit=max_connections} = %v, want 2", n)
	}
	a.Close()
	h.waitConnections(1)
	c, r := h.sseAttempt(t, "ola")
	if c == nil {
		t.Fatalf("after a connection ended: %s, want a stream", r)
	}
}

func TestE2EMaxConnectionsPerUser(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Stream.MaxConnectionsPerUser = 2 })
	expectConnected(t, h.openSSE("pia", ""), "pia", "sse")
	expectConnected(t, h.openWS("pia", ""), "pia", "ws")

	_, r := h.sseAttempt(t, "pia")
	expectRefused(t, "third SSE of pia", r, 429, "rate_limited", true)
	h.wsRefusedBeforeUpgrade(t, "pia", 429, "rate_limited", nil)
	// A token in the first message is known only after the upgrade: the
	// refusal is a close code instead (1013, try again later).
	conn := h.mustDialWS("", nil)
	w := h.wsFrom(conn, "WS(pia, auth message)", true)
	w.Send(t, `{"type":"auth","payload":{"token":"`+h.token("pia")+`"}}`)
	w.expectClose(t, 1013)
	if n := h.limited("max_connections_per_user"); n != 2 {
		t.Errorf("pushd_rate_limited_total{limit=max_connections_per_user} = %v, want 2 (the close after the upgrade is not a 429)", n)
	}
	// Other users are not affected.
	expectConnected(t, h.openSSE("quin", ""), "quin", "sse")
}

func TestE2EConnectRateLimit(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.ConnectRateLimit = 0.001; c.Opts.ConnectRateBurst = 2 })
	expectConnected(t, h.openSSE("rae", ""), "rae", "sse")
	expectConnected(t, h.openWS("sam", ""), "sam", "ws")
	_, r := h.sseAttempt(t, "tea")
	expectRefused(t, "SSE over the connect rate", r, 429, "rate_limited", true)
	h.wsRefusedBeforeUpgrade(t, "tea", 429, "rate_limited", nil)
	if n := h.limited("connect_rate"); n != 2 {
		t.Errorf("pushd_rate_limited_total{limit=connect_rate} = %v, want 2", n)
	}
	// REST is not a subscriber connection.
	h.notify("rae", "still publishing")
}

// TestE2ETrustedProxies: X-Forwarded-For names the client for the limits and
// remoteAddr only when the peer is a trusted proxy.
func TestE2ETrustedProxies(t *testing.T) {
	t.Parallel()
	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		h := newE2E(t, func(c *e2eConfig) {
			c.Opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			c.Opts.ConnectRateLimit, c.Opts.ConnectRateBurst = 0.001, 1
			c.Opts.RateLimit, c.Opts.RateBurst = 0.001, 1
		})
		// The client's own hop (left) is ignored: the proxy appended the
		// real one.
		if c, r := h.sseAttempt(t, "uma", "X-Forwarded-For", "10.9.9.9, 203.0.113.1"); c == nil {
			t.Fatalf("first connect from 203.0.113.1: %s", r)
		}
		_, r := h.sseAttempt(t, "uma", "X-Forwarded-For", "203.0.113.1")
		expectRefused(t, "second connect from 203.0.113.1", r, 429, "rate_limited", true)
		if c, r := h.sseAttempt(t, "uma", "X-Forwarded-For", "203.0.113.2"); c == nil {
			t.Fatalf("first connect from 203.0.113.2: %s", r)
		}
		addrs := map[string]bool{}
		for _, c := range h.connections("uma") {
			addrs[c["remoteAddr"].(string)] = true
		}
		if !addrs["203.0.113.1"] || !addrs["203.0.113.2"] || len(addrs) != 2 {
			t.Errorf("remoteAddr of the connections: %v, want the forwarded clients", addrs)
		}
		// The REST rate limit is per forwarded client too.
		h.do("GET", "/api/ws/stats", nil, "Bearer "+e2eAPIKey, "X-Forwarded-For", "198.51.100.7").expectStatus(t, 200)
		h.do("GET", "/api/ws/stats", nil, "Bearer "+e2eAPIKey, "X-Forwarded-For", "198.51.100.7").expectError(t, 429, "rate_limited")
		h.do("GET", "/api/ws/stats", nil, "Bearer "+e2eAPIKey, "X-Forwarded-For", "198.51.100.8").expectStatus(t, 200)
	})
	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		h := newE2E(t, func(c *e2eConfig) {
			c.Opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			c.Opts.ConnectRateLimit, c.Opts.ConnectRateBurst = 0.001, 1
		})
		if c, r := h.sseAttempt(t, "val", "X-Forwarded-For", "203.0.113.1"); c == nil {
			t.Fatalf("first connect: %s", r)
		}
		// A peer that is not a trusted proxy cannot pick a new address.
		_, r := h.sseAttempt(t, "val", "X-Forwarded-For", "203.0.113.2")
		expectRefused(t, "second connect with a forged X-Forwarded-For", r, 429, "rate_limited", true)
		for _, c := range h.connections("val") {
			if ra := c["remoteAddr"].(string); !strings.HasPrefix(ra, "127.0.0.1:") {
				t.Errorf("remoteAddr %q from an untrusted peer's X-Forwarded-For, want the socket's", ra)
			}
		}
	})
}

func TestE2EUserRateLimit(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.UserRateLimit = 0.001; c.Opts.UserRateBurst = 2 })
	carol := h.openSSE("carol", "")
	expectConnected(t, carol, "carol", "sse")

	h.notify("wren", "one")
	h.notify("wren", "two")
	r := h.api("POST", "/api/ws/push/notification", map[string]any{"userId": "wren", "title": "t", "body": "three"})
	msg := r.expectError(t, 429, "rate_limited")
	if !strings.Contains(msg, `"wren"`) || r.Header.Get("Retry-After") == "" {
		t.Errorf("429 of a user over its rate: %s (Retry-After %q), want the user named and a Retry-After", r, r.Header.Get("Retry-After"))
	}
	// Broadcasts are not limited per user; other users are not affected.
	h.api("POST", "/api/ws/broadcast", map[string]any{"title": "all", "body": "b"}).expectStatus(t, 202)
	h.api("POST", "/api/ws/broadcast", map[string]any{"title": "all", "body": "b"}).expectStatus(t, 202)
	bcast := h.api("POST", "/api/ws/broadcast", map[string]any{"title": "all", "body": "b"}).expectStatus(t, 202)
	var last struct{ ID string }
	_ = json.Unmarshal(bcast.Body, &last)

	// A batch is all or nothing: bob has one token left and the batch needs
	// two of his, so carol's message is not stored (nor her tokens taken).
	h.notify("bob", "one")
	batch := func(users ...string) *e2eResp {
		var msgs []map[string]any
		for _, u := range users {
			msgs = append(msgs, map[string]any{"kind": "notification", "userId": u, "title": "t", "body": "batch"})
		}
		return h.api("POST", "/api/ws/push/batch", map[string]any{"messages": msgs})
	}
	msg = batch("carol", "bob", "bob").expectError(t, 429, "rate_limited")
	if !strings.Contains(msg, `"bob"`) {
		t.Errorf("batch 429 %q does not name bob", msg)
	}
	ok := batch("carol", "carol").expectStatus(t, 202)
	var ids struct{ IDs []string }
	_ = json.Unmarshal(ok.Body, &ids)
	// carol's stream: the three broadcasts, then exactly the accepted batch.
	got := nextNonHeartbeat(t, carol)
	for got.ID != last.ID {
		got = nextNonHeartbeat(t, carol)
	}
	expectIDs(t, carol, ids.IDs...)
	// More messages for one user than the burst can never pass at once.
	msg = batch("dora", "dora", "dora").expectError(t, 429, "rate_limited")
	if !strings.Contains(msg, "burst") {
		t.Errorf("a batch over the burst: %q, want it to say so", msg)
	}
	if n := h.limited("user_rate"); n != 3 {
		t.Errorf("pushd_rate_limited_total{limit=user_rate} = %v, want 3", n)
	}
}

// TestE2ESlowBody: a REST body trickled slower than the body read timeout is
// answered 400 and nothing is stored, instead of holding the handler.
func TestE2ESlowBody(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.BodyReadTimeout = 300 * time.Millisecond })
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, `{"userId":"sloth","title":"t",`)
		time.Sleep(2 * time.Second)
		_, _ = io.WriteString(pw, `"body":"b"}`)
		pw.Close()
	}()
	start := time.Now()
	msg := h.do("POST", "/api/ws/push/notification", pr, "Bearer "+e2eAPIKey).expectError(t, 400, "bad_request")
	if !strings.Contains(msg, "did not arrive within") || time.Since(start) > 1900*time.Millisecond {
		t.Errorf("slow body: %q after %v, want a 400 at the read timeout", msg, time.Since(start))
	}
	c := h.openWS("sloth", "")
	expectConnected(t, c, "sloth", "ws")
	marker := h.notify("sloth", "marker")
	expectMarker(t, c, marker, "the trickled publish must not have been stored")
}
