package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// openTail opens GET /api/ws/admin/tail with the API key and query.
func (h *e2e) openTail(query string) *sseClient {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	path := "/api/ws/admin/tail"
	if query != "" {
		path += "?" + query
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url(path), nil)
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	return h.startSSE(req, cancel, "tail")
}

// nextTail returns the next event of the tail named event, skipping the
// others.
func nextTail(t *testing.T, c *sseClient, event string) map[string]any {
	t.Helper()
	for {
		ev, ok := c.NextRaw(t)
		if !ok {
			t.Fatalf("tail ended: %v", c.Err())
		}
		if ev.Event != event {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
			t.Fatalf("tail %s event: %v: %q", event, err, ev.Data)
		}
		return v
	}
}

func TestTailShowsEveryPublishedMessage(t *testing.T) {
	h := newE2E(t)
	tail := h.openTail("")
	if ct := tail.Resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	first := nextTail(t, tail, "counters")
	for _, k := range []string{"published", "delivered", "connections", "timestamp"} {
		if _, ok := first[k].(float64); !ok {
			t.Fatalf("counters event lacks %s: %v", k, first)
		}
	}
	// Nobody is connected: the tail still sees every message.
	id1 := h.notify("nobody-online", "first")
	id2 := h.push("broadcast", map[string]any{"title": "all", "body": "hands", "excludeUserIds": []string{"x"}})
	m := nextTail(t, tail, "message")
	if m["id"] != id1 || m["type"] != "notification" || m["userId"] != "nobody-online" || !strings.Contains(asJSON(m["payload"]), `"title":"first"`) {
		t.Fatalf("first tail message %v, want id %s", m, id1)
	}
	m = nextTail(t, tail, "message")
	if m["id"] != id2 || m["broadcast"] != true || asJSON(m["excludeUserIds"]) != `["x"]` {
		t.Fatalf("second tail message %v, want broadcast %s", m, id2)
	}
	c := nextTail(t, tail, "counters")
	if c["published"].(float64) < first["published"].(float64)+2 {
		t.Fatalf("published went from %v to %v after two publishes", first["published"], c["published"])
	}
}

func TestTailFiltersByUser(t *testing.T) {
	h := newE2E(t)
	tail := h.openTail("userId=alice")
	h.notify("bob", "not for alice")
	want := h.notify("alice", "for alice")
	bcast := h.push("broadcast", map[string]any{"title": "t", "body": "b"})
	h.push("broadcast", map[string]any{"title": "t", "body": "b", "excludeUserIds": []string{"alice"}})
	last := h.notify("alice", "again")
	for _, id := range []string{want, bcast, last} {
		if m := nextTail(t, tail, "message"); m["id"] != id {
			t.Fatalf("tail for alice gave %v, want %s", m, id)
		}
	}
}

func TestTailNeedsTheAPIKeyAndAValidUser(t *testing.T) {
	h := newE2E(t)
	h.do("GET", "/api/ws/admin/tail", nil, "").expectError(t, http.StatusUnauthorized, "unauthorized")
	h.do("GET", "/api/ws/admin/tail?access_token="+e2eAPIKey, nil, "").expectError(t, http.StatusUnauthorized, "unauthorized")
	h.do("GET", "/api/ws/admin/tail", nil, "Bearer "+h.token("alice")).expectError(t, http.StatusUnauthorized, "unauthorized")
	h.api("GET", "/api/ws/admin/tail?userId=", nil).expectError(t, http.StatusBadRequest, "bad_request")
	h.api("POST", "/api/ws/admin/tail", nil).expectError(t, http.StatusMethodNotAllowed, "method_not_allowed")
}

// TestSlowTailNeverSlowsPublishing: a tail whose reader is far slower
// than publishing is not waited for — publishes are answered and
// subscribers get every message — and it is told how many it missed.
func TestSlowTailNeverSlowsPublishing(t *testing.T) {
	h := newE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url("/api/ws/admin/tail"), nil)
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dropped := make(chan string, 1)
	slow := &slowReader{r: resp.Body, chunk: 8 << 10, pause: 20 * time.Millisecond}
	go func() {
		// 8 kB every 20 ms: 400 kB/s, a console on a bad link.
		br := bufio.NewReader(slow)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				dropped <- "error: " + err.Error()
				return
			}
			if line == "event: dropped\n" {
				data, _ := br.ReadString('\n')
				dropped <- data
				return
			}
		}
	}()
	sub := h.openSSE("carol", "")
	if e, _ := sub.Next(t); e.Type != "connected" {
		t.Fatalf("first event %s", e.Type)
	}
	// 3000 messages of 10 kB (30 MB) overflow the sockets' buffers and the
	// tail's queue of 1000.
	big := strings.Repeat("x", 10000)
	const batches, per = 30, 100
	start := time.Now()
	for range batches {
		msgs := make([]map[string]any, per)
		for i := range msgs {
			msgs[i] = map[string]any{"kind": "notification", "userId": "carol", "title": "t", "body": big}
		}
		h.api("POST", "/api/ws/push/batch", map[string]any{"messages": msgs}).expectStatus(t, http.StatusAccepted)
		for range per {
			e, ok := sub.Next(t)
			for ok && e.Type == "heartbeat" {
				e, ok = sub.Next(t)
			}
			if !ok || e.Type != "notification" {
				t.Fatalf("subscriber: %v %v", e.Type, ok)
			}
		}
	}
	t.Logf("30 MB published and delivered in %s while the tail read at 400 kB/s", time.Since(start).Round(time.Millisecond))
	slow.fast.Store(true) // catch up to the dropped event
	select {
	case data := <-dropped:
		var d struct{ Count int }
		if json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &d); d.Count <= 0 || d.Count >= batches*per {
			t.Fatalf("dropped event %q", data)
		}
	case <-ctx.Done():
		t.Fatal("no dropped event")
	}
}

// slowReader reads at most chunk bytes per Read, pausing before each,
// until fast is set.
type slowReader struct {
	r     io.Reader
	chunk int
	pause time.Duration
	fast  atomic.Bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.fast.Load() {
		return s.r.Read(p)
	}
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), s.chunk)])
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
