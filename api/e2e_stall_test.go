package api_test

// A subscriber that stops reading for a while (a busy tab, a slow network)
// but stays under its queue limit: the server's non-blocking writes fill the
// socket, often mid-frame, and a pump finishes the rest once the peer reads
// again. The subscriber must then get every message once, in order, with
// intact framing — on both transports.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// stallMessages × stallBody bytes is far more than loopback socket buffers
// hold for a peer that does not read (about 4 MiB sent + 128 KiB received).
const (
	stallMessages = 200
	stallBody     = 60 << 10
)

func newStallE2E(t *testing.T) *e2e {
	return newE2E(t, func(c *e2eConfig) {
		c.Opts.MaxMessageBytes = 1 << 20
		c.Keep.MaxCount = 1000
		// Publishing 12 MiB under the race detector on a loaded host can
		// take longer than the default; the stalled reader must not be cut
		// off as too slow while it happens.
		c.Opts.WriteTimeout = 2 * time.Minute
	})
}

func pushBig(h *e2e, user string) []string {
	h.t.Helper()
	body := strings.Repeat("y", stallBody)
	ids := make([]string, stallMessages)
	for i := range ids {
		ids[i] = h.push("notification", map[string]any{"userId": user, "title": fmt.Sprint("big ", i), "body": body})
	}
	return ids
}

// readGate pauses a connection's reads: Read waits while the gate is shut
// (a read already in progress finishes).
type readGate struct {
	mu   sync.Mutex
	open chan struct{} // nil or closed: reads go through
}

func (g *readGate) shut() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *readGate) reopen() {
	g.mu.Lock()
	if g.open != nil {
		close(g.open)
		g.open = nil
	}
	g.mu.Unlock()
}

func (g *readGate) wait() {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

type gatedConn struct {
	net.Conn
	g *readGate
}

func (c gatedConn) Read(p []byte) (int, error) {
	c.g.wait()
	return c.Conn.Read(p)
}

func TestE2EStalledSSEReaderCatchesUp(t *testing.T) {
	t.Parallel()
	h := newStallE2E(t)
	gate := &readGate{}
	gated := *h
	gated.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return gatedConn{Conn: c, g: gate}, nil
		},
	}}
	sse := gated.openSSE("stella", "")
	expectConnected(t, sse, "stella", "sse")

	gate.shut()            // stop reading
	t.Cleanup(gate.reopen) // before the client's cleanup, which waits for its reader
	ids := pushBig(h, "stella")
	if n := len(h.connections("stella")); n != 1 {
		t.Fatalf("the stalled reader has %d connections, want 1 (it is under its queue limit)", n)
	}
	gate.reopen()

	got := expectIDs(t, sse, ids...)
	for i, e := range got {
		if !strings.Contains(string(e.Raw), strings.Repeat("y", stallBody)) {
			t.Fatalf("message %d arrived without its full body", i)
		}
	}
}

func TestE2EStalledWSReaderCatchesUp(t *testing.T) {
	t.Parallel()
	h := newStallE2E(t)
	q := "access_token=" + url.QueryEscape(h.token("wade"))
	ws := h.wsFrom(h.mustDialWS(q, nil), "WS(wade)", false) // not reading yet
	h.waitConnections(1)
	ids := pushBig(h, "wade")
	if n := len(h.connections("wade")); n != 1 {
		t.Fatalf("the stalled reader has %d connections, want 1 (it is under its queue limit)", n)
	}
	ws.StartReading()
	expectConnected(t, ws, "wade", "ws")
	got := expectIDs(t, ws, ids...)
	for i, e := range got {
		if !strings.Contains(string(e.Raw), strings.Repeat("y", stallBody)) {
			t.Fatalf("message %d arrived without its full body", i)
		}
	}
}
