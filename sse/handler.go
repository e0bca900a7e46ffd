package sse

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/pushd/pushd/auth"
	"github.com/pushd/pushd/stream"
)

// Handler serves GET /sse.
type Handler struct {
	Manager     *stream.Manager
	Subscribers *auth.Subscribers
	// Heartbeat is the period of heartbeat events.
	Heartbeat time.Duration
	// Padding is the size of the comment sent first so buffering proxies
	// flush the stream start.
	Padding int
	// Retry is the reconnect delay hinted to EventSource.
	Retry time.Duration
	// WriteTimeout bounds one write; a peer that does not read is dropped.
	WriteTimeout time.Duration
	// OnError writes a JSON error before the stream starts.
	OnError func(w http.ResponseWriter, status int, code, msg string)
	Logger  *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, err := h.Subscribers.User(r)
	if err != nil {
		h.OnError(w, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("lastEventId")
	}
	s := h.Manager.NewSession(user, "sse", r.RemoteAddr, r.UserAgent())
	rc := http.NewResponseController(w)
	s.OnEnd(func(reason stream.CloseReason) {
		if reason.Kind == stream.CloseSlow || reason.Kind == stream.CloseShutdown {
			// Unblock a write stuck on a peer that does not read.
			_ = rc.SetWriteDeadline(time.Now())
		}
	})
	if err := h.Manager.Attach(r.Context(), s, lastID); err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		h.OnError(w, http.StatusServiceUnavailable, "unavailable", "store unavailable: cannot replay the stream")
		return
	}
	defer s.Close()

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	buf.WriteString("retry: ")
	buf.WriteString(strconv.FormatInt(h.Retry.Milliseconds(), 10))
	buf.WriteString("\n")
	if h.Padding > 0 {
		buf.WriteByte(':')
		buf.Write(bytes.Repeat([]byte{' '}, h.Padding))
		buf.WriteString("\n\n")
	} else {
		buf.WriteString("\n")
	}
	write := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(h.WriteTimeout))
		_, err := w.Write(buf.Bytes())
		if err == nil {
			err = rc.Flush()
		}
		buf.Reset()
		return err == nil
	}
	if !write() {
		return
	}

	hb := time.NewTicker(h.Heartbeat)
	defer hb.Stop()
	var items []stream.Item
	for {
		select {
		case <-s.Ready():
			items = s.Drain(items[:0])
			appendFrames(&buf, items)
			if buf.Len() == 0 {
				continue
			}
			if !write() {
				return
			}
			s.Written(items)
			clear(items)
		case <-hb.C:
			buf.Write(stream.Control{Type: stream.TypeHeartbeat, Payload: map[string]int64{"serverTime": stream.NowMillis()}}.SSE())
			if !write() {
				return
			}
		case <-s.Done():
			// Flush what is queued, then say why when the client must not
			// come back; slow consumers and restarts just end the stream
			// and the client resumes with Last-Event-ID.
			reason := s.CloseReason()
			if reason.Kind == stream.CloseDisconnect {
				items = s.Drain(items[:0])
				appendFrames(&buf, items)
				buf.Write(stream.Control{Type: stream.TypeDisconnect, Payload: map[string]string{"reason": reason.Reason}}.SSE())
				if write() {
					s.Written(items)
				}
			}
			return
		case <-r.Context().Done():
			return
		}
	}
}

// appendFrames coalesces queued events into one buffer: one write, one flush.
func appendFrames(buf *bytes.Buffer, items []stream.Item) {
	for _, it := range items {
		if it.Msg != nil {
			buf.Write(it.Msg.SSE())
		} else {
			buf.Write(it.Control.SSE())
		}
	}
}
