package api_test

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// countingConn counts the bytes a client reads off the wire.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// dialCounted dials /ws for user, offering permessage-deflate when
// compress, and counts the bytes read.
func (h *e2e) dialCounted(t *testing.T, user string, compress bool) (*websocket.Conn, *atomic.Int64, bool) {
	t.Helper()
	read := new(atomic.Int64)
	d := websocket.Dialer{HandshakeTimeout: e2eWait, EnableCompression: compress,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			return countingConn{c, read}, err
		}}
	conn, resp, err := d.Dial(h.wsURL("access_token="+url.QueryEscape(h.token(user))), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, read, strings.Contains(resp.Header.Get("Sec-Websocket-Extensions"), "permessage-deflate")
}

func readEnvelope(t *testing.T, conn *websocket.Conn, typ string) map[string]any {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(e2eWait))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]any
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("frame %q: %v", data, err)
		}
		if e["type"] == typ {
			return e
		}
	}
}

// TestE2EWSCompression: with --ws-compression a client that offers
// permessage-deflate gets stored messages compressed (far fewer bytes, the
// same envelope), its own compressed frames are understood, and a client
// that does not offer it, or a server without the flag, stays plain.
func TestE2EWSCompression(t *testing.T) {
	t.Parallel()
	h := newE2E(t, func(c *e2eConfig) { c.Opts.WSCompression = true })
	zipped, zread, agreed := h.dialCounted(t, "zed", true)
	if !agreed {
		t.Fatal("permessage-deflate offered but not agreed")
	}
	plain, pread, agreedPlain := h.dialCounted(t, "zed", false)
	if agreedPlain {
		t.Fatal("permessage-deflate agreed with a client that did not offer it")
	}
	readEnvelope(t, zipped, "connected")
	readEnvelope(t, plain, "connected")
	zBefore, pBefore := zread.Load(), pread.Load()

	// A realistic, compressible payload: a list of rows as an app sends.
	var rows []map[string]any
	for i := range 40 {
		rows = append(rows, map[string]any{"id": i, "status": "shipped", "customer": "ACME Corporation", "total": 129.5, "currency": "EUR"})
	}
	id := h.push("dashboard", map[string]any{"userId": "zed", "widgetId": "orders", "data": rows})
	for _, c := range []*websocket.Conn{zipped, plain} {
		e := readEnvelope(t, c, "dashboard_update")
		if e["id"] != id {
			t.Fatalf("got %v, want id %s", e["id"], id)
		}
		if got := e["payload"].(map[string]any)["data"].([]any); len(got) != 40 {
			t.Fatalf("payload rows: %d, want 40", len(got))
		}
	}
	zBytes, pBytes := zread.Load()-zBefore, pread.Load()-pBefore
	t.Logf("one dashboard update: %d bytes compressed, %d plain", zBytes, pBytes)
	if zBytes*3 > pBytes {
		t.Errorf("compressed delivery took %d bytes against %d plain, want far fewer", zBytes, pBytes)
	}

	// The client's compressed heartbeat is inflated and answered.
	if err := zipped.WriteMessage(websocket.TextMessage, []byte(`{"type":"heartbeat","payload":{"clientTime":42}}`)); err != nil {
		t.Fatal(err)
	}
	if p := readEnvelope(t, zipped, "heartbeat")["payload"].(map[string]any); p["clientTime"] != float64(42) {
		t.Errorf("heartbeat answer %v, want clientTime 42", p)
	}

	off := newE2E(t)
	if _, _, agreed := off.dialCounted(t, "zed", true); agreed {
		t.Error("permessage-deflate agreed without --ws-compression")
	}
}
