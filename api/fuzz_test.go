package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// fuzzRoutes are the REST routes with a body, driven through the real
// handler chain (auth, limits, validation, the in-memory store).
var fuzzRoutes = []string{
	"/api/ws/connect", "/api/ws/push/dashboard", "/api/ws/push/data-change", "/api/ws/push/notification",
	"/api/ws/push/audit-log", "/api/ws/broadcast", "/api/ws/push/batch", "/api/ws/disconnect/u",
}

// restAnswers are the statuses a body alone may cause.
var restAnswers = map[int]bool{200: true, 202: true, 400: true, 413: true}

func fuzzREST(f *testing.F, route func(uint8) string) {
	s := newTestServer(f, func(o *Options) { o.MaxMessageBytes = 4096; o.MaxBatchBytes = 16384 })
	f.Fuzz(func(t *testing.T, r uint8, body []byte) {
		path := route(r)
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if !restAnswers[w.Code] {
			t.Fatalf("POST %s %q: status %d %s", path, body, w.Code, w.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("POST %s %q: answer is not JSON: %q", path, body, w.Body)
		}
		if w.Code >= 400 {
			e, _ := out["error"].(map[string]any)
			if e == nil || e["code"] == "" || e["message"] == "" {
				t.Fatalf("POST %s %q: %d without the error shape: %s", path, body, w.Code, w.Body)
			}
		}
		if path == "/api/ws/push/batch" && w.Code == 202 {
			var in struct{ Messages []json.RawMessage }
			_ = json.Unmarshal(body, &in)
			if ids, _ := out["ids"].([]any); len(ids) != len(in.Messages) {
				t.Fatalf("batch of %d answered %d ids", len(in.Messages), len(ids))
			}
		}
	})
}

// FuzzRESTBodies: no body on any route gets a 500 or a non-JSON answer.
func FuzzRESTBodies(f *testing.F) {
	for i, body := range []string{
		`{"userId":"u"}`,
		`{"userId":"u","widgetId":"w","data":{"v":1}}`,
		`{"userId":"u","tableId":"t","rowId":"1","action":"delete","data":null}`,
		`{"userId":"u","title":"t","body":"b","icon":"i","url":"/x","data":{}}`,
		`{"userId":"u","entry":[1]}`,
		`{"title":"t","body":"b","excludeUserIds":["a","b"]}`,
		`{"messages":[{"kind":"notification","userId":"u","title":"t","body":"b"}]}`,
		`{"reason":"bye"}`,
	} {
		f.Add(uint8(i), []byte(body))
	}
	f.Add(uint8(3), []byte(`{"userId":"u","title":"t","body":"b"}}`))
	f.Add(uint8(0), []byte("\xff"))
	fuzzREST(f, func(r uint8) string { return fuzzRoutes[int(r)%len(fuzzRoutes)] })
}

// FuzzBatchBodies: batch bodies, valid or not, are answered whole: 202 with
// one id per message, or a 400/413 that stores nothing.
func FuzzBatchBodies(f *testing.F) {
	for _, body := range []string{
		`{"messages":[{"kind":"notification","userId":"u","title":"t","body":"b"},{"kind":"broadcast","title":"t","body":"b"}]}`,
		`{"messages":[{"kind":"dashboard","userId":"u","widgetId":"w","data":1},{"kind":"data-change","userId":"u","tableId":"t","rowId":"r","action":"create"}]}`,
		`{"messages":[{"kind":"audit-log","userId":"u","entry":{}},{"kind":"nope"}]}`,
		`{"messages":[]}`,
		`{"messages":[1]}`,
		`{"messages":[{"kind":"notification","userId":"u","title":"t","body":"b","extra":1}]}`,
	} {
		f.Add(uint8(0), []byte(body))
	}
	fuzzREST(f, func(uint8) string { return "/api/ws/push/batch" })
}

// FuzzParseForwardedFor: no header value panics the parser; every hop it
// returns is a valid address, and a clean parse formats back to itself.
func FuzzParseForwardedFor(f *testing.F) {
	for _, s := range []string{"203.0.113.1", "203.0.113.1, 10.0.0.1", "[2001:db8::1]:443,198.51.100.2:80", "unknown", "1.2.3.4\n5.6.7.8", " , ", "::ffff:1.2.3.4"} {
		f.Add(s)
	}
	tp := trustedProxies{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, header string) {
		values := strings.Split(header, "\n")
		hops, err := ParseForwardedFor(values)
		var parts []string
		for _, h := range hops {
			if !h.IsValid() {
				t.Fatalf("%q: invalid hop in %v", header, hops)
			}
			parts = append(parts, h.String())
		}
		if err == nil && len(hops) > 0 {
			again, err := ParseForwardedFor([]string{strings.Join(parts, ", ")})
			if err != nil || len(again) != len(hops) {
				t.Fatalf("%q: hops %v do not parse back: %v %v", header, hops, again, err)
			}
		}
		r := &http.Request{RemoteAddr: "10.1.1.1:1", Header: http.Header{"X-Forwarded-For": values}}
		if addr := tp.clientAddr(r); addr == "" {
			t.Fatalf("%q: empty client address", header)
		}
	})
}
