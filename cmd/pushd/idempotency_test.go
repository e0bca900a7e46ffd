package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
)

// keyedPost publishes body under an Idempotency-Key and returns the status
// and the decoded answer.
func (n *node) keyedPost(t *testing.T, path, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", n.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

func wantAnswer(t *testing.T, what string, status int, got map[string]any, first map[string]any) {
	t.Helper()
	if status != http.StatusAccepted || got["id"] != first["id"] || got["timestamp"] != first["timestamp"] || got["message"] != first["message"] {
		t.Fatalf("%s: %d %v, want the first answer %v", what, status, got, first)
	}
}

// TestIdempotentPublishBothStores runs the binary on the in-memory store and
// on PostgreSQL: a repeat of a key is answered the first answer and
// delivered once, a different request under it is 409, and the key is kept
// --idempotency-ttl.
func TestIdempotentPublishBothStores(t *testing.T) {
	for _, store := range []string{"memory", "postgres"} {
		t.Run(store, func(t *testing.T) {
			db := ""
			if store == "postgres" {
				db = pgtest.NewDB(t)
			}
			n := startNode(t, db, "--idempotency-ttl", "1500ms")
			ev := n.sse(t, "ivy")
			expectEvent(t, ev, "", "connected")
			body := `{"userId":"ivy","title":"t","body":"b"}`
			status, first := n.keyedPost(t, "/api/ws/push/notification", "k-1", body)
			if status != http.StatusAccepted {
				t.Fatalf("first publish: %d %v", status, first)
			}
			status, again := n.keyedPost(t, "/api/ws/push/notification", "k-1", body)
			wantAnswer(t, "repeat", status, again, first)
			if status, got := n.keyedPost(t, "/api/ws/push/notification", "k-1", `{"userId":"ivy","title":"t","body":"other"}`); status != http.StatusConflict {
				t.Fatalf("same key, other body: %d %v, want 409", status, got)
			}
			expectEvent(t, ev, first["id"].(string), "notification")
			marker := n.post(t, "/api/ws/push/notification", `{"userId":"ivy","title":"marker","body":"m"}`)["id"].(string)
			expectEvent(t, ev, marker, "notification") // nothing in between

			time.Sleep(1600 * time.Millisecond)
			status, later := n.keyedPost(t, "/api/ws/push/notification", "k-1", body)
			if status != http.StatusAccepted || later["id"] == first["id"] {
				t.Fatalf("past --idempotency-ttl: %d %v, want a new message", status, later)
			}
			expectEvent(t, ev, later["id"].(string), "notification")
		})
	}
}

// TestIdempotencyAcrossRestartsAndNodes: on PostgreSQL a key outlives the
// process that stored it and holds on every node of the database.
func TestIdempotencyAcrossRestartsAndNodes(t *testing.T) {
	db := pgtest.NewDB(t)
	batch := `{"messages":[{"kind":"notification","userId":"rex","title":"1","body":"b"},{"kind":"broadcast","title":"2","body":"b"}]}`
	first := startNode(t, db)
	status, firstBatch := first.keyedPost(t, "/api/ws/push/batch", "batch-k", batch)
	if status != http.StatusAccepted {
		t.Fatalf("batch: %d %v", status, firstBatch)
	}
	_, firstOne := first.keyedPost(t, "/api/ws/broadcast", "bc-k", `{"title":"x","body":"y"}`)
	first.stop(t)

	a, b := startNode(t, db), startNode(t, db)
	ev := b.sse(t, "rex")
	expectEvent(t, ev, "", "connected")
	ids := firstBatch["ids"].([]any)
	expectEvent(t, ev, ids[0].(string), "notification")
	expectEvent(t, ev, ids[1].(string), "notification")
	expectEvent(t, ev, firstOne["id"].(string), "notification")
	for _, n := range []*node{a, b} {
		status, again := n.keyedPost(t, "/api/ws/push/batch", "batch-k", batch)
		if status != http.StatusAccepted || toJSON(again) != toJSON(firstBatch) {
			t.Fatalf("batch repeat after a restart on another node: %d %v, want %v", status, again, firstBatch)
		}
		status, one := n.keyedPost(t, "/api/ws/broadcast", "bc-k", `{"title":"x","body":"y"}`)
		wantAnswer(t, "broadcast repeat after a restart", status, one, firstOne)
	}
	marker := a.post(t, "/api/ws/push/notification", `{"userId":"rex","title":"marker","body":"m"}`)["id"].(string)
	expectEvent(t, ev, marker, "notification") // no repeat was delivered
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
