package api

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/pushd/pushd/stream"
)

// FuzzDecodeFlat holds the hand-written notification decoder to the strict
// one: whenever decodeFlat accepts an input, decodeStrict accepts it too and
// fills the same request; and the hand-written payload is byte for byte
// what encoding/json writes.
func FuzzDecodeFlat(f *testing.F) {
	for _, s := range []string{
		`{"userId":"u","title":"t","body":"b"}`,
		` {"userId":"u", "title":"t","body":"b","icon":"i","url":"http://x/?a=1","kind":"notification"} `,
		`{"userId":"u","title":"t","body":"b","data":{"x":[1,{"y":"}"}],"z":"\"{"}}`,
		`{"userId":"u","title":"héllo","body":"<b>&"}`,
		`{"userId":"u","userId":"v","title":"t","body":"b"}`,
		`{"UserId":"u","title":"t","body":"b"}`,
		`{"userId":"u","title":"a\nb","body":"b"}`,
		`{"userId":null,"title":"t","body":"b"}`,
		`{"userId":"u","title":"t","body":"b","data":null}`,
		`{"userId":"u","title":"t","body":"b","data":{"x":1}} x`,
		`{"userId":"u","title":"t","body":"b","data":{"x":}}`,
		`{}`, `{`, `[]`, `{"userId":"u",}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var fast notificationReq
		fields := fast.flatFields()
		if !decodeFlat([]byte(body), fields[:]) {
			return
		}
		var strict notificationReq
		if err := decodeStrict([]byte(body), &strict); err != nil {
			t.Fatalf("decodeFlat accepted %q, decodeStrict refused it: %v", body, err)
		}
		if !reflect.DeepEqual(fast, strict) {
			t.Fatalf("%q: decodeFlat gave %+v, decodeStrict %+v", body, fast, strict)
		}
		want := marshalPayload(notificationPayload{Title: fast.Title, Body: fast.Body, Icon: fast.Icon, URL: fast.URL})
		if p := fast.plainPayload(); string(p) != string(want) {
			t.Fatalf("%q: plainPayload %s, encoding/json %s", body, p, want)
		}
	})
}

// TestDecodeFlatShapes pins which shapes take the fast path: only the
// everyday one; every other shape goes to the strict decoder, whose answers
// (and error messages) the API keeps.
func TestDecodeFlatShapes(t *testing.T) {
	for body, want := range map[string]bool{
		`{"userId":"u","title":"t","body":"b"}`:                    true,
		`{"userId":"u","title":"t","body":"b","data":{"a":[1,2]}}`: true,
		`{"userId":"u","title":"日本","body":"b"}`:                   true,
		`{}`:                                    true,
		`{"userid":"u","title":"t","body":"b"}`: false, // other letter case
		`{"userId":"u","title":"t\u0041","body":"b"}`:                false, // escape
		`{"userId":"u","title":"t","body":"b","idempotencyKey":"k"}`: false,
		`{"userId":"u","title":"t","body":"b","data":null}`:          false,
		`{"userId":"u","title":"t","body":"b","data":[1]}`:           false,
		`{"userId":"u","title":"t","body":"b","extra":1}`:            false,
		`{"userId":1,"title":"t","body":"b"}`:                        false,
		`{"userId":"u","title":"t","body":"b"}{}`:                    false,
		"{\"userId\":\"u\xff\",\"title\":\"t\",\"body\":\"b\"}":      false, // invalid UTF-8
	} {
		var q notificationReq
		fields := q.flatFields()
		if got := decodeFlat([]byte(body), fields[:]); got != want {
			t.Errorf("decodeFlat(%s) = %v, want %v", body, got, want)
		}
	}
}

// TestWriteAcceptedMatchesEncodingJSON: the hand-built answer is what
// writeJSON wrote before it.
func TestWriteAcceptedMatchesEncodingJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	m := &stream.Message{ID: "ba2b3a91-0000000000000001", Timestamp: 1796168705923}
	writeAccepted(rec, pushMessages["notification"], m)
	want, _ := json.Marshal(accepted{Message: pushMessages["notification"], ID: m.ID, Timestamp: m.Timestamp})
	if got := rec.Body.String(); got != string(want)+"\n" {
		t.Fatalf("answer %q, encoding/json %s", got, want)
	}
	if rec.Code != 202 || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d headers %v", rec.Code, rec.Header())
	}
}

// accepted is the single push's answer as encoding/json writes it.
type accepted struct {
	Message   string `json:"message"`
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
}
