package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

var ctx = context.Background()

func newManager(t *testing.T, r stream.Retention, cfg stream.Config) (*stream.Manager, stream.Store) {
	t.Helper()
	store := persist.NewMemory(r)
	cfg.HeartbeatInterval = time.Second
	m := stream.NewManager(store, cfg)
	t.Cleanup(func() { m.Shutdown(ctx) })
	return m, store
}

func note(user string, n int) stream.Draft {
	p, _ := json.Marshal(map[string]any{"title": "t", "body": fmt.Sprint(n)})
	return stream.Draft{Type: stream.TypeNotification, UserID: user, Payload: p}
}

func publish(t *testing.T, m *stream.Manager, ds ...stream.Draft) []*stream.Message {
	t.Helper()
	msgs, err := m.Publish(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// client is the Transport of a started session (the production path,
// Session.Start): the pump writes to it. Write hands each write's items to
// the test and returns only once the test took them, so what the pump
// reports written is what the test read. Heartbeats, which the manager
// queues on every started session each interval, are left out: these tests
// follow the stream, not the timer.
type client struct {
	s       *stream.Session
	batches chan []stream.Item
	synced  chan struct{}
	held    chan struct{}
	release chan struct{}
	items   []stream.Item
}

// errClientGone fails a write the test no longer reads: the session ended.
var errClientGone = errors.New("test client gone")

// Control events the tests queue (Session.Send) to steer the pump; the
// client never hands them on.
const (
	// syncType: the pump writes it only after it recorded every earlier
	// write as written.
	syncType = "test-sync"
	// holdType: its write blocks until the test releases it, as a write to
	// a socket the peer does not read would.
	holdType = "test-hold"
)

func (c *client) Write(items []stream.Item) error {
	var kept []stream.Item
	for _, it := range items {
		switch {
		case it.Control != nil && it.Control.Type == stream.TypeHeartbeat:
		case it.Control != nil && it.Control.Type == syncType:
			c.synced <- struct{}{}
		case it.Control != nil && it.Control.Type == holdType:
			c.held <- struct{}{}
			<-c.release
		default:
			kept = append(kept, it) // a copy: the pump recycles items
		}
	}
	if len(kept) == 0 {
		return nil
	}
	select {
	case c.batches <- kept:
		return nil
	case <-c.s.Done():
		return errClientGone
	}
}

func (c *client) Finish(stream.CloseReason) {}

func attach(t *testing.T, m *stream.Manager, user, lastID string) *client {
	t.Helper()
	s := m.NewSession(user, "test", "127.0.0.1:1", "go-test")
	if err := m.Attach(ctx, s, lastID); err != nil {
		t.Fatal(err)
	}
	c := &client{s: s, batches: make(chan []stream.Item), synced: make(chan struct{}, 1), held: make(chan struct{}, 1)}
	s.Start(c)
	return c
}

// next waits for n more items (or fails). When it returns, the pump has
// recorded them as written (the delivered cursor moved).
func (c *client) next(t *testing.T, n int) []stream.Item {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for len(c.items) < n {
		select {
		case got := <-c.batches:
			c.items = append(c.items, got...)
		case <-deadline:
			t.Fatalf("got %d items, want %d: %v", len(c.items), n, describe(c.items))
		}
	}
	c.s.Send(stream.Control{Type: syncType})
	for synced := false; !synced; {
		select {
		case got := <-c.batches: // queued before the sync event
			c.items = append(c.items, got...)
		case <-c.synced:
			synced = true
		case <-deadline:
			t.Fatalf("the pump did not get to the sync event")
		}
	}
	out := c.items[:n]
	c.items = c.items[n:]
	return out
}

func (c *client) none(t *testing.T) {
	t.Helper()
	if len(c.items) > 0 {
		t.Fatalf("unexpected items: %v", describe(c.items))
	}
	select {
	case got := <-c.batches:
		t.Fatalf("unexpected items: %v", describe(got))
	case <-time.After(50 * time.Millisecond):
	}
}

// hold blocks the pump in a write until the returned function is called, as
// a socket the peer does not read would: meanwhile everything queues.
func (c *client) hold(t *testing.T) (release func()) {
	t.Helper()
	c.release = make(chan struct{})
	c.s.Send(stream.Control{Type: holdType})
	select {
	case <-c.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the pump did not get to the hold event")
	}
	return func() { close(c.release) }
}

func describe(items []stream.Item) []string {
	var out []string
	for _, it := range items {
		if it.Msg != nil {
			out = append(out, fmt.Sprintf("msg#%d", it.Msg.Seq))
		} else {
			out = append(out, fmt.Sprintf("%s%v", it.Control.Type, it.Control.Payload))
		}
	}
	return out
}

func wantMsgs(t *testing.T, items []stream.Item, want ...*stream.Message) {
	t.Helper()
	if len(items) != len(want) {
		t.Fatalf("got %v, want %d messages", describe(items), len(want))
	}
	for i, it := range items {
		if it.Msg == nil || it.Msg.Seq != want[i].Seq {
			t.Fatalf("item %d: got %v, want msg#%d", i, describe(items), want[i].Seq)
		}
	}
}

func wantControl(t *testing.T, it stream.Item, typ string) {
	t.Helper()
	if it.Control == nil || it.Control.Type != typ {
		t.Fatalf("got %v, want %s", describe([]stream.Item{it}), typ)
	}
}

func big() stream.Retention { return stream.Retention{MaxCount: 1 << 20, TTL: time.Hour} }

func TestConnectedFirstThenLive(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{})
	c := attach(t, m, "u", "")
	wantControl(t, c.next(t, 1)[0], stream.TypeConnected)
	ms := publish(t, m, note("u", 1), note("other", 2), note("u", 3))
	wantMsgs(t, c.next(t, 2), ms[0], ms[2])
	c.none(t)
}

// TestResumeUnderConcurrentPublishing: thousands of messages are published
// while a client keeps disconnecting and resuming from its last id. Every
// message must arrive exactly once and in order. It fails if the session is
// registered after the replay (gap) or if held-back live messages are not
// de-duplicated against the replay (duplicates).
func TestResumeUnderConcurrentPublishing(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{QueueLimit: 1 << 16})
	const total = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total; {
			n := 1 + rand.IntN(4)
			var ds []stream.Draft
			for j := 0; j < n && i < total; j++ {
				ds = append(ds, note("u", i))
				i++
			}
			if _, err := m.Publish(ctx, ds); err != nil {
				t.Error(err)
				return
			}
			if rand.IntN(8) == 0 {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			}
		}
	}()
	var last uint64
	lastID := ""
	received, reconnects := 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for received < total {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d", received, total)
		}
		c := attach(t, m, "u", lastID)
		reconnects++
		budget := 1 + rand.IntN(400) // messages to read before dropping
	read:
		for budget > 0 && received < total {
			var items []stream.Item
			select {
			case items = <-c.batches:
			case <-time.After(2 * time.Second):
				break read
			}
			for _, it := range items {
				if it.Control != nil {
					if it.Control.Type == stream.TypeReset {
						t.Fatalf("reset %v although nothing was trimmed", it.Control.Payload)
					}
					continue
				}
				if it.Msg.Seq != last+1 {
					t.Fatalf("after #%d got #%d (reconnect %d): gap or duplicate", last, it.Msg.Seq, reconnects)
				}
				last = it.Msg.Seq
				lastID = it.Msg.ID
				received++
				budget--
			}
		}
		c.s.Close()
	}
	<-done
	if received != total || last != total {
		t.Fatalf("received %d, last #%d, want %d", received, last, total)
	}
	t.Logf("%d messages over %d connections", total, reconnects)
}

func TestOfflineDelivery(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{})
	first := publish(t, m, note("u", 1), note("u", 2), note("x", 3), note("u", 4))
	c := attach(t, m, "u", "")
	items := c.next(t, 4)
	wantControl(t, items[0], stream.TypeConnected)
	wantMsgs(t, items[1:], first[0], first[1], first[3])
	m.FlushCursors()
	c.s.Close()
	later := publish(t, m, note("u", 5), note("u", 6))
	c = attach(t, m, "u", "")
	items = c.next(t, 3)
	wantMsgs(t, items[1:], later...)
	c.none(t)
}

func TestResetEvents(t *testing.T) {
	m, store := newManager(t, stream.Retention{MaxCount: 5, TTL: time.Hour}, stream.Config{})
	var ms []*stream.Message
	for i := range 10 {
		ms = append(ms, publish(t, m, note("u", i))...)
	}
	kept := ms[5:]
	cases := []struct {
		name, lastID, reset string
	}{
		{"trimmed", ms[2].ID, "trimmed"},
		{"edge: nothing lost", ms[4].ID, ""},
		{"malformed", "garbage", "unknown_id"},
		{"other epoch", "deadbeef-0000000000000003", "unknown_id"},
		{"ahead of the stream", stream.FormatID(store.Epoch(), 999), "unknown_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := attach(t, m, "u", tc.lastID)
			wantControl(t, c.next(t, 1)[0], stream.TypeConnected)
			if tc.reset != "" {
				it := c.next(t, 1)[0]
				wantControl(t, it, stream.TypeReset)
				if r := it.Control.Payload.(map[string]string)["reason"]; r != tc.reset {
					t.Fatalf("reset reason %q, want %q", r, tc.reset)
				}
			}
			wantMsgs(t, c.next(t, 5), kept...)
			c.none(t)
			c.s.Close()
		})
	}
}

func TestMultiTabAndIsolation(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{})
	tab1, tab2, other := attach(t, m, "u", ""), attach(t, m, "u", ""), attach(t, m, "v", "")
	for _, c := range []*client{tab1, tab2, other} {
		c.next(t, 1)
	}
	ms := publish(t, m, note("u", 1))
	wantMsgs(t, tab1.next(t, 1), ms[0])
	wantMsgs(t, tab2.next(t, 1), ms[0])
	other.none(t)
	if got := len(m.Connections("u")); got != 2 {
		t.Fatalf("connections of u = %d, want 2", got)
	}
	if c := m.Counts(); c.Connections != 3 || c.Users != 2 || c.Transports["test"] != 3 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestBroadcastExclusions(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{})
	a, b := attach(t, m, "a", ""), attach(t, m, "b", "")
	a.next(t, 1)
	b.next(t, 1)
	p, _ := json.Marshal(map[string]string{"title": "x", "body": "y"})
	ms := publish(t, m, stream.Draft{Type: stream.TypeNotification, Exclude: []string{"b"}, Payload: p})
	wantMsgs(t, a.next(t, 1), ms[0])
	b.none(t)
}

func TestSlowConsumerCutOffOthersUnaffected(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{QueueLimit: 10})
	slow, fast := attach(t, m, "u", ""), attach(t, m, "u", "")
	fast.next(t, 1)
	var all []*stream.Message
	for i := range 30 {
		all = append(all, publish(t, m, note("u", i))...)
		fast.next(t, 1)
	}
	select {
	case <-slow.s.Done():
	case <-time.After(time.Second):
		t.Fatal("slow session not cut off")
	}
	if r := slow.s.CloseReason(); r.Kind != stream.CloseSlow {
		t.Fatalf("close reason %+v", r)
	}
	if m.Metrics().SlowConsumerKicks != 1 {
		t.Fatalf("kicks = %d", m.Metrics().SlowConsumerKicks)
	}
	if n := len(m.Connections("u")); n != 1 {
		t.Fatalf("slow session still registered: %d connections", n)
	}
	// It resumes and catches up.
	c := attach(t, m, "u", all[5].ID)
	items := c.next(t, 25)
	wantMsgs(t, items[1:], all[6:]...)
}

func TestQueuedDashboardUpdatesConflate(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{QueueLimit: 3})
	c := attach(t, m, "u", "")
	c.next(t, 1)
	// The updates arrive while the pump is stuck in a write, as on a socket
	// the peer does not read: they wait in the queue, where they conflate.
	release := c.hold(t)
	var last []*stream.Message
	for i := range 50 {
		p, _ := json.Marshal(map[string]any{"widgetId": "w", "data": i})
		last = publish(t, m, stream.Draft{Type: stream.TypeDashboardUpdate, UserID: "u", Key: "w", Payload: p})
	}
	// Dispatch runs behind the store: wait until all 50 were handed over
	// while the client read nothing (a queue of 3 with 50 updates queued).
	deadline := time.Now().Add(5 * time.Second)
	for m.Metrics().Dispatched < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("dispatched %d of 50", m.Metrics().Dispatched)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-c.s.Done():
		t.Fatal("a busy widget cut the session off")
	default:
	}
	release()
	wantMsgs(t, c.next(t, 1), last[0])
	c.none(t)
}

func TestDisconnectUser(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{})
	a1, a2, b := attach(t, m, "a", ""), attach(t, m, "a", ""), attach(t, m, "b", "")
	if n := m.DisconnectUser("a", "maintenance"); n != 2 {
		t.Fatalf("disconnected %d, want 2", n)
	}
	for _, c := range []*client{a1, a2} {
		<-c.s.Done()
		if r := c.s.CloseReason(); r.Kind != stream.CloseDisconnect || r.Reason != "maintenance" {
			t.Fatalf("reason %+v", r)
		}
	}
	select {
	case <-b.s.Done():
		t.Fatal("other user disconnected")
	default:
	}
	if n := m.DisconnectUser("nobody", "x"); n != 0 {
		t.Fatalf("disconnected %d of nobody", n)
	}
}

// TestConcurrentSessionsRace exercises attach, publish, broadcast and
// disconnect together under -race.
func TestConcurrentSessionsRace(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = m.Publish(ctx, []stream.Draft{note(fmt.Sprint("u", i%5), w)})
			}
		}()
	}
	for i := range 50 {
		c := attach(t, m, fmt.Sprint("u", i%5), "")
		c.next(t, 1)
		if i%7 == 0 {
			m.DisconnectUser(fmt.Sprint("u", i%5), "x")
		}
		_ = m.Counts()
		c.s.Close()
	}
	close(stop)
	wg.Wait()
}

// gatedStore holds the feed back until released: a dispatcher lagging
// behind the store, as with PostgreSQL's tail or a busy memory store.
type gatedStore struct {
	stream.Store
	gate chan struct{}
}

func (g *gatedStore) SetFeed(feed func([]*stream.Message)) {
	g.Store.SetFeed(func(b []*stream.Message) {
		<-g.gate
		feed(b)
	})
}

// TestLaggingDispatcherNoDuplicates: a message the client got by replay
// must not be sent again when the dispatcher delivers it late.
func TestLaggingDispatcherNoDuplicates(t *testing.T) {
	g := &gatedStore{Store: persist.NewMemory(big()), gate: make(chan struct{})}
	m := stream.NewManager(g, stream.Config{})
	defer m.Shutdown(ctx)
	ms := publish(t, m, note("u", 1), note("u", 2))
	first := attach(t, m, "u", "")
	wantMsgs(t, first.next(t, 3)[1:], ms...) // by replay: the feed has not run
	first.s.Close()
	second := attach(t, m, "u", ms[1].ID)
	second.next(t, 1) // connected
	close(g.gate)     // the dispatcher now delivers 1 and 2
	later := publish(t, m, note("u", 3))
	wantMsgs(t, second.next(t, 1), later[0])
	second.none(t)
}

// failingCursors is a memory store whose MarkDelivered fails while fail is
// set, as PostgreSQL's would during an outage.
type failingCursors struct {
	*persist.Memory
	fail atomic.Bool
}

func (f *failingCursors) MarkDelivered(ctx context.Context, ds []stream.Delivery) error {
	if f.fail.Load() {
		return stream.ErrUnavailable
	}
	return f.Memory.MarkDelivered(ctx, ds)
}

// A failed cursor flush is retried with what was delivered meanwhile: the
// store ends with the newest cursor and every first delivery counted once.
func TestCursorFlushRetriedAfterFailure(t *testing.T) {
	store := &failingCursors{Memory: persist.NewMemory(big())}
	m := stream.NewManager(store, stream.Config{FlushInterval: time.Hour})
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	c := attach(t, m, "u", "")
	c.next(t, 1) // connected
	first := publish(t, m, note("u", 1), note("u", 2))
	c.next(t, 2)
	store.fail.Store(true)
	m.FlushCursors()
	if m.Metrics().CursorFlushErrors != 1 {
		t.Fatalf("flush errors = %d, want 1", m.Metrics().CursorFlushErrors)
	}
	later := publish(t, m, note("u", 3))
	c.next(t, 1)
	store.fail.Store(false)
	m.FlushCursors()
	seq, known, err := store.DeliveredCursor(ctx, "u")
	if err != nil || !known || seq != later[0].Seq {
		t.Fatalf("store cursor = %d (known %v, %v), want %d", seq, known, err, later[0].Seq)
	}
	qs, _ := store.QueueStats(ctx)
	if qs.DeliveredMessages != 3 {
		t.Fatalf("delivered count = %d, want 3 (first: %d, %d)", qs.DeliveredMessages, first[0].Seq, first[1].Seq)
	}
}

// blockedTransport's writes say they began on writing, then wait until
// release is closed.
type blockedTransport struct{ writing, release chan struct{} }

func (b blockedTransport) Write([]stream.Item) error {
	select {
	case b.writing <- struct{}{}:
	default:
	}
	<-b.release
	return nil
}

func (b blockedTransport) Finish(stream.CloseReason) {}

// TestShutdownReportsDrain: Shutdown returns ctx's error while a session is
// still writing at the deadline, and nil once every session has finished.
func TestShutdownReportsDrain(t *testing.T) {
	m, _ := newManager(t, big(), stream.Config{})
	s := m.NewSession("u", "test", "127.0.0.1:1", "go-test")
	if err := m.Attach(ctx, s, ""); err != nil {
		t.Fatal(err)
	}
	bt := blockedTransport{writing: make(chan struct{}, 1), release: make(chan struct{})}
	s.Start(bt)
	<-bt.writing // the connected event's write blocks
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := m.Shutdown(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a session stuck writing: %v, want context.DeadlineExceeded", err)
	}
	close(bt.release)
	if err := m.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown once the session could finish: %v, want nil (drained)", err)
	}
}
