package ws

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzClientFrame: no client frame panics the parser; a frame is either a
// heartbeat or gets a problem that encodes as a valid error frame.
func FuzzClientFrame(f *testing.F) {
	f.Add([]byte(`{"type":"heartbeat","payload":{"clientTime":1732600000000}}`))
	f.Add([]byte(`{"type":"heartbeat"}`))
	f.Add([]byte(`{"type":"auth","payload":{"token":"x"}}`))
	f.Add([]byte(`{"type":"nope"}`))
	f.Add([]byte(`{"type":"heartbeat","payload":{"clientTime":"soon"}}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		clientTime, problem := parseClientFrame(data)
		if problem != "" && clientTime != 0 {
			t.Fatalf("%q: both a clientTime %d and a problem %q", data, clientTime, problem)
		}
		if problem == "" && !strings.Contains(string(data), "heartbeat") {
			t.Fatalf("%q accepted as a heartbeat", data)
		}
		if b, err := json.Marshal(map[string]string{"message": problem}); err != nil || !json.Valid(b) || !utf8.Valid(b) {
			t.Fatalf("problem %q does not encode: %v", problem, err)
		}
	})
}

// FuzzAuthFrame: the first frame of a socket without a URL token yields a
// token only when it is an auth message carrying one.
func FuzzAuthFrame(f *testing.F) {
	f.Add([]byte(`{"type":"auth","payload":{"token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}}`))
	f.Add([]byte(`{"type":"auth","payload":{}}`))
	f.Add([]byte(`{"type":"auth","payload":"token"}`))
	f.Add([]byte(`{"type":"heartbeat"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseAuthFrame(data)
		if (err == nil) == (tok == "") {
			t.Fatalf("%q: token %q, error %v", data, tok, err)
		}
	})
}
