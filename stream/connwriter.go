package stream

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

// ConnWriter writes a started session's frames to a socket the transport
// owns (a hijacked SSE connection, a WebSocket): several frames in one
// writev, a write deadline, and no write left blocked on a peer that was cut
// off as too slow. Only the session's current writer (see pump.go) calls it.
type ConnWriter struct {
	conn     net.Conn
	raw      syscall.RawConn // nil when conn has no descriptor (TLS)
	timeout  time.Duration
	s        *Session
	deadline time.Time    // in force
	pending  net.Buffers  // what a TrySend left unwritten, sent first next
	grace    atomic.Int64 // AbortAfter's delay, for writes begun after it
}

// NewConnWriter returns a writer of s's frames to conn; one write may block
// for at most timeout.
func NewConnWriter(s *Session, conn net.Conn, timeout time.Duration) *ConnWriter {
	w := &ConnWriter{conn: conn, timeout: timeout, s: s}
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
func (w *ConnWriter) Send(fill func(net.Buffers) net.Buffers) error {
	bp, bufs := getBuffers(w.pending, fill)
	w.pending = nil
	err := w.write(bufs)
	putBuffers(bp, bufs)
	return err
}

// TrySend writes the buffers fill appends as far as the socket takes them
// without waiting; the rest is kept for the next Send. It reports whether
// everything went out.
func (w *ConnWriter) TrySend(fill func(net.Buffers) net.Buffers) (bool, error) {
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

func (w *ConnWriter) tryWrite(bufs net.Buffers) (bool, error) {
	if w.raw == nil || len(w.pending) > 0 {
		w.keep(bufs, 0)
		return false, nil
	}
	if !w.deadline.IsZero() {
		// A non-blocking write needs no deadline, and one left by a pump
		// would fail it once expired. Cleared once here rather than
		// re-armed on every write: each arm is a runtime timer that fires
		// later, which for 10 000 mostly idle connections was steady work.
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
		return true // never wait for writability: a pump does that
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

// maxIovecs is Linux's IOV_MAX; what does not fit is left to the pump.
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
func (w *ConnWriter) keep(bufs net.Buffers, written int) {
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
func (w *ConnWriter) Final(frame []byte, timeout time.Duration) {
	bufs := append(w.pending, frame)
	w.pending = nil
	w.deadline = time.Now().Add(timeout)
	_ = w.conn.SetWriteDeadline(w.deadline)
	_, _ = bufs.WriteTo(w.conn)
}

func (w *ConnWriter) armDeadline() {
	// Re-arm only when the deadline in force is half spent: setting it is
	// timer work that showed up on every write of a fan-out profile.
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		_ = w.conn.SetWriteDeadline(w.deadline)
	}
}

func (w *ConnWriter) write(bufs net.Buffers) error {
	w.armDeadline()
	if w.s.CloseReason().Kind == CloseSlow {
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

// Abort makes a write blocked on a peer that does not read fail at once.
// Safe from any goroutine (the session's OnEnd hook).
func (w *ConnWriter) Abort() { w.AbortAfter(0) }

// AbortAfter makes a write blocked on a peer that does not read fail after
// d: time for the frame in flight to end, so a close frame can follow it.
// Safe from any goroutine.
func (w *ConnWriter) AbortAfter(d time.Duration) {
	w.grace.Store(int64(d))
	_ = w.conn.SetWriteDeadline(time.Now().Add(d))
}
