package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/pushd/pushd/stream"
)

// Tail limits: a tail is an observer, so it is bounded and never slows
// publishing; what it cannot keep up with is dropped and counted.
const (
	tailQueue        = 1000
	tailCounterEvery = time.Second
	tailWriteTimeout = 10 * time.Second
	tailWriteChunk   = 64 << 10
)

// tailRoute is the admin tail's path.
const tailRoute = "/api/ws/admin/tail"

// tailEvent is one published message as the tail shows it.
type tailEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	UserID    string          `json:"userId,omitempty"`
	Broadcast bool            `json:"broadcast,omitempty"`
	Exclude   []string        `json:"excludeUserIds,omitempty"`
	Payload   json.RawMessage `json:"payload"`
	Timestamp int64           `json:"timestamp"`
}

// handleTail serves GET /api/ws/admin/tail: every message published
// (through any node, REST or database-driven) as it is dispatched, as an
// SSE stream for an authenticated operator. Optional ?userId= keeps the
// messages of that user's stream (theirs and broadcasts). Every second a
// counters event carries this node's totals, so the console can chart
// rates; a dropped event says how many messages the tail skipped because
// its reader fell behind.
func (s *Server) handleTail(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("userId")
	if r.URL.Query().Has("userId") {
		if err := checkID("userId", user); err != nil {
			s.requestError(w, err)
			return
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	tap := s.manager.Tap(tailQueue)
	defer tap.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	type take struct {
		msgs    []*stream.Message
		dropped uint64
	}
	takes := make(chan take)
	go func() {
		defer close(takes)
		for {
			msgs, dropped, ok := tap.Next(ctx)
			if !ok {
				return
			}
			select {
			case takes <- take{msgs, dropped}:
			case <-ctx.Done():
				return
			}
		}
	}()
	ticker := time.NewTicker(tailCounterEvery)
	defer ticker.Stop()

	var buf bytes.Buffer
	// A reader that makes no progress for tailWriteTimeout is cut off; a
	// slow one that does is not (the deadline is renewed per chunk).
	write := func() bool {
		defer buf.Reset()
		for b := buf.Bytes(); len(b) > 0; {
			n := min(len(b), tailWriteChunk)
			_ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
			if _, err := w.Write(b[:n]); err != nil {
				return false
			}
			b = b[n:]
		}
		_ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
		return rc.Flush() == nil
	}
	s.appendCounters(&buf)
	if !write() {
		return
	}
	for {
		select {
		case t, ok := <-takes:
			if !ok {
				return // the client left or the node is shutting down
			}
			if t.dropped > 0 {
				appendSSE(&buf, "dropped", map[string]uint64{"count": t.dropped})
			}
			for _, m := range t.msgs {
				if user != "" && !m.For(user) {
					continue
				}
				appendSSE(&buf, "message", tailEvent{
					ID: m.ID, Type: m.Type, UserID: m.UserID, Broadcast: m.UserID == "",
					Exclude: m.Exclude, Payload: m.Payload, Timestamp: m.Timestamp,
				})
			}
		case <-ticker.C:
			s.appendCounters(&buf)
		}
		if buf.Len() > 0 && !write() {
			return
		}
	}
}

// appendCounters adds this node's running totals: messages dispatched
// (every message committed to the store, by any node) and deliveries to
// this node's connections.
func (s *Server) appendCounters(buf *bytes.Buffer) {
	m := s.manager.Metrics()
	c := s.manager.Counts()
	appendSSE(buf, "counters", map[string]any{
		"published": m.Dispatched, "delivered": m.Delivered, "connections": c.Connections,
		"timestamp": stream.NowMillis(),
	})
}

func appendSSE(buf *bytes.Buffer, event string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	buf.WriteString("event: " + event + "\ndata: ")
	buf.Write(data)
	buf.WriteString("\n\n")
}
