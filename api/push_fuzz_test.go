package api

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzPushKinds: no input panics a builder, and every accepted input yields
// a valid JSON payload of the declared type.
func FuzzPushKinds(f *testing.F) {
	f.Add("notification", `{"userId":"u","title":"t","body":"b","data":{"x":1}}`)
	f.Add("dashboard", `{"userId":"u","widgetId":"w","data":[1,2]}`)
	f.Add("data-change", `{"userId":"u","tableId":"t","rowId":"1","action":"update"}`)
	f.Add("audit-log", `{"userId":"u","entry":{"a":"b"}}`)
	f.Add("broadcast", `{"title":"t","body":"b","excludeUserIds":["a"]}`)
	f.Add("notification", `{"userId":1}`)
	f.Fuzz(func(t *testing.T, kind, body string) {
		build := pushKinds[kind]
		if build == nil || !utf8.ValidString(body) {
			return
		}
		d, err := build([]byte(body), 1)
		if err != nil {
			if _, ok := err.(*badRequest); !ok {
				t.Fatalf("non-400 error %T %v", err, err)
			}
			return
		}
		if !json.Valid(d.Payload) || d.Type == "" {
			t.Fatalf("accepted %q but built payload %q type %q", body, d.Payload, d.Type)
		}
	})
}
