// Package connwrite writes frames to a socket a transport took over (a
// hijacked SSE connection, a WebSocket): several frames in one writev, a
// write deadline re-armed sparingly, non-blocking writes that keep what the
// socket refused, and a way to cut off a write blocked on a peer that does
// not read. It knows nothing of sessions or wire formats; sse and ws share
// it.
package connwrite

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writer writes frames to a connection: several frames in one writev, a
// write deadline, and no write left blocked on a peer that was cut off as
// too slow.
//
// Send, TrySend and Final are for one goroutine at a time, the connection's
// single writer (a session's pump or the dispatcher writing inline); Abort
// and AbortAfter are safe for concurrent use with them and with each other.
type Writer struct {
	conn     net.Conn
	raw      syscall.RawConn // nil when conn has no descriptor (TLS)
	timeout  time.Duration
	deadline time.Time   // in force (writer only)
	pending  net.Buffers // what a TrySend left unwritten, sent first next (writer only)
	// aborted is set by AbortAfter, after grace: a write begun later must
	// not replace the abort's short deadline with a full one.
	aborted atomic.Bool
	grace   atomic.Int64 // AbortAfter's delay, for writes begun after it
}

// New returns a writer of frames to conn; one write may block for at most
// timeout.
func New(conn net.Conn, timeout time.Duration) *Writer {
	w := &Writer{conn: conn, timeout: timeout}
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.raw = rc
		}
	}
	return w
}

var buffersPool = sync.Pool{New: func() any { return new(net.Buffers) }}

// Send writes what TrySend left over, then the buffers fill appends,
// blocking until done or the deadline.
func (w *Writer) Send(fill func(net.Buffers) net.Buffers) error {
	bp, bufs := getBuffers(w.pending, fill)
	w.pending = nil
	err := w.write(bufs)
	putBuffers(bp, bufs)
	return err
}

// TrySend writes the buffers fill appends as far as the socket takes them
// without waiting; the rest is kept for the next Send. It reports whether
// everything went out.
func (w *Writer) TrySend(fill func(net.Buffers) net.Buffers) (bool, error) {
	bp, bufs := getBuffers(nil, fill)
	complete, err := w.tryWrite(bufs)
	putBuffers(bp, bufs)
	return complete, err
}

// getBuffers returns head and then what fill appends, in a pooled list that
// putBuffers gives back.
func getBuffers(head net.Buffers, fill func(net.Buffers) net.Buffers) (*net.Buffers, net.Buffers) {
	bp := buffersPool.Get().(*net.Buffers)
	return bp, fill(append((*bp)[:0], head...))
}

func putBuffers(bp *net.Buffers, bufs net.Buffers) {
	clear(bufs[:cap(bufs)])
	*bp = bufs[:0]
	buffersPool.Put(bp)
}

func (w *Writer) tryWrite(bufs net.Buffers) (bool, error) {
	if w.raw == nil || len(w.pending) > 0 {
		w.keep(bufs, 0)
		return false, nil
	}
	if !w.deadline.IsZero() {
		// A non-blocking write needs no deadline, and one left by a Send
		// would fail it once expired. Cleared once here rather than
		// re-armed on every write: each arm is a runtime timer that fires
		// later, steady work across many mostly idle connections.
		w.deadline = time.Time{}
		_ = w.conn.SetWriteDeadline(time.Time{})
	}
	var n int
	var errno error
	err := w.raw.Write(func(fd uintptr) bool {
		if len(bufs) == 1 {
			n, errno = unix.Write(int(fd), bufs[0])
		} else {
			n, errno = writev(int(fd), bufs)
		}
		return true // never wait for writability: a later Send does that
	})
	if err != nil {
		return false, err // deadline passed (cut off as slow) or closed
	}
	n = max(n, 0)
	if errno != nil && !errors.Is(errno, unix.EAGAIN) && !errors.Is(errno, unix.EINTR) {
		return false, errno
	}
	size := 0
	for _, b := range bufs {
		size += len(b)
	}
	if n >= size {
		return true, nil
	}
	w.keep(bufs, n)
	return false, nil
}

// maxIovecs is Linux's IOV_MAX; what does not fit is kept for the next Send.
const maxIovecs = 1024

var iovecPool = sync.Pool{New: func() any { return new([]unix.Iovec) }}

// writev is unix.Writev without its allocation per call.
func writev(fd int, bufs net.Buffers) (int, error) {
	p := iovecPool.Get().(*[]unix.Iovec)
	iov := (*p)[:0]
	for _, b := range bufs[:min(len(bufs), maxIovecs)] {
		if len(b) > 0 {
			v := unix.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
	}
	var n uintptr
	var errno syscall.Errno
	if len(iov) > 0 {
		n, _, errno = unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	}
	clear(iov)
	*p = iov[:0]
	iovecPool.Put(p)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// keep appends what is left of bufs after the first written bytes to
// pending. The slices are frames nobody modifies, so keeping them is safe.
func (w *Writer) keep(bufs net.Buffers, written int) {
	for _, b := range bufs {
		if written >= len(b) {
			written -= len(b)
			continue
		}
		w.pending = append(w.pending, b[written:])
		written = 0
	}
}

// Final writes what is pending and then frame (a close frame) within
// timeout, ignoring errors: the connection is being closed.
func (w *Writer) Final(frame []byte, timeout time.Duration) {
	bufs := append(w.pending, frame)
	w.pending = nil
	w.deadline = time.Now().Add(timeout)
	_ = w.conn.SetWriteDeadline(w.deadline)
	_, _ = bufs.WriteTo(w.conn)
}

func (w *Writer) armDeadline() {
	// Re-arm only when the deadline in force is half spent: setting it is
	// timer work that showed up on every write of a fan-out profile.
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		_ = w.conn.SetWriteDeadline(w.deadline)
	}
}

func (w *Writer) write(bufs net.Buffers) error {
	w.armDeadline()
	if w.aborted.Load() {
		// Cut off while this write was being prepared: Abort may have run
		// before the deadline above replaced its own.
		w.deadline = time.Now().Add(time.Duration(w.grace.Load()))
		_ = w.conn.SetWriteDeadline(w.deadline)
	}
	if len(bufs) == 1 {
		_, err := w.conn.Write(bufs[0]) // write(2): cheaper than a one-element writev
		return err
	}
	_, err := bufs.WriteTo(w.conn)
	return err
}

// Abort makes a write blocked on a peer that does not read fail at once, and
// so does every later Send. It is safe from any goroutine (a session's OnEnd
// hook calls it when the session is cut off as too slow).
func (w *Writer) Abort() { w.AbortAfter(0) }

// AbortAfter makes a write blocked on a peer that does not read fail after
// d: time for the frame in flight to end, so a close frame can follow it.
// Every later Send gets the same short deadline. It is safe from any
// goroutine.
func (w *Writer) AbortAfter(d time.Duration) {
	w.grace.Store(int64(d))
	w.aborted.Store(true)
	_ = w.conn.SetWriteDeadline(time.Now().Add(d))
}
