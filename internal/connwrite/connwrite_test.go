package connwrite

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/loopback"
)

// A non-blocking write keeps what the socket refused and the next blocking
// write sends it first: the peer reads every byte once, in order, even when
// the socket filled up in the middle of a frame.
func TestTrySendKeepsWhatTheSocketRefuses(t *testing.T) {
	conn, peer := loopback.SmallSendBuffer(t)
	w := New(conn, 5*time.Second)

	var want bytes.Buffer
	chunk := func(i int) []byte {
		return bytes.Repeat([]byte{byte('a' + i%26)}, 3000+i)
	}
	refused := false
	for i := 0; i < 1000 && !refused; i++ {
		a, b := chunk(2*i), chunk(2*i+1)
		want.Write(a)
		want.Write(b)
		complete, err := w.TrySend(func(bufs net.Buffers) net.Buffers { return append(bufs, a, b) })
		if err != nil {
			t.Fatal(err)
		}
		refused = !complete
	}
	if !refused {
		t.Fatal("the socket never refused a write: the test did not exercise the partial path")
	}
	// While something is pending, a further TrySend must queue behind it,
	// not overtake it.
	extra := []byte("after-the-pending-bytes")
	want.Write(extra)
	if complete, err := w.TrySend(func(bufs net.Buffers) net.Buffers { return append(bufs, extra) }); err != nil || complete {
		t.Fatalf("TrySend with bytes pending = %v, %v; want kept for later", complete, err)
	}

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	last := []byte("last")
	want.Write(last)
	if err := w.Send(func(bufs net.Buffers) net.Buffers { return append(bufs, last) }); err != nil {
		t.Fatal(err)
	}
	final := []byte("final")
	want.Write(final)
	w.Final(final, time.Second)
	conn.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d (first difference at %d)", len(b), want.Len(), firstDiff(b, want.Bytes()))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Final after a partial write completes the interrupted frame before the
// close frame, so a WebSocket peer sees a valid close.
func TestFinalWritesPendingFirst(t *testing.T) {
	conn, peer := loopback.SmallSendBuffer(t)
	w := New(conn, 5*time.Second)
	var want bytes.Buffer
	big := bytes.Repeat([]byte("x"), 64<<10)
	for {
		want.Write(big)
		complete, err := w.TrySend(func(bufs net.Buffers) net.Buffers { return append(bufs, big) })
		if err != nil {
			t.Fatal(err)
		}
		if !complete {
			break
		}
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	want.WriteString("close")
	w.Final([]byte("close"), 5*time.Second)
	conn.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d", len(b), want.Len())
	}
}

// An expired write deadline from an earlier write must not fail a later
// non-blocking write: the writer re-arms it first.
func TestTrySendAfterDeadlineExpired(t *testing.T) {
	conn, peer := loopback.SmallSendBuffer(t)
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	w := New(conn, 20*time.Millisecond)
	if err := w.Send(func(bufs net.Buffers) net.Buffers { return append(bufs, []byte("one")) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if complete, err := w.TrySend(func(bufs net.Buffers) net.Buffers { return append(bufs, []byte("two")) }); err != nil || !complete {
		t.Fatalf("TrySend after the deadline passed = %v, %v; want written", complete, err)
	}
}

// Abort fails a write blocked on a peer that reads nothing, and every Send
// begun after it, at once instead of after the write timeout.
func TestAbortFailsABlockedWrite(t *testing.T) {
	conn, _ := loopback.SmallSendBuffer(t)
	w := New(conn, time.Minute)
	big := bytes.Repeat([]byte("x"), 64<<10)
	failed := make(chan error, 1)
	go func() {
		for {
			if err := w.Send(func(bufs net.Buffers) net.Buffers { return append(bufs, big) }); err != nil {
				failed <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // the socket is full: Send blocks
	w.Abort()
	select {
	case err := <-failed:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked Send failed with %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Abort did not fail the blocked Send")
	}
	start := time.Now()
	if err := w.Send(func(bufs net.Buffers) net.Buffers { return append(bufs, big) }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send after Abort = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Send after Abort took %v", d)
	}
}
