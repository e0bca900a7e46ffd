package ws

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pushd/pushd/stream"
)

// Server frames carry no mask; the payload length takes 7 bits up to 125,
// 16 bits up to 65535, and 64 bits past it (RFC 6455 §5.2).
func TestAppendHeaderLengths(t *testing.T) {
	cases := []struct {
		n    int
		want []byte
	}{
		{0, []byte{finText, 0}},
		{125, []byte{finText, 125}},
		{126, []byte{finText, 126, 0, 126}},
		{65535, []byte{finText, 126, 0xff, 0xff}},
		{65536, []byte{finText, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	}
	for _, tc := range cases {
		if got := appendHeader(nil, finText, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("header for %d bytes = % x, want % x", tc.n, got, tc.want)
		}
	}
	if got := appendHeader([]byte("x"), finPong, 3); !bytes.Equal(got, []byte{'x', finPong, 3}) {
		t.Errorf("appendHeader does not append: % x", got)
	}
}

func TestTextFrame(t *testing.T) {
	p := bytes.Repeat([]byte("a"), 70000)
	f := textFrame(p)
	if f[0] != finText || f[1] != 127 || binary.BigEndian.Uint64(f[2:10]) != 70000 || !bytes.Equal(f[10:], p) {
		t.Fatalf("frame of 70000 bytes starts % x and carries %d", f[:10], len(f)-10)
	}
}

// A close frame carries the status code, big-endian, then the reason; a
// control frame's payload is cut to 125 bytes (RFC 6455 §5.5).
func TestCloseAndControlFrames(t *testing.T) {
	f := closeFrame(CodeTooSlow, "too slow")
	if f[0] != finClose || int(f[1]) != 2+len("too slow") || binary.BigEndian.Uint16(f[2:4]) != CodeTooSlow || string(f[4:]) != "too slow" {
		t.Fatalf("close frame % x", f)
	}
	long := closeFrame(CodeDisconnected, strings.Repeat("r", 200))
	if len(long) != 2+125 || long[1] != 125 {
		t.Fatalf("close frame with a 200-byte reason: %d bytes, length byte %d", len(long), long[1])
	}
	if f := controlFrame(finPong, []byte("hi")); !bytes.Equal(f, []byte{finPong, 2, 'h', 'i'}) {
		t.Fatalf("pong frame % x", f)
	}
	if !bytes.Equal(pingFrame, []byte{finPing, 0}) {
		t.Fatalf("ping frame % x", pingFrame)
	}
}

// appendFrames writes a stored message's shared frame, a heartbeat as a
// protocol ping followed by its envelope, and raw control bytes as they are.
func TestAppendFrames(t *testing.T) {
	m := stream.NewMessage("e", 1, stream.Draft{Type: stream.TypeNotification, Payload: []byte(`{"title":"t"}`), Timestamp: 1})
	hb := stream.Control{Type: stream.TypeHeartbeat, Payload: map[string]int64{"serverTime": 9}}
	raw := stream.Control{Raw: controlFrame(finPong, []byte("x"))}
	bufs := appendFrames(nil, []stream.Item{{Msg: m}, {Control: &hb}, {Control: &raw}}, false)
	if len(bufs) != 5 {
		t.Fatalf("%d buffers, want 5 (message, ping, header, envelope, raw)", len(bufs))
	}
	if !bytes.Equal(bufs[0], textFrame(m.JSON())) || &bufs[0][0] != &m.Encoding(stream.SlotWSFrame, textFrame)[0] {
		t.Fatal("the message frame is not the shared one")
	}
	if !bytes.Equal(bufs[1], pingFrame) {
		t.Fatalf("heartbeat not preceded by a ping: % x", bufs[1])
	}
	var env struct {
		Type    string           `json:"type"`
		Payload map[string]int64 `json:"payload"`
	}
	if !bytes.Equal(bufs[2], appendHeader(nil, finText, len(bufs[3]))) || json.Unmarshal(bufs[3], &env) != nil || env.Type != "heartbeat" || env.Payload["serverTime"] != 9 {
		t.Fatalf("heartbeat frame % x %s", bufs[2], bufs[3])
	}
	if !bytes.Equal(bufs[4], raw.Raw) {
		t.Fatalf("raw frame % x", bufs[4])
	}
}
