package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushd/pushd/stream"
)

// TestTapSeesEveryMessageInOrder: a tap gets every published message,
// addressed or broadcast, in order, whether or not anyone is connected.
func TestTapSeesEveryMessageInOrder(t *testing.T) {
	m, _ := newManager(t, stream.Retention{MaxCount: 100, TTL: time.Hour}, stream.Config{})
	tap := m.Tap(100)
	defer tap.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var want []string
	for i := range 10 {
		d := stream.Draft{Type: stream.TypeNotification, UserID: fmt.Sprintf("u%d", i%3), Payload: []byte(`{}`)}
		if i == 5 {
			d.UserID = "" // a broadcast
		}
		msgs, err := m.Publish(ctx, []stream.Draft{d})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, msgs[0].ID)
	}
	var got []string
	for len(got) < len(want) {
		msgs, dropped, ok := tap.Next(ctx)
		if !ok || dropped != 0 {
			t.Fatalf("Next: ok %v, dropped %d", ok, dropped)
		}
		for _, msg := range msgs {
			got = append(got, msg.ID)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tap saw %v, want %v", got, want)
	}
}

// TestTapNeverBlocksPublishing: a tap nobody reads keeps its bound and
// counts what it dropped; publishing goes on.
func TestTapNeverBlocksPublishing(t *testing.T) {
	m, _ := newManager(t, stream.Retention{MaxCount: 100, TTL: time.Hour}, stream.Config{})
	tap := m.Tap(5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 20 {
		if _, err := m.Publish(ctx, []stream.Draft{{Type: stream.TypeNotification, UserID: "u", Payload: []byte(`{}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	// The feed is asynchronous: wait until all 20 were offered.
	var kept, dropped uint64
	for kept+dropped < 20 {
		msgs, d, ok := tap.Next(ctx)
		if !ok {
			t.Fatalf("tap ended after %d kept, %d dropped", kept, dropped)
		}
		kept += uint64(len(msgs))
		dropped += d
		if len(msgs) > 5 {
			t.Fatalf("one take of %d messages from a tap bounded at 5", len(msgs))
		}
	}
	if dropped == 0 {
		t.Fatalf("kept %d, dropped none: the bound was not applied", kept)
	}
	tap.Close()
	if _, _, ok := tap.Next(ctx); ok {
		t.Fatal("Next after Close")
	}
}
