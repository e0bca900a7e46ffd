package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/stream"
)

// Idempotent appends (stream.Draft.IdempotencyKey, CONTRACT §5).

func keyed(d stream.Draft, key, fingerprint string) stream.Draft {
	d.IdempotencyKey, d.Fingerprint = key, fingerprint
	return d
}

// fedLog records what a store's feed delivers.
type fedLog struct {
	mu   sync.Mutex
	seqs []uint64
}

func (f *fedLog) feed(b []*stream.Message) {
	f.mu.Lock()
	for _, m := range b {
		f.seqs = append(f.seqs, m.Seq)
	}
	f.mu.Unlock()
}

func (f *fedLog) get() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.seqs...)
}

// sameAnswer checks that a repeat is answered with the first answer, and
// marked a repeat (unless it repeats a draft of its own call).
func sameAnswer(t *testing.T, what string, got, first *stream.Message, repeat bool) {
	t.Helper()
	if got.Seq != first.Seq || got.ID != first.ID || got.Timestamp != first.Timestamp {
		t.Fatalf("%s: got (seq %d, id %s, ts %d), want the first answer (seq %d, id %s, ts %d)",
			what, got.Seq, got.ID, got.Timestamp, first.Seq, first.ID, first.Timestamp)
	}
	if got.Repeat != repeat || first.Repeat {
		t.Fatalf("%s: Repeat = %v (first answer: %v), want %v", what, got.Repeat, first.Repeat, repeat)
	}
}

func wantConflict(t *testing.T, what string, err error, index int) {
	t.Helper()
	var kc *stream.KeyConflictError
	if !errors.As(err, &kc) || !errors.Is(err, stream.ErrKeyConflict) {
		t.Fatalf("%s: err = %v, want a *KeyConflictError", what, err)
	}
	if kc.Index != index {
		t.Fatalf("%s: conflict names draft %d, want %d", what, kc.Index, index)
	}
	if errors.Is(err, stream.ErrUnavailable) {
		t.Fatalf("%s: a conflict must not read as an outage: %v", what, err)
	}
}

func head(t *testing.T, s stream.Store) uint64 {
	t.Helper()
	h, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testKeyRepeat checks that a repeat stores nothing, is not fed, and answers
// what the first answered, even once the message itself left the offline
// store.
func testKeyRepeat(t *testing.T, open Opener) {
	clock := NewClock(time.Now())
	s := open(t, stream.Retention{MaxCount: 1, TTL: time.Hour, Now: clock.Now})
	var f fedLog
	s.SetFeed(f.feed)
	first := appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	clock.Add(time.Second) // a retry comes later: its clock differs
	again := appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	sameAnswer(t, "repeat", again[0], first[0], true)
	if h := head(t, s); h != first[0].Seq {
		t.Fatalf("head = %d after a repeat, want %d: the repeat was stored", h, first[0].Seq)
	}
	got, _ := read(t, s, "a", 0)
	wantSeqs(t, "stream after a repeat", got, first[0])

	// Past the count cap (MaxCount 1) and the message TTL, the key still
	// holds: the answer is the first one, and nothing is stored again.
	later := appendAll(t, s, note("a", 2))
	clock.Add(2 * time.Hour)
	if _, err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	again = appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	sameAnswer(t, "repeat after the message was trimmed", again[0], first[0], true)
	if h := head(t, s); h != later[0].Seq {
		t.Fatalf("head = %d, want %d: a repeat was stored", h, later[0].Seq)
	}
	waitFor(t, "the feed", func() bool { return len(f.get()) >= 2 })
	time.Sleep(50 * time.Millisecond)
	if fed := f.get(); fmt.Sprint(fed) != fmt.Sprint([]uint64{first[0].Seq, later[0].Seq}) {
		t.Fatalf("fed %v, want only the stored messages %d and %d", fed, first[0].Seq, later[0].Seq)
	}
}

// testKeyConflict checks that the same key with another fingerprint fails
// the whole call, and nothing of it is stored; the key keeps its first
// answer.
func testKeyConflict(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	first := appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	_, err := s.Append(ctx, []stream.Draft{note("b", 2), keyed(note("a", 3), "k1", "fp2")})
	wantConflict(t, "reused key", err, 1)
	if h := head(t, s); h != first[0].Seq {
		t.Fatalf("head = %d after a conflict, want %d: part of the call was stored", h, first[0].Seq)
	}
	if got, _ := read(t, s, "b", 0); len(got) != 0 {
		t.Fatalf("the conflicting call's other draft was stored: %v", seqs(got))
	}
	// Neither did the failed call claim its other keys.
	_, err = s.Append(ctx, []stream.Draft{keyed(note("b", 4), "k2", "fpA"), keyed(note("a", 5), "k1", "fpX")})
	wantConflict(t, "second draft reuses a key", err, 1)
	ms := appendAll(t, s, keyed(note("b", 6), "k2", "fpB"))
	if ms[0].Seq != first[0].Seq+1 {
		t.Fatalf("a key of a failed call was kept: k2 got seq %d, want a new message %d", ms[0].Seq, first[0].Seq+1)
	}
	again := appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	sameAnswer(t, "repeat after conflicts", again[0], first[0], true)
}

// testKeyWithinCall checks that one call may repeat a key of its own, and
// that keyed, repeated and unkeyed drafts mix, each answered in its place.
func testKeyWithinCall(t *testing.T, open Opener) {
	s := open(t, big())
	var f fedLog
	s.SetFeed(f.feed)
	old := appendAll(t, s, keyed(note("a", 1), "old", "fp-old"))
	ms := appendAll(t, s,
		keyed(note("a", 2), "k1", "fp1"),
		note("a", 3),
		keyed(note("a", 1), "old", "fp-old"),
		keyed(note("a", 2), "k1", "fp1"),
		keyed(bcast(4), "k2", "fp2"),
	)
	sameAnswer(t, "a key kept from before", ms[2], old[0], true)
	sameAnswer(t, "a key repeated in the same call", ms[3], ms[0], false)
	if ms[0].Seq != old[0].Seq+1 || ms[1].Seq != old[0].Seq+2 || ms[4].Seq != old[0].Seq+3 {
		t.Fatalf("new drafts got seqs %d, %d, %d; want %d.. in order", ms[0].Seq, ms[1].Seq, ms[4].Seq, old[0].Seq+1)
	}
	if !ms[4].Broadcast() {
		t.Fatal("a keyed broadcast lost its broadcast-ness")
	}
	got, _ := read(t, s, "a", 0)
	wantSeqs(t, "stream", got, old[0], ms[0], ms[1], ms[4])
	waitFor(t, "the feed", func() bool { return len(f.get()) >= 4 })
	time.Sleep(50 * time.Millisecond)
	if n := len(f.get()); n != 4 {
		t.Fatalf("fed %d messages (%v), want the 4 stored", n, f.get())
	}

	_, err := s.Append(ctx, []stream.Draft{keyed(note("a", 5), "k3", "fpA"), keyed(note("a", 6), "k3", "fpB")})
	wantConflict(t, "a key reused within a call", err, 1)
	if h := head(t, s); h != ms[4].Seq {
		t.Fatalf("head = %d, want %d: a conflicting call stored something", h, ms[4].Seq)
	}
}

// testKeyExpiry checks that after the key TTL the key is forgotten: the
// same key stores a new message (and may carry another request).
func testKeyExpiry(t *testing.T, open Opener) {
	clock := NewClock(time.Now())
	s := open(t, stream.Retention{MaxCount: 100, TTL: 48 * time.Hour, IdempotencyTTL: time.Hour, Now: clock.Now})
	s.SetFeed(func([]*stream.Message) {})
	first := appendAll(t, s, keyed(note("a", 1), "k1", "fp1"), keyed(note("a", 2), "k2", "fp2"))
	clock.Add(59 * time.Minute)
	again := appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	sameAnswer(t, "repeat within the TTL", again[0], first[0], true)
	clock.Add(2 * time.Minute)
	fresh := appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	if fresh[0].Seq <= first[1].Seq {
		t.Fatalf("key past its TTL still answered with seq %d", fresh[0].Seq)
	}
	if _, err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	// Forgotten by the expiry pass: another request may take the key now.
	other := appendAll(t, s, keyed(note("b", 3), "k2", "fp-other"))
	if other[0].Seq != fresh[0].Seq+1 {
		t.Fatalf("expired key k2: got seq %d, want a new message %d", other[0].Seq, fresh[0].Seq+1)
	}
	// The key renewed past its TTL is kept from its new first use.
	again = appendAll(t, s, keyed(note("a", 1), "k1", "fp1"))
	sameAnswer(t, "repeat of the renewed key", again[0], fresh[0], true)
}

// testKeyConcurrent checks that concurrent appends of one key (a publisher
// retrying while its first try is in flight) store one message and all get
// its answer.
func testKeyConcurrent(t *testing.T, open Opener) {
	s := open(t, big())
	s.SetFeed(func([]*stream.Message) {})
	const tries, keys = 8, 20
	var wg sync.WaitGroup
	got := make([][]uint64, tries)
	var firsts atomic.Int64 // answers not marked a repeat
	for w := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				ms, err := s.Append(ctx, []stream.Draft{keyed(note("a", k), fmt.Sprint("key-", k), "fp")})
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				got[w] = append(got[w], ms[0].Seq)
				if !ms[0].Repeat {
					firsts.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for w := 1; w < tries; w++ {
		if fmt.Sprint(got[w]) != fmt.Sprint(got[0]) {
			t.Fatalf("try %d got seqs %v, try 0 %v: a key answered differently", w, got[w], got[0])
		}
	}
	if h := head(t, s); h != keys {
		t.Fatalf("head = %d, want %d: %d concurrent tries of %d keys stored duplicates", h, keys, tries, keys)
	}
	if n := firsts.Load(); n != keys {
		t.Fatalf("%d answers not marked a repeat, want one per key (%d)", n, keys)
	}
}
