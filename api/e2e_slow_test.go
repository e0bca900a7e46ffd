package api_test

// Slow consumers (CONTRACT §4.8): a subscriber that does not read is cut off
// past its bounded queue, counted in the metrics, and never slows the
// user's other connections.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const slowQueue = 4

func newSlowE2E(t *testing.T) *e2e {
	return newE2E(t, func(c *e2eConfig) {
		c.Stream.QueueLimit = slowQueue
		c.Opts.MaxMessageBytes = 1 << 20
	})
}

// pushUntilCut pushes large messages to user one at a time, each received by
// reader before the next is sent (so reader's queue never holds more than
// one), until user has only keep live connections. It returns the ids.
func pushUntilCut(t *testing.T, h *e2e, user string, reader subscriber, keep int) []string {
	t.Helper()
	big := strings.Repeat("x", 256<<10)
	var ids []string
	for i := 0; ; i++ {
		if i > 2000 {
			t.Fatalf("the slow consumer was not cut off after %d messages of %d KiB (queue limit %d)", i, len(big)>>10, slowQueue)
		}
		id := h.push("notification", map[string]any{"userId": user, "title": fmt.Sprint("big ", i), "body": big})
		ids = append(ids, id)
		expectIDs(t, reader, id)
		if len(h.connections(user)) == keep {
			t.Logf("slow consumer cut off after %d messages of %d KiB", i+1, len(big)>>10)
			return ids
		}
	}
}

func TestE2ESlowSSEConsumerCutOff(t *testing.T) {
	t.Parallel()
	h := newSlowE2E(t)
	fast := h.openSSE("vera", "")
	expectConnected(t, fast, "vera", "sse")

	// A raw TCP client that sends the request and never reads.
	raw, err := net.Dial("tcp", h.host())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	fmt.Fprintf(raw, "GET /sse?access_token=%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", url.QueryEscape(h.token("vera")), h.host())
	h.waitConnections(2)
	before, ok := h.metric("pushd_slow_consumer_disconnects_total")
	if !ok {
		t.Fatalf("/metrics has no pushd_slow_consumer_disconnects_total")
	}

	ids := pushUntilCut(t, h, "vera", fast, 1)

	// Gone from the stats, counted in the metrics.
	h.waitConnections(1)
	if s := h.stats(); s.Transports.SSE != 1 || s.UniqueUsers != 1 {
		t.Errorf("after the cut: %+v, want the one fast SSE connection", s)
	}
	if after, _ := h.metric("pushd_slow_consumer_disconnects_total"); after < before+1 {
		t.Errorf("pushd_slow_consumer_disconnects_total went from %v to %v, want an increase", before, after)
	}
	// The server closed the socket: reading it now ends (after what the
	// kernel buffered) instead of hanging.
	_ = raw.SetReadDeadline(time.Now().Add(e2eWait))
	n, err := io.Copy(io.Discard, raw)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the cut-off socket is still open after %v (read %d bytes)", e2eWait, n)
	}

	// The fast client keeps receiving, in order.
	more := pushN(h, "vera", 5, "after the cut")
	expectIDs(t, fast, more...)
	if len(ids) < slowQueue {
		t.Errorf("cut off after %d messages, before its queue of %d could overflow", len(ids), slowQueue)
	}

	// The cut-off client can resume from its last id and gets the rest.
	re := h.openSSE("vera", "", func(r *http.Request) { r.Header.Set("Last-Event-ID", ids[0]) })
	expectConnected(t, re, "vera", "sse")
	expectIDs(t, re, append(ids[1:], more...)...)
}

func TestE2ESlowWSConsumerCutOff(t *testing.T) {
	t.Parallel()
	h := newSlowE2E(t)
	fast := h.openSSE("walt", "")
	expectConnected(t, fast, "walt", "sse")

	// (Shrinking SO_RCVBUF after connect would make Linux drop segments
	// and back off retransmits for seconds: leave the buffers alone.)
	d := websocket.Dialer{HandshakeTimeout: e2eWait}
	conn, _, err := d.Dial(h.wsURL("access_token="+url.QueryEscape(h.token("walt"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := h.wsFrom(conn, "WS(walt, not reading)", false)
	h.waitConnections(2)
	before, _ := h.metric("pushd_slow_consumer_disconnects_total")

	ids := pushUntilCut(t, h, "walt", fast, 1)
	h.waitConnections(1)
	if after, _ := h.metric("pushd_slow_consumer_disconnects_total"); after < before+1 {
		t.Errorf("pushd_slow_consumer_disconnects_total went from %v to %v, want an increase", before, after)
	}

	// When it reads again (within the grace the write in flight gets): a
	// prefix of its stream in order, then a 4002 close frame — not a frame
	// cut in the middle (1006).
	_ = conn.SetReadDeadline(time.Now().Add(e2eWait))
	slow.StartReading()
	expectConnected(t, slow, "walt", "ws")
	n := 0
	for {
		f, ok := slow.NextFrame(t)
		if !ok {
			break
		}
		e := parseEnvelope(t, slow.Name(), f.Data)
		if e.Type == "heartbeat" {
			continue
		}
		if n >= len(ids) || e.ID != ids[n] {
			t.Fatalf("slow WS: message %d is %s, want %v", n, e, ids[n:min(n+1, len(ids))])
		}
		n++
	}
	err = slow.Err()
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code == 4002:
		t.Logf("slow WS: close 4002 after %d of %d messages", n, len(ids))
	case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure:
		t.Errorf("slow WS: socket closed without a close frame after %d of %d messages, want 4002", n, len(ids))
	case errors.As(err, &ce):
		t.Errorf("slow WS: closed with code %d (%q), want 4002 (or the socket closed)", ce.Code, ce.Text)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("slow WS: the cut-off socket is still open after %v", e2eWait)
	default:
		t.Errorf("slow WS: connection ended with %v after %d of %d messages, want close 4002", err, n, len(ids))
	}

	more := pushN(h, "walt", 3, "after the cut")
	expectIDs(t, fast, more...)
}
