package stream

import (
	"net"
	"sync"
	"time"
)

// ConnWriter writes a started session's frames to a socket the transport
// owns (a hijacked SSE connection, a WebSocket): several frames in one
// writev, a write deadline, and no write left blocked on a peer that was cut
// off as too slow. Only the session's pump calls Send.
type ConnWriter struct {
	conn     net.Conn
	timeout  time.Duration
	s        *Session
	deadline time.Time // in force (pump goroutine only)
}

// NewConnWriter returns a writer of s's frames to conn; one write may block
// for at most timeout.
func NewConnWriter(s *Session, conn net.Conn, timeout time.Duration) *ConnWriter {
	return &ConnWriter{conn: conn, timeout: timeout, s: s}
}

var buffersPool = sync.Pool{New: func() any { return new(net.Buffers) }}

// Send writes the buffers fill appends (to a pooled, empty list) in one go.
func (w *ConnWriter) Send(fill func(net.Buffers) net.Buffers) error {
	bp := buffersPool.Get().(*net.Buffers)
	bufs := fill((*bp)[:0])
	err := w.write(bufs)
	clear(bufs[:cap(bufs)])
	*bp = bufs[:0]
	buffersPool.Put(bp)
	return err
}

func (w *ConnWriter) write(bufs net.Buffers) error {
	// Re-arm only when the deadline in force is half spent: setting it is
	// timer work that showed up on every write of a fan-out profile.
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		_ = w.conn.SetWriteDeadline(w.deadline)
	}
	if w.s.CloseReason().Kind == CloseSlow {
		// Cut off while this write was being prepared: Abort may have run
		// before the deadline above replaced its own.
		w.Abort()
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
func (w *ConnWriter) Abort() { _ = w.conn.SetWriteDeadline(time.Now()) }
