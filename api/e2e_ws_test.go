package api_test

// WebSocket specifics (CONTRACT §3): heartbeat echo, error frames that keep
// the connection open, the read limit, protocol ping/pong and the dead-peer
// rule.

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestE2EWSHeartbeatEcho(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	c := h.openWS("ola", "")
	expectConnected(t, c, "ola", "ws")
	c.Send(t, `{"type":"heartbeat","payload":{"clientTime":123}}`)
	e, ok := c.Next(t)
	if !ok {
		t.Fatalf("socket ended: %v", c.Err())
	}
	if e.Type != "heartbeat" || e.HasID {
		t.Fatalf("got %s, want a heartbeat without id", e)
	}
	checkShape(t, "heartbeat answer payload", e.Payload, map[string]string{"serverTime": "integer", "clientTime": "integer"})
	if e.Payload["clientTime"] != float64(123) {
		t.Errorf("heartbeat answer clientTime = %v, want 123", e.Payload["clientTime"])
	}
	checkMillis(t, "heartbeat answer serverTime", e.Payload["serverTime"])

	// A real browser timestamp round-trips exactly.
	c.Send(t, `{"type":"heartbeat","payload":{"clientTime":1732600000123}}`)
	e = expectNext(t, c, "heartbeat")
	if e.Payload["clientTime"] != float64(1732600000123) {
		t.Errorf("heartbeat answer clientTime = %v, want 1732600000123", e.Payload["clientTime"])
	}
	// Without a payload: still answered, with the server time.
	c.Send(t, `{"type":"heartbeat"}`)
	e = expectNext(t, c, "heartbeat")
	checkMillis(t, "heartbeat answer serverTime", e.Payload["serverTime"])
}

func TestE2EWSErrorFramesKeepConnection(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	c := h.openWS("pia", "")
	expectConnected(t, c, "pia", "ws")
	for _, tc := range []struct{ name, frame string }{
		{"malformed JSON", `{"type":`},
		{"not JSON", `hello`},
		{"JSON array", `[1,2]`},
		{"no type", `{"payload":{}}`},
		{"unknown type", `{"type":"subscribe","payload":{"topic":"x"}}`},
		{"heartbeat with a bad payload", `{"type":"heartbeat","payload":{"clientTime":"soon"}}`},
		{"auth again", `{"type":"auth","payload":{"token":"x"}}`},
	} {
		c.Send(t, tc.frame)
		e, ok := c.Next(t)
		if !ok {
			t.Fatalf("%s: the connection closed (%v); want an error frame and the connection kept", tc.name, c.Err())
		}
		if e.Type != "error" || e.HasID {
			t.Errorf("%s: got %s, want an error frame", tc.name, e)
			continue
		}
		checkShape(t, tc.name+": error payload", e.Payload, map[string]string{"message": "string"})
		if m, _ := e.Payload["message"].(string); strings.TrimSpace(m) == "" {
			t.Errorf("%s: error frame without a message", tc.name)
		}
	}
	// A binary frame.
	c.wmu.Lock()
	err := c.Conn.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2, 0xff})
	c.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if e := expectType(t, c, "error"); e.Payload["message"] == "" {
		t.Errorf("binary frame: error frame without a message")
	}
	// The connection is still open and delivers pushes.
	id := h.notify("pia", "still open")
	expectIDs(t, c, id)
	c.Send(t, `{"type":"heartbeat","payload":{"clientTime":7}}`)
	if e := expectNext(t, c, "heartbeat"); e.Payload["clientTime"] != float64(7) {
		t.Errorf("heartbeat after errors: %s", e)
	}
}

func TestE2EWSFrameTooLarge(t *testing.T) {
	t.Parallel()
	h := newE2E(t)
	c := h.openWS("quin", "")
	expectConnected(t, c, "quin", "ws")
	// A frame of exactly 64 KiB is read (and is not a valid message).
	c.Send(t, strings.Repeat("a", 64<<10))
	expectType(t, c, "error")
	// One byte more closes with 1008.
	c.Send(t, strings.Repeat("b", 64<<10+1))
	c.expectClose(t, 1008)
	h.waitConnections(0)
}

func TestE2EWSPingsAnswered(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) {
		c.Stream.HeartbeatInterval = 100 * time.Millisecond
		c.Opts.HeartbeatTimeout = time.Second
	})
	conn := h.mustDialWS("access_token="+h.token("ray"), nil)
	var pings atomic.Int32
	def := conn.PingHandler() // gorilla's default: answer with a pong
	conn.SetPingHandler(func(data string) error {
		pings.Add(1)
		return def(data)
	})
	c := h.wsFrom(conn, "WS(ray)", true)
	expectConnected(t, c, "ray", "ws")
	// Well past interval+timeout (1.1 s) of pings: the peer answers them,
	// so the server keeps the connection. Reading drives the ping handler.
	for pings.Load() < 20 {
		e, ok := c.Next(t)
		if !ok {
			t.Fatalf("the server closed a connection that answers pings (%d pings seen): %v", pings.Load(), c.Err())
		}
		if e.Type != "heartbeat" {
			t.Fatalf("got %s, want heartbeats only", e)
		}
	}
	id := h.notify("ray", "still alive")
	expectIDs(t, c, id)
}

func TestE2EWSDeadPeerClosed(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) {
		c.Stream.HeartbeatInterval = 100 * time.Millisecond
		c.Opts.HeartbeatTimeout = 200 * time.Millisecond
	})
	conn := h.mustDialWS("access_token="+h.token("sol"), nil)
	var pings atomic.Int32
	conn.SetPingHandler(func(string) error { pings.Add(1); return nil }) // never pong
	c := h.wsFrom(conn, "WS(sol)", true)
	expectConnected(t, c, "sol", "ws")
	for {
		e, ok := c.Next(t) // bounded by e2eWait
		if !ok {
			break
		}
		if e.Type != "heartbeat" {
			t.Fatalf("got %s, want heartbeats until the server gives up", e)
		}
	}
	if pings.Load() == 0 {
		t.Errorf("the server never sent a protocol ping")
	}
	t.Logf("closed after %d unanswered pings: %v", pings.Load(), c.Err())
	h.waitConnections(0)
}

// expectNext returns the very next envelope (heartbeats included) and fails
// unless it has type typ. Use it only where the server sends no heartbeats
// of its own (the default 30 s interval).
func expectNext(t *testing.T, s subscriber, typ string) envelope {
	t.Helper()
	e, ok := s.Next(t)
	if !ok {
		t.Fatalf("%s: stream ended, want a %s event", s.Name(), typ)
	}
	if e.Type != typ {
		t.Fatalf("%s: got %s, want a %s event", s.Name(), e, typ)
	}
	return e
}
