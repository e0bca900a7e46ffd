// Package storetest is the conformance suite every stream.Store passes: the
// memory store and the PostgreSQL store run the same semantic tests.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/stream"
)

// Store is what the suite tests: the log and cursors of stream.Store, and
// the optional expiry and queue statistics, which the retention cases
// check.
type Store interface {
	stream.Store
	stream.Expirer
	stream.QueueReporter
}

// Opener returns a fresh, empty store with retention r, closed by the test.
type Opener func(t *testing.T, r stream.Retention) Store

// Run runs the whole suite against stores made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"AppendOrderAndIDs", testAppendOrder},
		{"ResumeAfter", testResumeAfter},
		{"BroadcastExclusions", testBroadcastExclusions},
		{"Conflation", testConflation},
		{"CountCap", testCountCap},
		{"CapCountsBroadcasts", testCapCountsBroadcasts},
		{"SupersededDoNotCount", testSupersededDoNotCount},
		{"TTL", testTTL},
		{"DroppedBroadcastOnlyTrimsRecipients", testDroppedBroadcastRecipients},
		{"OfflineDisabled", testOfflineDisabled},
		{"DeliveredCursor", testDeliveredCursor},
		{"QueueStats", testQueueStats},
		{"FeedOrderConcurrent", testFeedConcurrent},
		{"TailingReaderSeesEveryID", testTailingReader},
		{"Paging", testPaging},
		{"IdempotentRepeat", testKeyRepeat},
		{"IdempotencyConflict", testKeyConflict},
		{"IdempotencyWithinCall", testKeyWithinCall},
		{"IdempotencyExpiry", testKeyExpiry},
		{"IdempotencyConcurrent", testKeyConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

var ctx = context.Background()

func payload(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func note(user string, n int) stream.Draft {
	return stream.Draft{Type: stream.TypeNotification, UserID: user, Payload: payload(map[string]any{"title": "t", "body": fmt.Sprint(n)})}
}

func bcast(n int, exclude ...string) stream.Draft {
	return stream.Draft{Type: stream.TypeNotification, Exclude: exclude, Payload: payload(map[string]any{"title": "b", "body": fmt.Sprint(n)})}
}

func dash(user, widget string, v int) stream.Draft {
	return stream.Draft{Type: stream.TypeDashboardUpdate, UserID: user, Key: widget, Payload: payload(map[string]any{"widgetId": widget, "data": v})}
}

func appendAll(t *testing.T, s stream.Store, ds ...stream.Draft) []*stream.Message {
	t.Helper()
	msgs, err := s.Append(ctx, ds)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if len(msgs) != len(ds) {
		t.Fatalf("append returned %d messages for %d drafts", len(msgs), len(ds))
	}
	return msgs
}

func read(t *testing.T, s stream.Store, user string, after uint64) ([]*stream.Message, bool) {
	t.Helper()
	msgs, trimmed, err := s.ReadStream(ctx, user, after, 10000)
	if err != nil {
		t.Fatalf("read %s after %d: %v", user, after, err)
	}
	return msgs, trimmed
}

func seqs(msgs []*stream.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

func wantSeqs(t *testing.T, what string, got []*stream.Message, want ...*stream.Message) {
	t.Helper()
	if fmt.Sprint(seqs(got)) != fmt.Sprint(seqs(want)) {
		t.Fatalf("%s: got seqs %v, want %v", what, seqs(got), seqs(want))
	}
}

func big() stream.Retention { return stream.Retention{MaxCount: 100000, TTL: 24 * time.Hour} }

func testAppendOrder(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	if h, err := s.Head(ctx); err != nil || h != 0 {
		t.Fatalf("head of empty store = %d, %v", h, err)
	}
	ms := appendAll(t, s, note("a", 1), note("b", 2), bcast(3), note("a", 4))
	for i := 1; i < len(ms); i++ {
		if ms[i].Seq <= ms[i-1].Seq {
			t.Fatalf("positions not increasing: %v", seqs(ms))
		}
	}
	for _, m := range ms {
		seq, ok := stream.ParseID(s.Epoch(), m.ID)
		if !ok || seq != m.Seq {
			t.Fatalf("id %q does not parse back to %d", m.ID, m.Seq)
		}
		if m.Timestamp == 0 {
			t.Fatalf("timestamp not set")
		}
	}
	if _, ok := stream.ParseID("other", ms[0].ID); ok {
		t.Fatal("id of this store parsed under another epoch")
	}
	if h, _ := s.Head(ctx); h != ms[3].Seq {
		t.Fatalf("head = %d, want %d", h, ms[3].Seq)
	}
	got, trimmed := read(t, s, "a", 0)
	wantSeqs(t, "a's stream", got, ms[0], ms[2], ms[3])
	if trimmed {
		t.Fatal("trimmed reported with nothing lost")
	}
	if got[0].Type != stream.TypeNotification || string(got[0].Payload) != string(ms[0].Payload) || got[0].UserID != "a" {
		t.Fatalf("message not stored faithfully: %+v", got[0])
	}
	if !got[1].Broadcast() {
		t.Fatal("broadcast lost its broadcast-ness")
	}
	got, _ = read(t, s, "c", 0)
	wantSeqs(t, "c (only broadcasts)", got, ms[2])
}

func testResumeAfter(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	ms := appendAll(t, s, note("a", 1), note("a", 2), note("a", 3))
	got, trimmed := read(t, s, "a", ms[0].Seq)
	wantSeqs(t, "after first", got, ms[1], ms[2])
	if trimmed {
		t.Fatal("trimmed on plain resume")
	}
	got, _ = read(t, s, "a", ms[2].Seq)
	wantSeqs(t, "after last", got)
}

func testBroadcastExclusions(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	ms := appendAll(t, s, bcast(1, "b", "c"), note("b", 2), bcast(3))
	got, _ := read(t, s, "a", 0)
	wantSeqs(t, "a", got, ms[0], ms[2])
	got, _ = read(t, s, "b", 0)
	wantSeqs(t, "b (excluded from first)", got, ms[1], ms[2])
	if len(got[1].Exclude) != 0 {
		t.Fatalf("exclude list invented: %v", got[1].Exclude)
	}
	got, _ = read(t, s, "a", 0)
	if fmt.Sprint(got[0].Exclude) != "[b c]" {
		t.Fatalf("exclude list not stored: %v", got[0].Exclude)
	}
}

func testConflation(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	ms := appendAll(t, s, dash("a", "w1", 1), note("a", 2), dash("a", "w1", 3), dash("a", "w2", 4), dash("b", "w1", 5), dash("a", "w1", 6))
	got, trimmed := read(t, s, "a", 0)
	wantSeqs(t, "conflated", got, ms[1], ms[3], ms[5])
	if trimmed {
		t.Fatal("superseded updates reported as trimmed")
	}
	got, trimmed = read(t, s, "a", ms[0].Seq)
	wantSeqs(t, "conflated after first", got, ms[1], ms[3], ms[5])
	if trimmed {
		t.Fatal("superseded update reported as trimmed on resume")
	}
	got, _ = read(t, s, "b", 0)
	wantSeqs(t, "other user's widget", got, ms[4])
	if got[0].Key != "w1" {
		t.Fatalf("key not stored: %q", got[0].Key)
	}
}

func testCountCap(t *testing.T, open Opener) {
	s := open(t, stream.Retention{MaxCount: 5, TTL: time.Hour})
	s.SetFeed(func([]*stream.Message) {})
	var ms []*stream.Message
	for i := range 8 {
		ms = append(ms, appendAll(t, s, note("a", i))...)
	}
	appendAll(t, s, note("b", 0))
	got, trimmed := read(t, s, "a", 0)
	wantSeqs(t, "newest five", got, ms[3:]...)
	if !trimmed {
		t.Fatal("trimmed not reported from the start")
	}
	_, trimmed = read(t, s, "a", ms[1].Seq)
	if !trimmed {
		t.Fatal("trimmed not reported when ms[2] is gone")
	}
	got, trimmed = read(t, s, "a", ms[2].Seq)
	wantSeqs(t, "resume at the edge", got, ms[3:]...)
	if trimmed {
		t.Fatal("reset when nothing after the id was lost")
	}
	if _, err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	got, trimmed = read(t, s, "a", ms[2].Seq)
	wantSeqs(t, "after expiry run", got, ms[3:]...)
	if trimmed {
		t.Fatal("reset after expiry run when nothing was lost")
	}
	if _, trimmed = read(t, s, "a", ms[1].Seq); !trimmed {
		t.Fatal("trimmed forgotten after expiry run")
	}
	if _, trimmed = read(t, s, "b", 0); trimmed {
		t.Fatal("other user reported trimmed")
	}
}

func testCapCountsBroadcasts(t *testing.T, open Opener) {
	s := open(t, stream.Retention{MaxCount: 3, TTL: time.Hour})
	s.SetFeed(func([]*stream.Message) {})
	ms := appendAll(t, s, note("a", 0), bcast(1), bcast(2), bcast(3))
	got, trimmed := read(t, s, "a", 0)
	wantSeqs(t, "a", got, ms[1:]...)
	if !trimmed {
		t.Fatal("own message pushed out by broadcasts not reported")
	}
	appendAll(t, s, bcast(4), bcast(5), bcast(6))
	if _, err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	got, trimmed = read(t, s, "z", ms[3].Seq)
	if len(got) != 3 || trimmed {
		t.Fatalf("user z after b3: got %v trimmed=%v, want b4..b6 and nothing lost", seqs(got), trimmed)
	}
	if _, trimmed = read(t, s, "z", ms[2].Seq); !trimmed {
		t.Fatal("user z after b2: b3 was dropped, want trimmed")
	}
}

func testSupersededDoNotCount(t *testing.T, open Opener) {
	s := open(t, stream.Retention{MaxCount: 3, TTL: time.Hour})
	s.SetFeed(func([]*stream.Message) {})
	first := appendAll(t, s, note("a", 0))
	var last []*stream.Message
	for i := range 20 {
		last = appendAll(t, s, dash("a", "w", i))
	}
	got, trimmed := read(t, s, "a", 0)
	wantSeqs(t, "notification survives a busy widget", got, first[0], last[0])
	if trimmed {
		t.Fatal("busy widget reported as trimmed")
	}
}

// Clock is an injectable retention clock (stream.Retention.Now) that tests
// move forward by hand.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testTTL(t *testing.T, open Opener) {
	clock := NewClock(time.Now().Add(-10 * time.Hour))
	s := open(t, stream.Retention{MaxCount: 100, TTL: time.Hour, Now: clock.Now})
	s.SetFeed(func([]*stream.Message) {})
	old := appendAll(t, s, note("a", 1), bcast(2))
	clock.Add(30 * time.Minute)
	mid := appendAll(t, s, note("a", 3))
	clock.Add(40 * time.Minute) // old ones are 70 min old now
	got, trimmed := read(t, s, "a", 0)
	wantSeqs(t, "before expiry run", got, mid[0])
	if !trimmed {
		t.Fatal("expired messages not reported as trimmed")
	}
	got, trimmed = read(t, s, "a", old[1].Seq)
	wantSeqs(t, "resume after the expired ones", got, mid[0])
	if trimmed {
		t.Fatal("reset although nothing after the id was lost")
	}
	n, err := s.Expire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("Expire dropped %d, want at least 2", n)
	}
	if _, trimmed = read(t, s, "a", old[0].Seq); !trimmed {
		t.Fatal("expired broadcast forgotten after expiry run")
	}
	if _, trimmed = read(t, s, "newcomer", 0); !trimmed {
		t.Fatal("expired broadcast not reported to another user")
	}
	st, err := s.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExpiredMessages < 2 {
		t.Fatalf("expiredMessages = %d, want >= 2", st.ExpiredMessages)
	}
}

func testDroppedBroadcastRecipients(t *testing.T, open Opener) {
	s := open(t, stream.Retention{MaxCount: 1, TTL: time.Hour})
	s.SetFeed(func([]*stream.Message) {})
	ms := appendAll(t, s, bcast(1, "b"), bcast(2))
	if _, err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	got, trimmed := read(t, s, "b", 0)
	wantSeqs(t, "b", got, ms[1])
	if trimmed {
		t.Fatal("b was excluded from the dropped broadcast: nothing was lost for b")
	}
	if _, trimmed = read(t, s, "a", 0); !trimmed {
		t.Fatal("a lost the first broadcast: trimmed expected")
	}
}

func testOfflineDisabled(t *testing.T, open Opener) {
	s := open(t, stream.Retention{MaxCount: 0, TTL: time.Hour})
	var fed atomic.Int64
	s.SetFeed(func(b []*stream.Message) { fed.Add(int64(len(b))) })
	ms := appendAll(t, s, note("a", 1), bcast(2))
	if ms[0].Seq == 0 || ms[1].Seq <= ms[0].Seq {
		t.Fatalf("positions still assigned: %v", seqs(ms))
	}
	got, trimmed := read(t, s, "a", 0)
	if len(got) != 0 || !trimmed {
		t.Fatalf("nothing kept: got %v trimmed=%v", seqs(got), trimmed)
	}
	if _, trimmed = read(t, s, "a", ms[1].Seq); trimmed {
		t.Fatal("reset when nothing was published after the id")
	}
	waitFor(t, "feed", func() bool { return fed.Load() == 2 })
}

func testDeliveredCursor(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	if seq, known, err := s.DeliveredCursor(ctx, "a"); err != nil || known || seq != 0 {
		t.Fatalf("fresh cursor = %d %v %v", seq, known, err)
	}
	ms := appendAll(t, s, note("a", 1), note("a", 2), note("a", 3))
	if err := s.MarkDelivered(ctx, []stream.Delivery{{UserID: "a", Seq: ms[1].Seq, Count: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDelivered(ctx, []stream.Delivery{{UserID: "a", Seq: ms[0].Seq, Count: 0}}); err != nil {
		t.Fatal(err)
	}
	seq, known, err := s.DeliveredCursor(ctx, "a")
	if err != nil || !known || seq != ms[1].Seq {
		t.Fatalf("cursor = %d %v %v, want %d (never backwards)", seq, known, err, ms[1].Seq)
	}
	got, _ := read(t, s, "a", seq)
	wantSeqs(t, "offline backlog", got, ms[2])
}

func testQueueStats(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	ms := appendAll(t, s, note("a", 1), note("a", 2), note("a", 3), note("b", 1), bcast(9))
	if err := s.MarkDelivered(ctx, []stream.Delivery{{UserID: "a", Seq: ms[0].Seq, Count: 1}, {UserID: "c", Seq: ms[4].Seq, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PendingMessages != 3 || st.DeliveredMessages != 2 || st.ExpiredMessages != 0 {
		t.Fatalf("stats = %+v, want pending 3 delivered 2 expired 0", st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testFeedConcurrent(t *testing.T, open Opener) {
	s := open(t, big())
	var mu sync.Mutex
	var fed []uint64
	s.SetFeed(func(b []*stream.Message) {
		mu.Lock()
		for _, m := range b {
			fed = append(fed, m.Seq)
		}
		mu.Unlock()
	})
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.Append(ctx, []stream.Draft{note(fmt.Sprint("u", w), i)}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "feed to catch up", func() bool { mu.Lock(); defer mu.Unlock(); return len(fed) >= writers*each })
	mu.Lock()
	defer mu.Unlock()
	if len(fed) != writers*each {
		t.Fatalf("feed delivered %d messages, want %d", len(fed), writers*each)
	}
	for i := 1; i < len(fed); i++ {
		if fed[i] <= fed[i-1] {
			t.Fatalf("feed out of order at %d: %d after %d", i, fed[i], fed[i-1])
		}
	}
}

// testTailingReader runs concurrent appenders while a reader tails the
// stream with ReadStream(after=last seen). If positions became visible out of
// order, the reader would pass over a lower id and never see it.
func testTailingReader(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	const writers, each = 8, 150
	var appended sync.Map
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ms, err := s.Append(ctx, []stream.Draft{bcast(i)})
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				appended.Store(ms[0].Seq, true)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[uint64]bool{}
	var after uint64
	finished := false
	for !finished {
		select {
		case <-done:
			finished = true
		default:
		}
		msgs, _, err := s.ReadStream(ctx, "tail", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Seq <= after || seen[m.Seq] {
				t.Fatalf("reader got %d after %d", m.Seq, after)
			}
			seen[m.Seq] = true
			after = m.Seq
		}
	}
	missing := 0
	appended.Range(func(k, _ any) bool {
		if !seen[k.(uint64)] {
			missing++
		}
		return true
	})
	if missing > 0 || len(seen) != writers*each {
		t.Fatalf("tailing reader skipped %d ids (saw %d of %d)", missing, len(seen), writers*each)
	}
}

func testPaging(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	var ds []stream.Draft
	for i := range 25 {
		ds = append(ds, note("a", i))
	}
	ms := appendAll(t, s, ds...)
	var got []*stream.Message
	var after uint64
	for {
		page, _, err := s.ReadStream(ctx, "a", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 10 {
			t.Fatalf("page of %d over limit 10", len(page))
		}
		got = append(got, page...)
		if len(page) < 10 {
			break
		}
		after = page[len(page)-1].Seq
	}
	wantSeqs(t, "paged", got, ms...)
}
