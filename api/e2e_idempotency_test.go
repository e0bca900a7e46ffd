package api_test

// Idempotent publishing (CONTRACT §5) and how the edge answers store errors.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/stream"
)

func (h *e2e) keyed(path, key string, body any) *e2eResp {
	h.t.Helper()
	return h.do("POST", path, body, "Bearer "+e2eAPIKey, "Idempotency-Key", key)
}

// sameBody fails unless two answers are the same JSON.
func sameBody(t *testing.T, what string, got, first *e2eResp) {
	t.Helper()
	var a, b any
	if json.Unmarshal(got.Body, &a) != nil || json.Unmarshal(first.Body, &b) != nil || compact(a) != compact(b) {
		t.Fatalf("%s: answered %s, want the first answer %s", what, got, first)
	}
}

// TestE2EIdempotentPushEveryRoute: on every publish route, a repeat of a
// key answers the first answer (status and body, same id) and stores and
// delivers nothing; the same request encoded differently is a repeat; a
// different request under the key is 409 conflict.
func TestE2EIdempotentPushEveryRoute(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sub := h.openSSE("ida", "")
	expectConnected(t, sub, "ida", "sse")
	routes := []struct{ path, body, reordered, other string }{
		{"/api/ws/push/notification",
			`{"userId":"ida","title":"t","body":"b","data":{"x":1,"y":[1,2]}}`,
			"{ \"data\": {\"y\":[1, 2], \"x\":1}, \"body\":\"b\",\n \"title\":\"t\", \"userId\":\"ida\" }",
			`{"userId":"ida","title":"t","body":"other"}`},
		{"/api/ws/push/dashboard", `{"userId":"ida","widgetId":"w","data":{"v":1}}`, `{"data":{"v":1},"widgetId":"w","userId":"ida"}`, `{"userId":"ida","widgetId":"w","data":{"v":2}}`},
		{"/api/ws/push/data-change", `{"userId":"ida","tableId":"t","rowId":"1","action":"create"}`, `{"action":"create","rowId":"1","tableId":"t","userId":"ida"}`, `{"userId":"ida","tableId":"t","rowId":"1","action":"update"}`},
		{"/api/ws/push/audit-log", `{"userId":"ida","entry":"e"}`, `{"entry":"e","userId":"ida"}`, `{"userId":"ida","entry":"f"}`},
		{"/api/ws/broadcast", `{"title":"t","body":"b"}`, `{"body":"b","title":"t"}`, `{"title":"t","body":"b","excludeUserIds":["x"]}`},
	}
	var ids []string
	for i, rt := range routes {
		key := fmt.Sprint("route-key-", i)
		first := h.keyed(rt.path, key, rt.body).expectStatus(t, 202)
		var out struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(first.Body, &out)
		ids = append(ids, out.ID)
		if first.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("%s: a first publish is marked Idempotent-Replayed", rt.path)
		}
		time.Sleep(2 * time.Millisecond) // a repeat must not take a new timestamp
		again := h.keyed(rt.path, key, rt.body).expectStatus(t, 202)
		sameBody(t, rt.path+" repeat", again, first)
		if again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: a repeat lacks Idempotent-Replayed: true", rt.path)
		}
		sameBody(t, rt.path+" repeat, encoded differently", h.keyed(rt.path, key, rt.reordered).expectStatus(t, 202), first)
		msg := h.keyed(rt.path, key, rt.other).expectError(t, 409, "conflict")
		if !strings.Contains(msg, "Idempotency-Key") {
			t.Errorf("%s: 409 message %q does not name the header", rt.path, msg)
		}
		// The same key on another route is another request.
		other := routes[(i+1)%len(routes)]
		h.keyed(other.path, key, other.body).expectError(t, 409, "conflict")
	}
	expectIDs(t, sub, ids...)
	// Repeats are not counted as published.
	if n, _ := h.metric("pushd_messages_published_total"); n != float64(len(routes)) {
		t.Errorf("pushd_messages_published_total = %v, want %d (repeats do not count)", n, len(routes))
	}
	marker := h.notify("ida", "marker")
	expectMarker(t, sub, marker, "a repeat must not be delivered again")
	// Nor stored: a resume from the start finds each message once.
	re := h.openSSE("ida", "lastEventId="+ids[0])
	expectConnected(t, re, "ida", "sse")
	expectIDs(t, re, append(ids[1:], marker)...)
}

// TestE2EIdempotentBatch: the header covers the whole batch; items may
// carry their own keys, shared with single pushes.
func TestE2EIdempotentBatch(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sub := h.openSSE("bo", "")
	expectConnected(t, sub, "bo", "sse")
	batch := map[string]any{"messages": []map[string]any{
		{"kind": "notification", "userId": "bo", "title": "1", "body": "b"},
		{"kind": "broadcast", "title": "2", "body": "b"},
		{"kind": "audit-log", "userId": "bo", "entry": "3"},
	}}
	first := h.keyed("/api/ws/push/batch", "batch-1", batch).expectStatus(t, 202)
	time.Sleep(2 * time.Millisecond)
	repeat := h.keyed("/api/ws/push/batch", "batch-1", batch).expectStatus(t, 202)
	sameBody(t, "batch repeat", repeat, first)
	if repeat.Header.Get("Idempotent-Replayed") != "true" || first.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("Idempotent-Replayed: first %q, repeat %q; want only the repeat marked", first.Header.Get("Idempotent-Replayed"), repeat.Header.Get("Idempotent-Replayed"))
	}
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(first.Body, &out); err != nil || len(out.IDs) != 3 {
		t.Fatalf("batch answer %s", first)
	}
	changed := map[string]any{"messages": batch["messages"].([]map[string]any)[:2]}
	h.keyed("/api/ws/push/batch", "batch-1", changed).expectError(t, 409, "conflict")
	// The header's key is the batch's: a single push under it conflicts.
	h.keyed("/api/ws/push/notification", "batch-1", map[string]any{"userId": "bo", "title": "1", "body": "b"}).expectError(t, 409, "conflict")
	expectIDs(t, sub, out.IDs...)

	// Item keys: a retried item is answered with its first id, the new
	// items are stored; an item key is the same request as a single push.
	single := h.keyed("/api/ws/push/notification", "item-a", map[string]any{"userId": "bo", "title": "a", "body": "b"}).expectStatus(t, 202)
	var one struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(single.Body, &one)
	items := map[string]any{"messages": []map[string]any{
		{"kind": "notification", "userId": "bo", "title": "a", "body": "b", "idempotencyKey": "item-a"},
		{"kind": "notification", "userId": "bo", "title": "c", "body": "b", "idempotencyKey": "item-c"},
		{"kind": "notification", "userId": "bo", "title": "d", "body": "b"},
		{"kind": "notification", "userId": "bo", "title": "c", "body": "b", "idempotencyKey": "item-c"},
	}}
	r := h.api("POST", "/api/ws/push/batch", items).expectStatus(t, 202)
	if r.Header.Get("Idempotent-Replayed") != "" {
		t.Error("a batch that stored new items is marked Idempotent-Replayed")
	}
	var got struct {
		IDs []string `json:"ids"`
	}
	_ = json.Unmarshal(r.Body, &got)
	if len(got.IDs) != 4 || got.IDs[0] != one.ID || got.IDs[3] != got.IDs[1] || got.IDs[1] == got.IDs[2] {
		t.Fatalf("item keys: ids %v; want [%s, new, new, the second again]", got.IDs, one.ID)
	}
	expectIDs(t, sub, one.ID, got.IDs[1], got.IDs[2])
	r = h.api("POST", "/api/ws/push/batch", items).expectStatus(t, 202)
	var again struct {
		IDs []string `json:"ids"`
	}
	_ = json.Unmarshal(r.Body, &again)
	if fmt.Sprint(again.IDs[:2]) != fmt.Sprint(got.IDs[:2]) || again.IDs[2] == got.IDs[2] {
		t.Fatalf("batch of item keys again: ids %v after %v; keyed items repeat, the unkeyed one is new", again.IDs, got.IDs)
	}
	conflict := map[string]any{"messages": []map[string]any{
		{"kind": "notification", "userId": "bo", "title": "e", "body": "b"},
		{"kind": "notification", "userId": "bo", "title": "changed", "body": "b", "idempotencyKey": "item-c"},
	}}
	msg := h.api("POST", "/api/ws/push/batch", conflict).expectError(t, 409, "conflict")
	if !strings.Contains(msg, "messages[1]") {
		t.Errorf("409 %q does not name the item", msg)
	}
	// A field name written with escapes is the same field.
	escaped := `{"messages":[{"kind":"notification","userId":"bo","title":"a","body":"b","\u0069dempotencyKey":"item-a"}]}`
	r = h.api("POST", "/api/ws/push/batch", escaped).expectStatus(t, 202)
	var esc struct {
		IDs []string `json:"ids"`
	}
	if _ = json.Unmarshal(r.Body, &esc); len(esc.IDs) != 1 || esc.IDs[0] != one.ID {
		t.Fatalf("item key with an escaped field name: ids %v, want [%s]", esc.IDs, one.ID)
	}
	marker := h.notify("bo", "marker")
	expectIDs(t, sub, again.IDs[2])
	expectMarker(t, sub, marker, "only the unkeyed item of the repeated batch is new")
}

// TestE2EIdempotencyKeyValidation: bad keys are 400, and nothing is stored.
func TestE2EIdempotencyKeyValidation(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sub := h.openSSE("val", "")
	expectConnected(t, sub, "val", "sse")
	body := `{"userId":"val","title":"t","body":"b"}`
	for name, key := range map[string]string{
		"empty":       "",
		"too long":    strings.Repeat("k", 201),
		"non-ASCII":   "clé",
		"control":     "a\x01b",
		"DEL":         "a\x7fb",
		"tab in side": "a\tb",
	} {
		// Raw bytes: Go's client refuses to send some of these.
		status, resp := h.rawPost(t, "/api/ws/push/notification", "Idempotency-Key: "+key, body)
		if status != 400 {
			t.Errorf("key %s (%q): status %d, want 400: %s", name, key, status, resp)
		}
		// Control bytes are refused by net/http's header parser already.
		if strings.IndexFunc(key, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) < 0 && !strings.Contains(resp, `"bad_request"`) {
			t.Errorf("key %s (%q): want the JSON error shape with bad_request: %s", name, key, resp)
		}
	}
	h.keyed("/api/ws/push/notification", strings.Repeat("k", 200), body).expectStatus(t, 202)
	h.keyed("/api/ws/push/notification", " ~!", body).expectStatus(t, 202)

	req, _ := http.NewRequest("POST", h.url("/api/ws/push/notification"), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	req.Header.Add("Idempotency-Key", "one")
	req.Header.Add("Idempotency-Key", "two")
	h.send(req).expectError(t, 400, "bad_request")

	for _, tc := range []struct{ path, body, want string }{
		{"/api/ws/push/notification", `{"userId":"val","title":"t","body":"b","idempotencyKey":"k"}`, "Idempotency-Key header"},
		{"/api/ws/push/notification", `{"userId":"val","title":"t","body":"b","\u0069dempotencyKey":"k"}`, "Idempotency-Key header"},
		{"/api/ws/push/batch", `{"messages":[{"kind":"notification","userId":"val","title":"t","body":"b","idempotencyKey":""}]}`, "messages[0].idempotencyKey"},
		{"/api/ws/push/batch", `{"messages":[{"kind":"notification","userId":"val","title":"t","body":"b"},{"kind":"audit-log","userId":"val","entry":1,"idempotencyKey":7}]}`, "messages[1]"},
		{"/api/ws/push/batch", `{"messages":[{"kind":"notification","userId":"val","title":"t","body":"b","idempotencyKey":"` + strings.Repeat("x", 201) + `"}]}`, "messages[0].idempotencyKey"},
	} {
		msg := h.api("POST", tc.path, tc.body).expectError(t, 400, "bad_request")
		if !strings.Contains(msg, tc.want) {
			t.Errorf("POST %s %s: message %q does not name %q", tc.path, tc.body, msg, tc.want)
		}
	}
	msg := h.keyed("/api/ws/push/batch", "hdr", `{"messages":[{"kind":"notification","userId":"val","title":"t","body":"b","idempotencyKey":"item"}]}`).expectError(t, 400, "bad_request")
	if !strings.Contains(msg, "cannot be combined") {
		t.Errorf("header and item keys together: message %q", msg)
	}
	marker := h.notify("val", "marker")
	// Only the two valid keyed pushes and the marker were stored.
	var seen int
	for {
		e := nextNonHeartbeat(t, sub)
		if e.ID == marker {
			break
		}
		seen++
	}
	if seen != 2 {
		t.Fatalf("%d messages before the marker, want the 2 accepted ones", seen)
	}
}

// rawPost sends a request with header line hdr as raw bytes and returns the
// status and the whole response.
func (h *e2e) rawPost(t *testing.T, path, hdr, body string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.host(), e2eWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(e2eWait))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n%s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		path, h.host(), e2eAPIKey, hdr, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", hdr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestE2EIdempotencyTTL: a key is kept --idempotency-ttl; after it the same
// key publishes anew.
func TestE2EIdempotencyTTL(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	h := newE2E(t, func(c *e2eConfig) {
		c.Keep.IdempotencyTTL = time.Hour
		c.Keep.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	body := `{"userId":"tt","title":"t","body":"b"}`
	first := h.keyed("/api/ws/push/notification", "ttl", body).expectStatus(t, 202)
	advance(59 * time.Minute)
	sameBody(t, "within the TTL", h.keyed("/api/ws/push/notification", "ttl", body).expectStatus(t, 202), first)
	advance(2 * time.Minute)
	later := h.keyed("/api/ws/push/notification", "ttl", body).expectStatus(t, 202)
	if bytes.Equal(later.Body, first.Body) {
		t.Fatalf("past the TTL the key still answered %s", later)
	}
}

// TestE2EConcurrentRetries: a publisher that retries while its first try is
// in flight gets one message stored.
func TestE2EConcurrentRetries(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	sub := h.openSSE("cc", "")
	expectConnected(t, sub, "cc", "sse")
	const tries = 16
	bodies := make([]string, tries)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.keyed("/api/ws/push/notification", "same", `{"userId":"cc","title":"t","body":"b"}`)
			if r.Status != 202 {
				t.Errorf("try %d: %s", i, r)
			}
			var out struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(r.Body, &out)
			bodies[i] = out.ID
		}()
	}
	wg.Wait()
	for i := range bodies {
		if bodies[i] != bodies[0] {
			t.Fatalf("tries answered ids %v", bodies)
		}
	}
	expectIDs(t, sub, bodies[0])
	marker := h.notify("cc", "marker")
	expectMarker(t, sub, marker, "concurrent retries must store one message")
}

// TestE2EStoreErrorsAtTheEdge: an outage is 503 with Retry-After; an unknown
// commit outcome is 500 outcome_unknown; anything else (a rejected draft
// too) is a plain 500, on publishing and on reading the stats.
func TestE2EStoreErrorsAtTheEdge(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	set := func(err error) { h.store.appendErr.Store(&err) }
	body := `{"userId":"edge","title":"t","body":"b"}`

	set(fmt.Errorf("persist: commit: %w: connection reset", stream.ErrUnavailable))
	r := h.keyed("/api/ws/push/notification", "e1", body)
	r.expectError(t, 503, "unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}

	set(fmt.Errorf("persist: commit: %w", stream.ErrOutcomeUnknown))
	r = h.keyed("/api/ws/push/notification", "e1", body)
	msg := r.expectError(t, 500, "outcome_unknown")
	if !strings.Contains(msg, "Idempotency-Key") {
		t.Errorf("outcome_unknown message %q does not say a keyed retry is safe", msg)
	}
	if r.Header.Get("Retry-After") != "" {
		t.Error("outcome_unknown carries Retry-After; it is not an outage")
	}

	set(errors.New("persist: a bug"))
	r = h.api("POST", "/api/ws/push/batch", `{"messages":[{"kind":"notification","userId":"edge","title":"t","body":"b"}]}`)
	r.expectError(t, 500, "internal")
	if strings.Contains(string(r.Body), "a bug") {
		t.Errorf("an internal error leaks into the answer: %s", r)
	}
	set(fmt.Errorf("persist: draft 0: %w: string holds NUL", stream.ErrRejected))
	h.api("POST", "/api/ws/push/notification", body).expectError(t, 500, "internal")
	h.store.appendErr.Store(nil)
	h.keyed("/api/ws/push/notification", "e1", body).expectStatus(t, 202)

	// The same mapping on a read: GET /api/ws/stats.
	setStats := func(err error) { h.store.statsErr.Store(&err) }
	setStats(fmt.Errorf("persist: queue stats: %w: connection refused", stream.ErrUnavailable))
	r = h.api("GET", "/api/ws/stats", nil)
	r.expectError(t, 503, "unavailable")
	if r.Header.Get("Retry-After") == "" {
		t.Error("stats: 503 without Retry-After")
	}
	setStats(errors.New("persist: queue stats: a bug"))
	r = h.api("GET", "/api/ws/stats", nil)
	r.expectError(t, 500, "internal")
	if r.Header.Get("Retry-After") != "" || strings.Contains(string(r.Body), "a bug") {
		t.Errorf("stats: a non-outage error answers Retry-After or leaks: %s", r)
	}
	h.store.statsErr.Store(nil)
	h.api("GET", "/api/ws/stats", nil).expectStatus(t, 200)
}
