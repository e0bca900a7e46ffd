package api_test

// Error cases of the REST API (CONTRACT §5): 401, 404, 405, 413, 400, 429,
// 503 — each a JSON error — and the server staying healthy afterwards.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

func TestE2EUnauthorized(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	body := map[string]any{"userId": "u", "title": "t", "body": "b"}
	for _, tc := range []struct{ name, authz string }{
		{"no key", ""},
		{"wrong key", "Bearer not-the-key"},
		{"bare key without Bearer", e2eAPIKey},
		{"other scheme", "Basic " + e2eAPIKey},
		{"Bearer without key", "Bearer "},
		{"key with a suffix", "Bearer " + e2eAPIKey + "x"},
		{"key prefix", "Bearer " + e2eAPIKey[:len(e2eAPIKey)-1]},
	} {
		for _, route := range []struct{ method, path string }{
			{"POST", "/api/ws/push/notification"},
			{"POST", "/api/ws/connect"},
			{"GET", "/api/ws/stats"},
			{"GET", "/api/ws/connections/u"},
			{"POST", "/api/ws/disconnect/u"},
			{"POST", "/api/ws/push/batch"},
			{"POST", "/api/ws/broadcast"},
		} {
			var b any
			if route.method == "POST" {
				b = body
			}
			r := h.do(route.method, route.path, b, tc.authz)
			if r.Status != 401 {
				t.Errorf("%s %s with %s: status %d, want 401: %s", route.method, route.path, tc.name, r.Status, r)
				continue
			}
			r.expectError(t, 401, "unauthorized")
		}
	}
	// Nothing was pushed by any of them.
	if p := h.stats().QueueStats.PendingMessages; p != 0 {
		t.Errorf("pendingMessages = %d after unauthorized pushes, want 0", p)
	}
	// The scheme is case-insensitive (RFC 7235); the key is not.
	h.do("GET", "/api/ws/stats", nil, "bearer "+e2eAPIKey).expectStatus(t, 200)
	h.do("GET", "/api/ws/stats", nil, "Bearer "+strings.ToUpper(e2eAPIKey)).expectError(t, 401, "unauthorized")
}

func TestE2ENotFound(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	for _, tc := range []struct{ method, path, authz string }{
		{"GET", "/api/nope", ""},
		{"POST", "/api/ws/push/sms", ""},
		{"POST", "/api/ws/push/sms", "Bearer " + e2eAPIKey},
		{"GET", "/nope", ""},
		{"POST", "/api/ws/push/notification/", ""},
		{"GET", "/api/ws/stats/", "Bearer " + e2eAPIKey},
		{"GET", "/API/WS/STATS", "Bearer " + e2eAPIKey},
		{"DELETE", "/api/ws/connections/u/extra", ""},
	} {
		r := h.do(tc.method, tc.path, nil, tc.authz)
		if r.Status != 404 {
			t.Errorf("%s %s (auth %v): status %d, want 404 before auth: %s", tc.method, tc.path, tc.authz != "", r.Status, r)
			continue
		}
		r.expectError(t, 404, "not_found")
	}
}

func TestE2EMethodNotAllowed(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/api/ws/push/notification", "POST"},
		{"PUT", "/api/ws/connect", "POST"},
		{"DELETE", "/api/ws/broadcast", "POST"},
		{"POST", "/api/ws/stats", "GET"},
		{"DELETE", "/api/ws/connections/u", "GET"},
		{"GET", "/api/ws/disconnect/u", "POST"},
		{"POST", "/healthz", "GET"},
		{"POST", "/sse", "GET"},
		{"PATCH", "/metrics", "GET"},
	} {
		r := h.do(tc.method, tc.path, nil, "")
		if r.Status != 405 {
			t.Errorf("%s %s: status %d, want 405: %s", tc.method, tc.path, r.Status, r)
			continue
		}
		r.expectError(t, 405, "method_not_allowed")
		allow := r.Header.Get("Allow")
		if !strings.Contains(allow, tc.allow) {
			t.Errorf("%s %s: Allow = %q, want it to list %s", tc.method, tc.path, allow, tc.allow)
		}
		if strings.Contains(allow, tc.method) {
			t.Errorf("%s %s: Allow = %q lists the refused method", tc.method, tc.path, allow)
		}
	}
}

// unsized hides a body's length so the client sends it chunked.
type unsized struct{ io.Reader }

func TestE2EPayloadTooLarge(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.MaxMessageBytes = 1024 })
	single := fmt.Sprintf(`{"userId":"u","title":"t","body":%q}`, strings.Repeat("x", 2000))
	for _, path := range []string{"/api/ws/push/notification", "/api/ws/push/batch", "/api/ws/connect", "/api/ws/disconnect/u", "/api/ws/broadcast"} {
		big := single
		if path == "/api/ws/push/batch" {
			// The batch body has its own limit; each message in it is
			// held to MaxMessageBytes.
			big = `{"messages":[` + strings.Replace(single, "{", `{"kind":"notification",`, 1) + `]}`
		}
		// With Content-Length.
		h.do("POST", path, big, "Bearer "+e2eAPIKey).expectError(t, 413, "payload_too_large")
		// Chunked: no Content-Length, the limit still holds while reading.
		req, _ := http.NewRequest("POST", h.url(path), unsized{strings.NewReader(big)})
		req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
		req.Header.Set("Content-Type", "application/json")
		if req.ContentLength != 0 && req.ContentLength != -1 {
			t.Fatalf("test setup: request has a Content-Length %d", req.ContentLength)
		}
		r := h.send(req)
		if r.Status != 413 {
			t.Errorf("chunked POST %s of %d bytes over a 1024-byte limit: status %d, want 413: %s", path, len(big), r.Status, r)
		} else {
			r.expectError(t, 413, "payload_too_large")
		}
	}
	// A body of exactly the limit is accepted.
	pad := 1024 - len(`{"userId":"u","title":"t","body":""}`)
	exact := fmt.Sprintf(`{"userId":"u","title":"t","body":%q}`, strings.Repeat("y", pad))
	if len(exact) != 1024 {
		t.Fatalf("test setup: %d bytes", len(exact))
	}
	pushAccepted(t, "a body of exactly MaxMessageBytes", h.api("POST", "/api/ws/push/notification", exact))
	if p := h.stats().QueueStats.PendingMessages; p != 1 {
		t.Errorf("pendingMessages = %d, want only the accepted message", p)
	}
}

func TestE2EPayloadTooLargeDefaultLimit(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	big := `{"userId":"u","title":"t","body":"` + strings.Repeat("z", 200_000) + `"}`
	h.do("POST", "/api/ws/push/notification", big, "Bearer "+e2eAPIKey).expectError(t, 413, "payload_too_large")
	req, _ := http.NewRequest("POST", h.url("/api/ws/push/notification"), unsized{strings.NewReader(big)})
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	h.send(req).expectError(t, 413, "payload_too_large")
	e2eStillHealthy(t, h)
}

// badRequests are bodies every one of which must be answered 400.
var badRequests = []struct {
	name, path, body string
}{
	{"non-JSON", "notification", `hello`},
	{"empty body", "notification", ``},
	{"whitespace body", "notification", " \n\t "},
	{"JSON null", "notification", `null`},
	{"JSON array", "notification", `[{"userId":"u","title":"t","body":"b"}]`},
	{"JSON string", "notification", `"u"`},
	{"truncated JSON", "notification", `{"userId":"u","title":"t"`},
	{"single quotes", "notification", `{'userId':'u','title':'t','body':'b'}`},
	{"trailing comma", "notification", `{"userId":"u","title":"t","body":"b",}`},
	{"trailing data", "notification", `{"userId":"u","title":"t","body":"b"} {"x":1}`},
	{"trailing garbage", "notification", `{"userId":"u","title":"t","body":"b"}x`},
	{"trailing brace", "notification", `{"userId":"u","title":"t","body":"b"}}`},
	{"trailing bracket", "notification", `{"userId":"u","title":"t","body":"b"}]`},
	{"two objects", "notification", `{"userId":"u","title":"t","body":"b"}{"userId":"u","title":"t","body":"b"}`},
	{"unknown field", "notification", `{"userId":"u","title":"t","body":"b","colour":"red"}`},
	{"unknown field in capitals", "notification", `{"userId":"u","title":"t","body":"b","USERID2":"x"}`},
	{"missing userId", "notification", `{"title":"t","body":"b"}`},
	{"empty userId", "notification", `{"userId":"","title":"t","body":"b"}`},
	{"null userId", "notification", `{"userId":null,"title":"t","body":"b"}`},
	{"userId number", "notification", `{"userId":42,"title":"t","body":"b"}`},
	{"userId object", "notification", `{"userId":{"id":"u"},"title":"t","body":"b"}`},
	{"missing title", "notification", `{"userId":"u","body":"b"}`},
	{"empty title", "notification", `{"userId":"u","title":"","body":"b"}`},
	{"blank title", "notification", `{"userId":"u","title":"   ","body":"b"}`},
	{"title bool", "notification", `{"userId":"u","title":true,"body":"b"}`},
	{"missing body", "notification", `{"userId":"u","title":"t"}`},
	{"body array", "notification", `{"userId":"u","title":"t","body":["b"]}`},
	{"icon number", "notification", `{"userId":"u","title":"t","body":"b","icon":1}`},
	{"invalid UTF-8 in a string", "notification", "{\"userId\":\"u\",\"title\":\"t\xff\xfe\",\"body\":\"b\"}"},
	{"invalid UTF-8 in a key", "notification", "{\"userId\":\"u\",\"title\":\"t\",\"body\":\"b\",\"\xc3\x28\":1}"},
	{"NUL in userId", "notification", `{"userId":"u\u0000v","title":"t","body":"b"}`},
	{"deeply nested data (array)", "dashboard", `{"userId":"u","widgetId":"w","data":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`},
	{"deeply nested data (object)", "notification", `{"userId":"u","title":"t","body":"b","data":` + strings.Repeat(`{"a":`, 10050) + `1` + strings.Repeat("}", 10050) + `}`},
	{"missing widgetId", "dashboard", `{"userId":"u","data":1}`},
	{"widgetId number", "dashboard", `{"userId":"u","widgetId":3,"data":1}`},
	{"missing data", "dashboard", `{"userId":"u","widgetId":"w"}`},
	{"missing tableId", "data-change", `{"userId":"u","rowId":"1","action":"create"}`},
	{"missing rowId", "data-change", `{"userId":"u","tableId":"t","action":"create"}`},
	{"rowId number", "data-change", `{"userId":"u","tableId":"t","rowId":1,"action":"create"}`},
	{"missing action", "data-change", `{"userId":"u","tableId":"t","rowId":"1"}`},
	{"bad action", "data-change", `{"userId":"u","tableId":"t","rowId":"1","action":"upsert"}`},
	{"action wrong case", "data-change", `{"userId":"u","tableId":"t","rowId":"1","action":"CREATE"}`},
	{"action number", "data-change", `{"userId":"u","tableId":"t","rowId":"1","action":1}`},
	{"missing entry", "audit-log", `{"userId":"u"}`},
	{"null entry", "audit-log", `{"userId":"u","entry":null}`},
	{"broadcast without title", "broadcast", `{"body":"b"}`},
	{"broadcast excludeUserIds string", "broadcast", `{"title":"t","body":"b","excludeUserIds":"u"}`},
	{"broadcast excludeUserIds numbers", "broadcast", `{"title":"t","body":"b","excludeUserIds":[1,2]}`},
	{"connect without userId", "connect", `{}`},
	{"connect userId number", "connect", `{"userId":7}`},
	{"connect unknown field", "connect", `{"userId":"u","admin":true}`},
	{"batch not an array", "batch", `{"messages":{"kind":"notification"}}`},
	{"batch item not an object", "batch", `{"messages":[1]}`},
	{"disconnect reason number", "disconnect", `{"reason":5}`},
	{"disconnect empty reason", "disconnect", `{"reason":""}`},
	{"disconnect non-JSON", "disconnect", `bye`},
	{"disconnect unknown field", "disconnect", `{"why":"x"}`},
}

func badInputPath(kind string) string {
	switch kind {
	case "broadcast":
		return "/api/ws/broadcast"
	case "connect":
		return "/api/ws/connect"
	case "disconnect":
		return "/api/ws/disconnect/u"
	}
	return "/api/ws/push/" + kind
}

func TestE2EBadRequests(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sub := h.openSSE("u", "")
	expectConnected(t, sub, "u", "sse")
	for _, tc := range badRequests {
		path := badInputPath(tc.path)
		r := h.api("POST", path, tc.body)
		if r.Status != 400 {
			t.Errorf("%s: POST %s: status %d, want 400: %s", tc.name, path, r.Status, abbreviate(r.String()))
			continue
		}
		msg := r.expectError(t, 400, "bad_request")
		if len(msg) > 2000 {
			t.Errorf("%s: error message of %d bytes; want a short one", tc.name, len(msg))
		}
	}
	// Nothing of it was stored or delivered, and u was not disconnected.
	if p := h.stats().QueueStats.PendingMessages; p != 0 {
		t.Errorf("pendingMessages = %d after only bad requests, want 0", p)
	}
	id := h.notify("u", "after the bad input")
	expectMarker(t, sub, id, "bad requests must store and deliver nothing")
	e2eStillHealthy(t, h)
}

// TestE2EBadRequestsInBatch: every bad single message is also refused inside
// a batch, naming its index.
func TestE2EBadRequestsInBatch(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.MaxMessageBytes = 1 << 20 })
	for _, tc := range badRequests {
		switch tc.path {
		case "connect", "disconnect", "batch":
			continue
		}
		trimmed := strings.TrimSpace(tc.body)
		if !strings.HasPrefix(trimmed, "{") || !strings.HasSuffix(trimmed, "}") || strings.Contains(tc.name, "trailing") || strings.Contains(tc.name, "two objects") || strings.Contains(tc.name, "UTF-8") || strings.Contains(tc.name, "truncated") || strings.Contains(tc.name, "single quotes") || strings.Contains(tc.name, "trailing comma") {
			continue // not embeddable as one array element
		}
		item := `{"kind":"` + tc.path + `",` + strings.TrimPrefix(trimmed, "{")
		if trimmed == "{}" {
			item = `{"kind":"` + tc.path + `"}`
		}
		body := `{"messages":[{"kind":"notification","userId":"u","title":"ok","body":"ok"},` + item + `]}`
		r := h.api("POST", "/api/ws/push/batch", body)
		if r.Status != 400 {
			t.Errorf("batch with %s at index 1: status %d, want 400: %s", tc.name, r.Status, abbreviate(r.String()))
			continue
		}
		msg := r.expectError(t, 400, "bad_request")
		if !strings.Contains(msg, "1") {
			t.Errorf("batch with %s at index 1: error %q does not name the index", tc.name, msg)
		}
	}
	if p := h.stats().QueueStats.PendingMessages; p != 0 {
		t.Errorf("pendingMessages = %d after only rejected batches, want 0", p)
	}
}

// e2eStillHealthy checks /healthz and that a normal push is still delivered.
func e2eStillHealthy(t *testing.T, h *e2e) {
	t.Helper()
	h.do("GET", "/healthz", nil, "").expectStatus(t, 200)
	h.do("GET", "/readyz", nil, "").expectStatus(t, 200)
	user := "healthy-" + strconv.Itoa(int(h.stats().TotalConnections))
	sub := h.openSSE(user, "")
	expectConnected(t, sub, user, "sse")
	id := h.notify(user, "still working")
	expectIDs(t, sub, id)
}

func TestE2ERateLimited(t *testing.T) {
	t.Parallel()
	// One request per 100 s, burst 1: the second request is refused for
	// certain, however slow the machine.
	h := newE2E(t, func(c *e2eConfig) { c.Opts.RateLimit = 0.01; c.Opts.RateBurst = 1 })
	h.api("GET", "/api/ws/stats", nil).expectStatus(t, 200)
	r := h.api("POST", "/api/ws/push/notification", map[string]any{"userId": "u", "title": "t", "body": "b"})
	r.expectError(t, 429, "rate_limited")
	ra := r.Header.Get("Retry-After")
	n, err := strconv.Atoi(ra)
	if err != nil || n < 1 {
		t.Errorf("429 Retry-After = %q, want a positive number of seconds", ra)
	}
	// Unauthenticated operational endpoints are not rate limited.
	h.do("GET", "/healthz", nil, "").expectStatus(t, 200)
	h.do("GET", "/metrics", nil, "").expectStatus(t, 200)
	// Subscribing is not a REST request either.
	sub := h.openSSE("u", "")
	expectConnected(t, sub, "u", "sse")
}

func TestE2EStoreUnavailable(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	live := h.openSSE("nia", "")
	expectConnected(t, live, "nia", "sse")
	first := h.notify("nia", "before the outage")
	expectIDs(t, live, first)

	h.store.down.Store(true)
	r := h.do("GET", "/readyz", nil, "")
	r.expectError(t, 503, "unavailable")
	h.do("GET", "/healthz", nil, "").expectStatus(t, 200)

	for _, tc := range []struct{ path, body string }{
		{"/api/ws/push/notification", `{"userId":"nia","title":"lost","body":"b"}`},
		{"/api/ws/push/dashboard", `{"userId":"nia","widgetId":"w","data":1}`},
		{"/api/ws/push/data-change", `{"userId":"nia","tableId":"t","rowId":"1","action":"create"}`},
		{"/api/ws/push/audit-log", `{"userId":"nia","entry":"e"}`},
		{"/api/ws/broadcast", `{"title":"lost","body":"b"}`},
		{"/api/ws/push/batch", `{"messages":[{"kind":"notification","userId":"nia","title":"lost","body":"b"}]}`},
	} {
		r := h.api("POST", tc.path, tc.body)
		if r.Status != 503 {
			t.Errorf("POST %s while the store is down: status %d, want 503: %s", tc.path, r.Status, r)
			continue
		}
		r.expectError(t, 503, "unavailable")
		if bytes.Contains(r.Body, []byte(`"id"`)) {
			t.Errorf("POST %s: a 503 carries an id: %s", tc.path, r)
		}
	}
	h.api("GET", "/api/ws/stats", nil).expectError(t, 503, "unavailable")
	// A new subscriber cannot be replayed its stream: 503 before any stream
	// byte, not a stream with a hole.
	req, cancel := h.sseRequest("access_token=" + h.token("nia"))
	defer cancel()
	if resp, err := h.client.Do(req); err != nil {
		t.Errorf("GET /sse while the store is down: %v; want a 503 JSON error", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET /sse while the store is down: status %d Content-Type %q, want a 503 JSON error: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		} else {
			(&e2eResp{Status: resp.StatusCode, Header: resp.Header, Body: body}).expectError(t, 503, "unavailable")
		}
	}
	// Same on /ws: the upgrade succeeds, then a close code (no stream).
	if conn, _, err := h.dialWS("access_token="+h.token("nia"), nil); err == nil {
		w := h.wsFrom(conn, "WS(nia, store down)", true)
		for {
			e, ok := w.Next(t)
			if !ok {
				break
			}
			if e.Type != "heartbeat" {
				t.Errorf("WS while the store is down: got %s, want the socket closed", e)
				break
			}
		}
		var ce *websocket.CloseError
		if !errors.As(w.Err(), &ce) || ce.Code == 1000 || ce.Code == 4000 || ce.Code == 4001 || ce.Code == websocket.CloseAbnormalClosure {
			t.Errorf("WS while the store is down ended with %v; want a close code that says retry (1013 or 1012)", w.Err())
		}
	}
	if h.mgr.Counts().Connections != 1 {
		t.Errorf("refused subscribers are counted: %+v", h.mgr.Counts())
	}

	h.store.down.Store(false)
	h.do("GET", "/readyz", nil, "").expectStatus(t, 200)
	after := h.notify("nia", "after the outage")
	expectMarker(t, live, after, "refused pushes must not be delivered")
	// No refused message was stored: a resume from the first id finds only
	// the message pushed after the outage.
	re := h.openSSE("nia", "lastEventId="+first)
	expectConnected(t, re, "nia", "sse")
	expectIDs(t, re, after)
	fresh := h.openSSE("otto", "")
	expectConnected(t, fresh, "otto", "sse")
	marker := h.notify("otto", "marker")
	expectIDs(t, fresh, marker) // the refused broadcast is not in otto's stream
}

// expectMarker reads up to the message id, reporting everything else that
// arrives before it as an error (why says what it means).
func expectMarker(t *testing.T, s subscriber, id, why string) {
	t.Helper()
	for {
		e := nextNonHeartbeat(t, s)
		if e.HasID && e.ID == id {
			return
		}
		t.Errorf("%s: unexpected %s before %s (%s)", s.Name(), e, id, why)
	}
}
