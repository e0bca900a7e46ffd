package api_test

// Subscribers (CONTRACT §2, §3, §4): auth failures, SSE headers and framing,
// equal envelopes on both transports, resume, reset, offline delivery,
// multi-tab, isolation, broadcast, conflation, and a third-party SSE client.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	r3sse "github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/pushd/pushd/stream"
)

// badTokens are subscriber tokens that must be refused.
func badTokens(t *testing.T) []struct{ name, token string } {
	t.Helper()
	now := time.Now()
	sign := func(method jwt.SigningMethod, secret string, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	enc := base64.RawURLEncoding
	claims, _ := json.Marshal(map[string]any{"sub": "mallory", "exp": now.Add(time.Hour).Unix()})
	algNone := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(claims) + "."
	algNoneSigned := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(claims) + "." + enc.EncodeToString([]byte("x"))
	valid := sign(jwt.SigningMethodHS256, e2eSecret, jwt.MapClaims{"sub": "mallory", "exp": now.Add(time.Hour).Unix()})
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + enc.EncodeToString([]byte(`{"sub":"admin","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`}`)) + "." + parts[2]
	return []struct{ name, token string }{
		{"expired", sign(jwt.SigningMethodHS256, e2eSecret, jwt.MapClaims{"sub": "mallory", "exp": now.Add(-time.Hour).Unix()})},
		{"wrong secret", sign(jwt.SigningMethodHS256, "not-the-secret", jwt.MapClaims{"sub": "mallory", "exp": now.Add(time.Hour).Unix()})},
		{"alg none", algNone},
		{"alg none with a signature", algNoneSigned},
		{"no sub", sign(jwt.SigningMethodHS256, e2eSecret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()})},
		{"empty sub", sign(jwt.SigningMethodHS256, e2eSecret, jwt.MapClaims{"sub": "", "exp": now.Add(time.Hour).Unix()})},
		{"no exp", sign(jwt.SigningMethodHS256, e2eSecret, jwt.MapClaims{"sub": "mallory"})},
		{"HS512 instead of HS256", sign(jwt.SigningMethodHS512, e2eSecret, jwt.MapClaims{"sub": "mallory", "exp": now.Add(time.Hour).Unix()})},
		{"tampered claims", tampered},
		{"garbage", "not.a.jwt"},
	}
}

// expectSSERefused sends req and checks a 401 JSON error with no stream.
func expectSSERefused(t *testing.T, h *e2e, req *http.Request, what string) {
	t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("%s: status %d, want 401: %.200s", what, resp.StatusCode, body)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want a JSON error (no stream)", what, ct)
	}
	r := &e2eResp{Status: resp.StatusCode, Header: resp.Header, Body: body}
	r.expectError(t, 401, "unauthorized")
}

func TestE2ESSEAuthFailures(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	req, cancel := h.sseRequest("")
	defer cancel()
	expectSSERefused(t, h, req, "GET /sse without a token")
	req, cancel = h.sseRequest("access_token=")
	defer cancel()
	expectSSERefused(t, h, req, "GET /sse with an empty access_token")
	req, cancel = h.sseRequest("userId=mallory")
	defer cancel()
	expectSSERefused(t, h, req, "GET /sse naming a user without a token")
	for _, bt := range badTokens(t) {
		req, cancel := h.sseRequest("access_token=" + url.QueryEscape(bt.token))
		defer cancel()
		expectSSERefused(t, h, req, "GET /sse?access_token=<"+bt.name+">")
		req, cancel = h.sseRequest("")
		defer cancel()
		req.Header.Set("Authorization", "Bearer "+bt.token)
		expectSSERefused(t, h, req, "GET /sse with Authorization: Bearer <"+bt.name+">")
	}
	// The API key is not a subscriber token.
	req, cancel = h.sseRequest("")
	defer cancel()
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	expectSSERefused(t, h, req, "GET /sse with the API key")
	// Nothing was registered.
	if s := h.stats(); s.TotalConnections != 0 {
		t.Errorf("refused subscribers are counted: %+v", s)
	}

	// A valid token works both ways.
	req, cancel = h.sseRequest("")
	req.Header.Set("Authorization", "Bearer "+h.token("pat"))
	c := h.startSSE(req, cancel, "SSE(pat, bearer)")
	c.expectPreamble(t, h.cfg.Opts.SSEPadding)
	expectConnected(t, c, "pat", "sse")
	c2 := h.openSSE("pat", "")
	expectConnected(t, c2, "pat", "sse")
}

// dialRefused dials /ws and expects the upgrade to succeed and the server to
// close with 4001.
func dialRefused(t *testing.T, h *e2e, query string, hdr http.Header, what string, send ...string) {
	t.Helper()
	conn, resp, err := h.dialWS(query, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Errorf("%s: the upgrade failed (%v, HTTP %d); want it to succeed and then close 4001", what, err, status)
		return
	}
	c := h.wsFrom(conn, "WS("+what+")", false)
	for _, m := range send {
		c.Send(t, m)
	}
	c.StartReading()
	c.expectClose(t, 4001)
}

func TestE2EWSAuthFailures(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.AuthTimeout = 300 * time.Millisecond })
	dialRefused(t, h, "", nil, "no token, no auth message within AuthTimeout")
	dialRefused(t, h, "access_token=", nil, "empty access_token, no auth message")
	dialRefused(t, h, "", nil, "first message not auth", `{"type":"heartbeat","payload":{"clientTime":1}}`)
	dialRefused(t, h, "", nil, "first message malformed", `{"type":`)
	dialRefused(t, h, "", nil, "auth message without token", `{"type":"auth","payload":{}}`)
	for _, bt := range badTokens(t) {
		dialRefused(t, h, "access_token="+url.QueryEscape(bt.token), nil, "access_token <"+bt.name+">")
		dialRefused(t, h, "", http.Header{"Authorization": {"Bearer " + bt.token}}, "Authorization <"+bt.name+">")
		frame, _ := json.Marshal(map[string]any{"type": "auth", "payload": map[string]any{"token": bt.token}})
		dialRefused(t, h, "", nil, "auth message <"+bt.name+">", string(frame))
	}
	if s := h.stats(); s.TotalConnections != 0 {
		t.Errorf("refused sockets are counted: %+v", s)
	}
}

func TestE2EWSAuthMessage(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	c := h.wsFrom(h.mustDialWS("", nil), "WS(quinn, auth message)", false)
	frame, _ := json.Marshal(map[string]any{"type": "auth", "payload": map[string]any{"token": h.token("quinn")}})
	c.Send(t, string(frame))
	c.StartReading()
	expectConnected(t, c, "quinn", "ws")
	id := h.notify("quinn", "hello")
	expectIDs(t, c, id)

	// Also with the token in an Authorization header (non-browser clients).
	c2 := h.wsFrom(h.mustDialWS("", http.Header{"Authorization": {"Bearer " + h.token("quinn")}}), "WS(quinn, bearer)", true)
	expectConnected(t, c2, "quinn", "ws")
}

func TestE2EWSOrigin(t *testing.T) {
	t.Parallel()
	dial := func(t *testing.T, h *e2e, origin string) (int, error) {
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		conn, resp, err := h.dialWS("access_token="+url.QueryEscape(h.token("rae")), hdr)
		if err == nil {
			c := h.wsFrom(conn, "WS(origin "+origin+")", true)
			expectConnected(t, c, "rae", "ws")
			return 101, nil
		}
		if resp == nil {
			return 0, err
		}
		return resp.StatusCode, err
	}
	t.Run("same origin only", func(t *testing.T) {
		t.Parallel()
		h := newE2E(t)
		if st, err := dial(t, h, "https://evil.example"); st != 403 {
			t.Errorf("foreign Origin: status %d (%v), want 403", st, err)
		}
		if st, err := dial(t, h, "http://"+h.host()); st != 101 {
			t.Errorf("same Origin: status %d (%v), want the upgrade", st, err)
		}
		if st, err := dial(t, h, ""); st != 101 {
			t.Errorf("no Origin (not a browser): status %d (%v), want the upgrade", st, err)
		}
	})
	t.Run("allow list", func(t *testing.T) {
		t.Parallel()
		h := newE2E(t, func(c *e2eConfig) { c.Opts.AllowedOrigins = []string{"https://app.example", "https://admin.example"} })
		for _, o := range []string{"https://app.example", "https://admin.example"} {
			if st, err := dial(t, h, o); st != 101 {
				t.Errorf("allowed Origin %s: status %d (%v), want the upgrade", o, st, err)
			}
		}
		for _, o := range []string{"https://evil.example", "https://app.example.evil.example", "http://app.example", "null"} {
			if st, err := dial(t, h, o); st != 403 {
				t.Errorf("Origin %s not in the list: status %d (%v), want 403", o, st, err)
			}
		}
	})
	t.Run("wildcard", func(t *testing.T) {
		t.Parallel()
		h := newE2E(t, func(c *e2eConfig) { c.Opts.AllowedOrigins = []string{"*"} })
		if st, err := dial(t, h, "https://anything.example"); st != 101 {
			t.Errorf("with *: status %d (%v), want the upgrade", st, err)
		}
	})
}

func TestE2ESSEHeadersAndFraming(t *testing.T) {
	t.Parallel()
	for _, padding := range []int{2048, 100} {
		t.Run(fmt.Sprintf("padding %d", padding), func(t *testing.T) {
			t.Parallel()
			h := newE2E(t, func(c *e2eConfig) { c.Opts.SSEPadding = padding })
			req, cancel := h.sseRequest("access_token=" + url.QueryEscape(h.token("sam")))
			// Asking for gzip explicitly also stops Go's client from
			// decompressing transparently, so we see the raw bytes.
			req.Header.Set("Accept-Encoding", "gzip, deflate, br")
			c := h.startSSE(req, cancel, "SSE(sam)")
			hdr := c.Resp.Header
			if mt, params, err := mime.ParseMediaType(hdr.Get("Content-Type")); err != nil || mt != "text/event-stream" || (len(params) > 0 && !strings.EqualFold(params["charset"], "utf-8")) {
				t.Errorf("Content-Type = %q, want text/event-stream", hdr.Get("Content-Type"))
			}
			if got := hdr.Get("Cache-Control"); !strings.Contains(got, "no-cache") {
				t.Errorf("Cache-Control = %q, want no-cache", got)
			}
			if got := hdr.Get("X-Accel-Buffering"); got != "no" {
				t.Errorf("X-Accel-Buffering = %q, want no", got)
			}
			if got := hdr.Get("Content-Encoding"); got != "" {
				t.Errorf("Content-Encoding = %q with Accept-Encoding gzip; /sse must not be compressed", got)
			}
			if c.Resp.Uncompressed {
				t.Errorf("the client decompressed the stream; /sse must not be compressed")
			}
			c.expectPreamble(t, padding)

			// connected: no id line, event then data.
			ev, ok := c.NextRaw(t)
			if !ok {
				t.Fatalf("stream ended: %v", c.Err())
			}
			if !strings.HasPrefix(ev.Raw, "event: connected\ndata: {") || strings.Count(ev.Raw, "\n") != 3 || !strings.HasSuffix(ev.Raw, "}\n\n") {
				t.Errorf("connected event framed as %q, want \"event: connected\\ndata: {…}\\n\\n\" (no id: line)", ev.Raw)
			}
			e := parseEnvelope(t, "connected", []byte(ev.Data))
			if e.Type != "connected" || e.HasID {
				t.Errorf("first event %s, want connected without id", e)
			}
			if got := e.Payload["heartbeatInterval"]; got != float64(h.cfg.Stream.HeartbeatInterval.Milliseconds()) {
				t.Errorf("connected heartbeatInterval = %v, want %d (ms)", got, h.cfg.Stream.HeartbeatInterval.Milliseconds())
			}

			// A stored message, exactly.
			body := "line one\nline two\r\nline three\rü \u2028 \u2029 </script> \"quoted\" \\ \t end"
			id := h.push("notification", map[string]any{"userId": "sam", "title": "framing", "body": body})
			ev, ok = c.NextRaw(t)
			if !ok {
				t.Fatalf("stream ended: %v", c.Err())
			}
			want := "id: " + id + "\nevent: notification\ndata: " + ev.Data + "\n\n"
			if ev.Raw != want || strings.ContainsAny(ev.Data, "\r\n") {
				t.Errorf("message framed as\n%q\nwant\n%q", ev.Raw, want)
			}
			e = parseEnvelope(t, "message", []byte(ev.Data))
			if e.ID != id || e.Type != "notification" || e.Payload["body"] != body {
				t.Errorf("message envelope %s, want id %s and the body round-tripped", ev.Data, id)
			}
		})
	}
}

func TestE2ESSEHeartbeats(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Stream.HeartbeatInterval = 50 * time.Millisecond })
	c := h.openSSE("tess", "")
	expectConnected(t, c, "tess", "sse")
	id := h.notify("tess", "between heartbeats")
	beats, gotMsg := 0, false
	for beats < 3 || !gotMsg {
		ev, ok := c.NextRaw(t)
		if !ok {
			t.Fatalf("stream ended: %v", c.Err())
		}
		if ev.Event == "notification" {
			gotMsg = ev.ID == id
			continue
		}
		if ev.Event != "heartbeat" {
			t.Fatalf("unexpected event %q", ev.Raw)
		}
		if ev.HasID || !strings.HasPrefix(ev.Raw, "event: heartbeat\ndata: {") || strings.Count(ev.Raw, "\n") != 3 {
			t.Errorf("heartbeat framed as %q, want \"event: heartbeat\\ndata: {…}\\n\\n\" without id", ev.Raw)
		}
		e := parseEnvelope(t, "heartbeat", []byte(ev.Data))
		checkShape(t, "heartbeat payload", e.Payload, map[string]string{"serverTime": "integer", "clientTime": "integer?"})
		checkMillis(t, "heartbeat serverTime", e.Payload["serverTime"])
		beats++
	}
}

func TestE2EWSHeartbeatEnvelopes(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Stream.HeartbeatInterval = 50 * time.Millisecond })
	c := h.openWS("uma", "")
	expectConnected(t, c, "uma", "ws")
	for range 3 {
		e, ok := c.Next(t)
		if !ok {
			t.Fatalf("socket ended: %v", c.Err())
		}
		if e.Type != "heartbeat" {
			t.Fatalf("got %s, want heartbeats", e)
		}
		checkShape(t, "heartbeat payload", e.Payload, map[string]string{"serverTime": "integer", "clientTime": "integer?"})
	}
}

func TestE2ESameEnvelopeOnSSEAndWS(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sse := h.openSSE("vic", "")
	expectConnected(t, sse, "vic", "sse")
	ws := h.openWS("vic", "")
	expectConnected(t, ws, "vic", "ws")
	pushes := []struct {
		kind string
		body map[string]any
	}{
		{"notification", map[string]any{"userId": "vic", "title": "Grüße ✓", "body": "a\nb \"c\" <d>", "icon": "/i.png", "url": "https://x.example/?a=1&b=2", "data": map[string]any{"n": 1.5, "list": []any{1, "two", nil, true}}}},
		{"dashboard", map[string]any{"userId": "vic", "widgetId": "w1", "data": []any{1, 2, 3}}},
		{"data-change", map[string]any{"userId": "vic", "tableId": "orders", "rowId": "9", "action": "create", "data": map[string]any{"x": "y"}}},
		{"audit-log", map[string]any{"userId": "vic", "entry": "plain string entry"}},
		{"broadcast", map[string]any{"title": "all", "body": "everyone"}},
	}
	for _, p := range pushes {
		id := h.push(p.kind, p.body)
		a := expectIDs(t, sse, id)[0]
		b := expectIDs(t, ws, id)[0]
		if string(a.Raw) != string(b.Raw) {
			t.Errorf("%s: SSE data and WS frame differ:\nSSE %s\nWS  %s", p.kind, a.Raw, b.Raw)
		}
	}
}

func TestE2ESSEInteropR3labs(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	ctx, cancel := context.WithCancel(context.Background())
	client := r3sse.NewClient(h.url("/sse"), r3sse.ClientMaxBufferSize(1<<20))
	client.Headers["Authorization"] = "Bearer " + h.token("wes")
	bo := backoff.NewExponentialBackOff()
	bo.MaxElapsedTime = 0
	client.ReconnectStrategy = backoff.WithContext(bo, ctx)
	events := make(chan *r3sse.Event, 1024)
	done := make(chan error, 1)
	go func() {
		done <- client.SubscribeRawWithContext(ctx, func(ev *r3sse.Event) {
			select {
			case events <- ev:
			default:
			}
		})
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(e2eWait):
			t.Errorf("the r3labs client did not return after cancel()")
		}
	}
	defer stop()
	next := func(event string) *r3sse.Event {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if string(ev.Event) == event {
					return ev
				}
				if len(ev.Event) > 0 && string(ev.Event) != "heartbeat" {
					t.Fatalf("r3labs client: got event %q (%s), want %q", ev.Event, ev.Data, event)
				}
			case err := <-done:
				t.Fatalf("r3labs client ended: %v", err)
			case <-time.After(e2eWait):
				t.Fatalf("r3labs client: no %q event within %v", event, e2eWait)
			}
		}
	}
	c := next("connected")
	if len(c.ID) != 0 {
		t.Errorf("connected carries id %q", c.ID)
	}
	var conn map[string]any
	if err := json.Unmarshal(c.Data, &conn); err != nil {
		t.Fatalf("connected data is not JSON: %q", c.Data)
	}
	id := h.notify("wes", "interop")
	m := next("notification")
	if string(m.ID) != id {
		t.Errorf("r3labs client: id %q, want %q", m.ID, id)
	}
	e := parseEnvelope(t, "r3labs", m.Data)
	if e.ID != id || e.Payload["title"] != "interop" {
		t.Errorf("r3labs client: envelope %s", m.Data)
	}
	if got, _ := client.LastEventID.Load().([]byte); string(got) != id {
		t.Errorf("r3labs client LastEventID %q, want %q", got, id)
	}
}

// ---------------------------------------------------------------------------
// Resume, reset and offline delivery.

// pushN pushes n notifications to user and returns their ids.
func pushN(h *e2e, user string, n int, prefix string) []string {
	h.t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = h.notify(user, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

func TestE2EResumeSSELastEventIDHeader(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	ids := pushN(h, "xan", 5, "m")
	c := h.openSSE("xan", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", ids[1]) })
	expectConnected(t, c, "xan", "sse")
	expectIDs(t, c, ids[2:]...)
	live := h.notify("xan", "live")
	expectIDs(t, c, live)

	// Resuming from the newest id replays nothing and no reset.
	c2 := h.openSSE("xan", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", live) })
	expectConnected(t, c2, "xan", "sse")
	marker := h.notify("xan", "marker")
	expectIDs(t, c2, marker)
	expectIDs(t, c, marker)
}

func TestE2EResumeSSELastEventIDQuery(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	ids := pushN(h, "yul", 5, "m")
	c := h.openSSE("yul", "lastEventId="+url.QueryEscape(ids[0]))
	expectConnected(t, c, "yul", "sse")
	expectIDs(t, c, ids[1:]...)
	live := h.notify("yul", "live")
	expectIDs(t, c, live)
}

func TestE2EResumeWS(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	ids := pushN(h, "zed", 5, "m")
	c := h.openWS("zed", "lastEventId="+url.QueryEscape(ids[2]))
	expectConnected(t, c, "zed", "ws")
	expectIDs(t, c, ids[3:]...)
	live := h.notify("zed", "live")
	expectIDs(t, c, live)
}

// expectReset checks that the next non-heartbeat event is reset{reason}.
func expectReset(t *testing.T, s subscriber, reason string) {
	t.Helper()
	e := expectType(t, s, "reset")
	if e.HasID {
		t.Errorf("%s: reset carries an id", s.Name())
	}
	checkShape(t, "reset payload", e.Payload, map[string]string{"reason": "string"})
	if e.Payload["reason"] != reason {
		t.Errorf("%s: reset reason %v, want %q", s.Name(), e.Payload["reason"], reason)
	}
}

func TestE2EResumeResetTrimmed(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Keep.MaxCount = 3 })
	ids := pushN(h, "abe", 6, "m") // kept: ids[3:]
	for _, tc := range []struct {
		name  string
		after string
		reset string
		want  []string
	}{
		{"from the first id: two lost", ids[0], "trimmed", ids[3:]},
		{"from the second-oldest lost id: one lost", ids[1], "trimmed", ids[3:]},
		{"from just before the window: nothing lost", ids[2], "", ids[3:]},
		{"from inside the window", ids[4], "", ids[5:]},
		{"from the newest id", ids[5], "", nil},
	} {
		for _, tr := range []string{"sse", "ws"} {
			var s subscriber
			if tr == "sse" {
				c := h.openSSE("abe", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", tc.after) })
				s = c
				defer c.Close()
			} else {
				c := h.openWS("abe", "lastEventId="+url.QueryEscape(tc.after))
				s = c
				defer c.Close()
			}
			t.Logf("%s on %s", tc.name, tr)
			expectConnected(t, s, "abe", tr)
			if tc.reset != "" {
				expectReset(t, s, tc.reset)
			}
			expectIDs(t, s, tc.want...)
		}
	}
	// Live messages follow, and no reset at all when nothing was lost.
	live := h.notify("abe", "live")
	c := h.openSSE("abe", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", ids[5]) })
	expectConnected(t, c, "abe", "sse")
	expectIDs(t, c, live)
}

func TestE2EResumeResetUnknownID(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	ids := pushN(h, "bea", 3, "m")
	epoch, _, _ := strings.Cut(ids[0], "-")
	other := "00000000"
	if epoch == other {
		other = "11111111"
	}
	for _, tc := range []struct{ name, id string }{
		{"malformed", "not-an-id"},
		{"garbage", "%%%"},
		{"from another store", stream.FormatID(other, 2)},
		{"ahead of the stream", stream.FormatID(epoch, 1_000_000)},
		{"zero position", stream.FormatID(epoch, 0)},
	} {
		for _, tr := range []string{"sse", "ws"} {
			var s subscriber
			if tr == "sse" {
				c := h.openSSE("bea", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", tc.id) })
				defer c.Close()
				s = c
			} else {
				c := h.openWS("bea", "lastEventId="+url.QueryEscape(tc.id))
				defer c.Close()
				s = c
			}
			t.Logf("%s on %s", tc.name, tr)
			expectConnected(t, s, "bea", tr)
			expectReset(t, s, "unknown_id")
			expectIDs(t, s, ids...)
		}
	}
}

func TestE2EResumeResetExpiredByAge(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Keep.TTL = 300 * time.Millisecond })
	seen := h.notify("cal", "seen")
	h.notify("cal", "lost to age")
	eventually(t, "both messages to expire", func() (bool, string) {
		s := h.stats()
		return s.QueueStats.PendingMessages == 0, fmt.Sprintf("%+v", s.QueueStats)
	})
	c := h.openSSE("cal", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", seen) })
	expectConnected(t, c, "cal", "sse")
	expectReset(t, c, "trimmed")
	live := h.notify("cal", "live")
	expectIDs(t, c, live)
}

func TestE2EOfflineBacklog(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	for _, tr := range []string{"sse", "ws"} {
		user := "dot-" + tr
		open := func() subscriber {
			if tr == "sse" {
				return h.openSSE(user, "")
			}
			return h.openWS(user, "")
		}
		ids := pushN(h, user, 3, "offline")
		s := open()
		expectConnected(t, s, user, tr)
		expectIDs(t, s, ids...) // never delivered before: every kept message, no reset
		live := h.notify(user, "live")
		expectIDs(t, s, live)
		s.(interface{ Close() }).Close()
		eventually(t, "the deliveries to be recorded", func() (bool, string) {
			st := h.stats()
			return st.QueueStats.PendingMessages == 0 && st.TotalConnections == 0, fmt.Sprintf("%+v", st)
		})

		more := pushN(h, user, 2, "later")
		s = open()
		expectConnected(t, s, user, tr)
		expectIDs(t, s, more...) // only what was never delivered
		s.(interface{ Close() }).Close()
	}
}

// TestE2EOfflineNoRedeliveryToNewTab: a message delivered to one connection
// of a user is not "offline" any more; a second tab opened without a last
// event id must not get it again (CONTRACT §4.3), whenever the delivered
// cursor happens to be written to the store.
func TestE2EOfflineNoRedeliveryToNewTab(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Stream.FlushInterval = time.Hour })
	a := h.openSSE("eve", "")
	expectConnected(t, a, "eve", "sse")
	delivered := h.notify("eve", "delivered to tab A")
	expectIDs(t, a, delivered)

	b := h.openWS("eve", "")
	expectConnected(t, b, "eve", "ws")
	marker := h.notify("eve", "marker")
	if e := nextNonHeartbeat(t, b); e.ID != marker {
		t.Errorf("tab B (no last event id) first got %s; want the live marker %s: a message already delivered to tab A was delivered again as offline", e, marker)
	}

	// Same after the only tab closes and the user comes back at once.
	a.Close()
	b.Close()
	h.waitConnections(0)
	c := h.openSSE("eve", "")
	expectConnected(t, c, "eve", "sse")
	marker2 := h.notify("eve", "marker 2")
	if e := nextNonHeartbeat(t, c); e.ID != marker2 {
		t.Errorf("reconnect without a last event id first got %s; want the live marker %s: already delivered messages were delivered again", e, marker2)
	}
}

func TestE2EMultiTab(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	s1 := h.openSSE("fox", "")
	expectConnected(t, s1, "fox", "sse")
	s2 := h.openSSE("fox", "")
	expectConnected(t, s2, "fox", "sse")
	w := h.openWS("fox", "")
	expectConnected(t, w, "fox", "ws")
	ids := pushN(h, "fox", 5, "tab")
	bid := h.push("broadcast", map[string]any{"title": "b", "body": "b"})
	ids = append(ids, bid)
	for _, s := range []subscriber{s1, s2, w} {
		expectIDs(t, s, ids...)
	}
	if n := len(h.connections("fox")); n != 3 {
		t.Errorf("fox lists %d connections, want 3", n)
	}
}

func TestE2EIsolationBetweenUsers(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	a := h.openSSE("gil", "")
	expectConnected(t, a, "gil", "sse")
	b := h.openWS("hap", "")
	expectConnected(t, b, "hap", "ws")
	aIDs := pushN(h, "gil", 3, "for gil")
	h.push("dashboard", map[string]any{"userId": "gil", "widgetId": "w", "data": 1})
	h.push("data-change", map[string]any{"userId": "gil", "tableId": "t", "rowId": "1", "action": "create"})
	h.push("audit-log", map[string]any{"userId": "gil", "entry": "e"})
	marker := h.notify("hap", "marker")
	expectIDs(t, b, marker)
	expectIDs(t, a, aIDs...)

	// Nor does hap get gil's messages by resuming with one of gil's ids:
	// hap's stream after that position is only hap's marker.
	b2 := h.openSSE("hap", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", aIDs[0]) })
	expectConnected(t, b2, "hap", "sse")
	marker2 := h.notify("hap", "marker 2")
	expectIDs(t, b2, marker, marker2)
	// A user-addressed name is exact: no prefix or case matching.
	c := h.openSSE("GIL", "")
	expectConnected(t, c, "GIL", "sse")
	marker3 := h.notify("GIL", "marker 3")
	expectIDs(t, c, marker3)
}

func TestE2EBroadcastExclude(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	a := h.openSSE("ida", "")
	expectConnected(t, a, "ida", "sse")
	b := h.openWS("jon", "")
	expectConnected(t, b, "jon", "ws")
	b2 := h.openSSE("jon", "")
	expectConnected(t, b2, "jon", "sse")
	c := h.openWS("kat", "")
	expectConnected(t, c, "kat", "ws")

	r := h.api("POST", "/api/ws/broadcast", map[string]any{"title": "Maintenance", "body": "at noon", "excludeUserIds": []string{"jon", "offline-excluded"}})
	bid, _ := pushAccepted(t, "broadcast", r)
	for _, s := range []subscriber{a, c} {
		e := expectIDs(t, s, bid)[0]
		if e.Type != "notification" || e.Payload["title"] != "Maintenance" {
			t.Errorf("%s: broadcast arrived as %s, want a notification", s.Name(), e)
		}
	}
	h.notify("jon", "marker for WS(jon)")
	h.notify("jon", "marker for SSE(jon)")
	// jon's two tabs get both markers and never the broadcast.
	m := h.connections("jon")
	if len(m) != 2 {
		t.Fatalf("jon lists %d connections, want 2", len(m))
	}
	for _, s := range []subscriber{b, b2} {
		e1 := nextNonHeartbeat(t, s)
		e2 := nextNonHeartbeat(t, s)
		if e1.ID == bid || e2.ID == bid || e1.Payload["title"] != "marker for WS(jon)" || e2.Payload["title"] != "marker for SSE(jon)" {
			t.Errorf("%s (excluded): got %s and %s, want only the two markers", s.Name(), e1, e2)
		}
	}

	// Offline users: the broadcast is part of a never-connected user's
	// stream, not of an excluded one's.
	lee := h.openSSE("lee-offline", "")
	expectConnected(t, lee, "lee-offline", "sse")
	expectIDs(t, lee, bid)
	ex := h.openSSE("offline-excluded", "")
	expectConnected(t, ex, "offline-excluded", "sse")
	marker := h.notify("offline-excluded", "marker")
	expectIDs(t, ex, marker)
	// And it is replayable by resume: from an id before it.
	before := h.notify("kat", "after broadcast") // kat's stream: bid, this
	expectIDs(t, c, before)
	r2 := h.openSSE("kat", "lastEventId="+url.QueryEscape(bid))
	expectConnected(t, r2, "kat", "sse")
	expectIDs(t, r2, before)
}

func TestE2EConflationOffline(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	dash := func(widget string, v int) string {
		return h.push("dashboard", map[string]any{"userId": "liv", "widgetId": widget, "data": map[string]any{"v": v}})
	}
	dash("cpu", 1)
	dash("cpu", 2)
	n := h.notify("liv", "between")
	cpu3 := dash("cpu", 3)
	mem1 := dash("mem", 1)
	s := h.openSSE("liv", "")
	expectConnected(t, s, "liv", "sse")
	es := expectIDs(t, s, n, cpu3, mem1)
	if d, _ := es[1].Payload["data"].(map[string]any); d["v"] != float64(3) {
		t.Errorf("conflated cpu update carries %s, want the newest value 3", compact(es[1].Payload))
	}
	// Live updates are delivered one by one to a reader that keeps up.
	cpu4 := dash("cpu", 4)
	expectIDs(t, s, cpu4)
}

// TestE2EConflationKeepsBacklog: superseded dashboard updates do not count
// against the offline max count, so a busy widget never pushes
// notifications out and causes no reset.
func TestE2EConflationKeepsBacklog(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Keep.MaxCount = 3 })
	seen := h.notify("mia", "seen")
	n1 := h.notify("mia", "n1")
	n2 := h.notify("mia", "n2")
	var last string
	for i := range 20 {
		last = h.push("dashboard", map[string]any{"userId": "mia", "widgetId": "busy", "data": i})
	}
	for _, tr := range []string{"sse", "ws"} {
		var s subscriber
		if tr == "sse" {
			s = h.openSSE("mia", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", seen) })
		} else {
			s = h.openWS("mia", "lastEventId="+url.QueryEscape(seen))
		}
		expectConnected(t, s, "mia", tr)
		expectIDs(t, s, n1, n2, last) // no reset: nothing was lost
	}
}

// TestE2EResumeWhilePublishing: a client that keeps disconnecting and
// resuming (alternating SSE and WS) while messages are published sees every
// message exactly once, in order.
func TestE2EResumeWhilePublishing(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) {
		c.Keep.MaxCount = 10000
		c.Stream.ReplayPage = 7 // many replay pages while publishing
	})
	const total = 300
	pubErr := make(chan error, 1)
	published := make([]string, 0, total)
	var mu sync.Mutex
	go func() {
		for i := range total {
			id, err := h.tryNotify("ned", fmt.Sprintf("n%d", i))
			if err != nil {
				pubErr <- err
				return
			}
			mu.Lock()
			published = append(published, id)
			mu.Unlock()
		}
		pubErr <- nil
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	var got []string
	last := ""
	for round := 0; len(got) < total; round++ {
		if round > 10*total {
			t.Fatalf("no progress: %d of %d after %d reconnects", len(got), total, round)
		}
		var s subscriber
		var closer func()
		tr := "sse"
		if round%2 == 1 {
			tr = "ws"
		}
		switch {
		case tr == "sse" && last == "":
			c := h.openSSE("ned", "lastEventId=")
			s, closer = c, c.Close
		case tr == "sse":
			c := h.openSSE("ned", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", last) })
			s, closer = c, c.Close
		default:
			c := h.openWS("ned", "lastEventId="+url.QueryEscape(last))
			s, closer = c, c.Close
		}
		expectConnected(t, s, "ned", tr)
		want := 1 + rng.IntN(40)
		for i := 0; i < want && len(got) < total; i++ {
			e := nextNonHeartbeat(t, s)
			if !e.HasID {
				t.Fatalf("round %d (%s, resuming after %q): got %s, want stored messages only", round, tr, last, e)
			}
			if last != "" && e.ID <= last {
				t.Fatalf("round %d (%s): id %s after %s: duplicate or out of order", round, tr, e.ID, last)
			}
			got = append(got, e.ID)
			last = e.ID
		}
		closer()
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(published) != total || strings.Join(published, ",") != strings.Join(got, ",") {
		t.Fatalf("received %d ids that differ from the %d published", len(got), len(published))
	}
}

// tryNotify is notify for goroutines other than the test's.
func (h *e2e) tryNotify(user, title string) (string, error) {
	body, _ := json.Marshal(map[string]any{"userId": user, "title": title, "body": "b"})
	req, err := http.NewRequest("POST", h.url("/api/ws/push/notification"), strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	resp, err := h.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 202 || out.ID == "" {
		return "", fmt.Errorf("push: status %d, decode %v", resp.StatusCode, err)
	}
	return out.ID, nil
}
