package stream

import (
	"encoding/json"
	"testing"
	"time"
)

// TestConnectedPayloadIsTheMapsEncoding: the hand-written connected payload
// is byte for byte what encoding/json writes for the map it replaced, for
// plain user ids and for ones that need escaping.
func TestConnectedPayloadIsTheMapsEncoding(t *testing.T) {
	m := &Manager{cfg: Config{HeartbeatInterval: 30 * time.Second}}
	for _, user := range []string{"alice", `a"b\c`, "<tag>&", "日本", "tab\tnew\nline", ""} {
		s := &Session{Info: SessionInfo{ID: "0123456789abcdef", UserID: user, Transport: "sse"}}
		got := m.connectedPayload(s)
		var back map[string]any
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("user %q: payload %s is not JSON: %v", user, got, err)
		}
		want, _ := json.Marshal(map[string]any{
			"connectionId": s.Info.ID, "userId": user, "transport": "sse",
			"serverTime": back["serverTime"], "heartbeatInterval": int64(30000),
		})
		if string(got) != string(want) {
			t.Errorf("user %q: payload %s, encoding/json %s", user, got, want)
		}
	}
}
