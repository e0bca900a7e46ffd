package sse

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/stream"
)

// A stored message's frame carries its id, type and envelope; a payload
// written over several lines still goes out as one data: line (an SSE data
// line cannot hold a raw newline).
func TestMessageFrameCompactsPayloadNewlines(t *testing.T) {
	m := stream.NewMessage("e", 1, stream.Draft{Type: stream.TypeNotification, Payload: []byte("{\n \"a\": 1\r\n}"), Timestamp: 5})
	want := `{"id":"e-0000000000000001","type":"notification","payload":{"a":1},"timestamp":5}`
	if got := string(messageFrame(m)); got != "id: e-0000000000000001\nevent: notification\ndata: "+want+"\n\n" {
		t.Fatalf("sse frame %q", got)
	}
}

// The frame is rendered once and shared by every stream.
func TestMessageFrameIsShared(t *testing.T) {
	m := stream.NewMessage("e", 7, stream.Draft{Type: stream.TypeAuditLog, Payload: []byte(`{"entry":"x"}`), Timestamp: 1})
	a, b := messageFrame(m), messageFrame(m)
	if &a[0] != &b[0] {
		t.Fatal("two calls rendered two frames")
	}
}

// Control events have no id: line, so they never move Last-Event-ID.
func TestControlFrame(t *testing.T) {
	f := string(controlFrame(stream.Control{Type: stream.TypeHeartbeat, Payload: map[string]int64{"serverTime": 42}}))
	typ, rest, ok := strings.Cut(f, "\n")
	if !ok || typ != "event: heartbeat" || strings.Contains(f, "id:") || !strings.HasSuffix(f, "\n\n") {
		t.Fatalf("control frame %q", f)
	}
	var env map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(rest, "data: "), "\n\n")), &env); err != nil {
		t.Fatalf("data of %q: %v", f, err)
	}
	if env["type"] != "heartbeat" || env["payload"].(map[string]any)["serverTime"] != float64(42) || env["timestamp"] == nil {
		t.Fatalf("envelope %v", env)
	}
	if _, ok := env["id"]; ok {
		t.Fatalf("control envelope carries an id: %v", env)
	}
}

func TestDisconnectAndRetryFrames(t *testing.T) {
	f := string(disconnectFrame("maintenance"))
	if !strings.HasPrefix(f, "event: disconnect\ndata: {\"type\":\"disconnect\",\"payload\":{\"reason\":\"maintenance\"},\"timestamp\":") || !strings.HasSuffix(f, "}\n\n") {
		t.Fatalf("disconnect frame %q", f)
	}
	if f := string(retryFrame(2500 * time.Millisecond)); f != "retry: 2500\n\n" {
		t.Fatalf("retry frame %q", f)
	}
}

// frames lists messages and control events in order, skipping nothing.
func TestFrames(t *testing.T) {
	m := stream.NewMessage("e", 2, stream.Draft{Type: stream.TypeNotification, Payload: []byte(`{}`), Timestamp: 1})
	c := stream.Control{Type: stream.TypeReset, Payload: map[string]string{"reason": "trimmed"}}
	bufs := frames(nil, []stream.Item{{Control: &c}, {Msg: m}})
	if len(bufs) != 2 || !strings.HasPrefix(string(bufs[0]), "event: reset\n") || string(bufs[1]) != string(messageFrame(m)) {
		t.Fatalf("frames %q", bufs)
	}
}

// BenchmarkRenderFrames: encoding once per message (both wire forms).
func BenchmarkRenderFrames(b *testing.B) {
	p, _ := json.Marshal(map[string]any{"widgetId": "cpu", "data": map[string]int{"value": 42}, "timestamp": 1})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m := stream.NewMessage("e", uint64(i+1), stream.Draft{Type: stream.TypeDashboardUpdate, Payload: p, Timestamp: 1})
		_ = messageFrame(m)
		_ = m.JSON()
	}
}
