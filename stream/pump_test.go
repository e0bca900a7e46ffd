package stream_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/connwrite"
	"github.com/pushd/pushd/internal/loopback"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

func newTestSession(t *testing.T) (*stream.Manager, *stream.Session) {
	t.Helper()
	m := stream.NewManager(persist.NewMemory(stream.Retention{MaxCount: 10000, TTL: time.Hour}), stream.Config{QueueLimit: 1 << 20})
	s := m.NewSession("u1", "test", "", "")
	if err := m.Attach(ctx, s, ""); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// lineTransport writes each message's seq on a line through a connwrite.Writer,
// inline when it can (stream.InlineWriter), like the SSE and WS transports.
type lineTransport struct {
	w               *connwrite.Writer
	inline, refused atomic.Int64 // TryWrite calls: all written / some kept
}

func lines(bufs net.Buffers, items []stream.Item) net.Buffers {
	for _, it := range items {
		if it.Msg != nil {
			bufs = append(bufs, it.Msg.Encoding(stream.SlotWSFrame, func(p []byte) []byte { // the only transport here
				// Padded so the socket fills after a few hundred messages.
				return []byte(strconv.FormatUint(it.Msg.Seq, 10) + " " + string(bytes.Repeat([]byte("."), 900)) + "\n")
			}))
		}
	}
	return bufs
}

func (l *lineTransport) Write(items []stream.Item) error {
	return l.w.Send(func(b net.Buffers) net.Buffers { return lines(b, items) })
}

func (l *lineTransport) TryWrite(items []stream.Item) (bool, error) {
	complete, err := l.w.TrySend(func(b net.Buffers) net.Buffers { return lines(b, items) })
	if complete {
		l.inline.Add(1)
	} else {
		l.refused.Add(1)
	}
	return complete, err
}

func (l *lineTransport) Finish(stream.CloseReason) {}

// The dispatcher writes inline until a socket is full; a pump then waits for
// the peer and writes the rest. A peer that reads late still gets every
// message once, in order, and each counts as delivered once.
func TestInlineWritesHandOverToThePump(t *testing.T) {
	conn, peer := loopback.SmallSendBuffer(t)
	m, s := newTestSession(t)
	lt := &lineTransport{w: connwrite.New(conn, 10*time.Second)}
	s.Start(lt)

	const n, first = 3000, 20
	p, _ := json.Marshal(map[string]string{"title": "t", "body": "b"})
	r := bufio.NewReader(peer)
	_ = peer.SetReadDeadline(time.Now().Add(30 * time.Second))
	expect := func(i int, want uint64) {
		t.Helper()
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", i, n, err)
		}
		var got uint64
		if _, err := fmt.Sscan(line, &got); err != nil || got != want {
			t.Fatalf("message %d: got seq %d (%v), want %d", i, got, err, want)
		}
	}
	var seqs []uint64
	for i := 0; i < n; i++ {
		msgs, err := m.Publish(ctx, []stream.Draft{{UserID: "u1", Type: stream.TypeNotification, Payload: p}})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, msgs[0].Seq)
		if i < first {
			expect(i, msgs[0].Seq) // read as it comes: written inline
		}
	}
	// The rest was published while nobody read: the socket filled.
	for i := first; i < n; i++ {
		expect(i, seqs[i])
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Metrics().Delivered != n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if d := m.Metrics().Delivered; d != n {
		t.Fatalf("delivered counter = %d, want %d", d, n)
	}
	if lt.inline.Load() == 0 || lt.refused.Load() == 0 {
		t.Fatalf("inline writes: %d complete, %d partly refused; the test needs both", lt.inline.Load(), lt.refused.Load())
	}
}

// recordingTransport records the seqs written; every third TryWrite keeps
// its items for the next Write, as a full socket would.
type recordingTransport struct {
	mu      sync.Mutex
	seqs    []uint64
	pending []uint64
	tries   int
}

func msgSeqs(items []stream.Item) []uint64 {
	var out []uint64
	for _, it := range items {
		if it.Msg != nil {
			out = append(out, it.Msg.Seq)
		}
	}
	return out
}

func (r *recordingTransport) TryWrite(items []stream.Item) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	if r.tries%3 == 0 {
		r.pending = append(r.pending, msgSeqs(items)...)
		return false, nil
	}
	r.seqs = append(r.seqs, msgSeqs(items)...)
	return true, nil
}

func (r *recordingTransport) Write(items []stream.Item) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seqs = append(r.seqs, r.pending...)
	r.pending = nil
	r.seqs = append(r.seqs, msgSeqs(items)...)
	return nil
}

func (r *recordingTransport) Finish(stream.CloseReason) {}

// Fan-outs big enough to be split over several writers, published both
// slowly (one message per connection per round) and in bursts (several,
// where the writers are halved): every connection gets every message once,
// in order.
func TestParallelFanoutWritersKeepOrder(t *testing.T) {
	m := stream.NewManager(persist.NewMemory(stream.Retention{MaxCount: 10000, TTL: time.Hour}), stream.Config{QueueLimit: 1 << 20, Writers: 4})
	const conns, msgs = 600, 300
	trs := make([]*recordingTransport, conns)
	for i := range trs {
		s := m.NewSession(fmt.Sprint("u", i), "test", "", "")
		if err := m.Attach(ctx, s, ""); err != nil {
			t.Fatal(err)
		}
		trs[i] = &recordingTransport{}
		s.Start(trs[i])
	}
	p, _ := json.Marshal(map[string]string{"title": "t", "body": "b"})
	var want []uint64
	for i := 0; i < msgs; i++ {
		out, err := m.Publish(ctx, []stream.Draft{{Type: stream.TypeNotification, Payload: p}})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, out[0].Seq)
		if i < msgs/3 {
			time.Sleep(time.Millisecond) // slow rounds first, then a burst
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for i, tr := range trs {
		for {
			tr.mu.Lock()
			n := len(tr.seqs)
			tr.mu.Unlock()
			if n >= msgs || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		tr.mu.Lock()
		got := slices.Clone(tr.seqs)
		tr.mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("connection %d got %d messages, want %d in order (first: %v)", i, len(got), len(want), got[:min(len(got), 5)])
		}
	}
}
