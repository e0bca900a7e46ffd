package stream

import (
	"errors"
	"os"
	"time"
)

// Transport is a connection that Session.Start drives.
//
// Sessions started with a Transport need no goroutine while idle: when
// something is queued, a pump goroutine is started on demand, writes
// everything queued in one coalesced write, and exits when the queue is
// empty. Only one pump runs per session at a time, so the transport has a
// single writer (gorilla/websocket's rule, and no interleaved SSE frames).
type Transport interface {
	// Write sends items to the peer (with a write deadline), after whatever
	// an earlier TryWrite left over. An error ends the session as ClosePeer.
	Write(items []Item) error
	// Finish closes the connection once the session has ended; for
	// CloseDisconnect everything queued was written first. It runs once, on
	// the pump goroutine.
	Finish(reason CloseReason)
}

// InlineWriter is a Transport that can also write without blocking. The
// dispatcher then writes a fan-out itself, socket after socket, instead of
// starting a goroutine per connection, which would cost about as much CPU
// as the write it makes. Only a socket whose buffer is full gets a pump
// goroutine, which waits for it.
type InlineWriter interface {
	Transport
	// TryWrite writes items as far as the socket takes them at once and
	// keeps the rest for the next Write; it reports whether all went out.
	TryWrite(items []Item) (complete bool, err error)
}

type transportBox struct{ t Transport }

// Start hands the session to t: from now on queued items are written by the
// pump. Call it after Attach.
func (s *Session) Start(t Transport) {
	s.manager.live.Add(1)
	s.startedAt = time.Now()
	s.manager.counters.connects[s.tr].Add(1)
	s.manager.log.Info("connect", "user", s.Info.UserID, "connection", s.Info.ID, "transport", s.Info.Transport, "remote", s.Info.RemoteAddr)
	s.transport.Store(&transportBox{t})
	s.schedule()
}

func (s *Session) schedule() {
	if s.pumping.CompareAndSwap(false, true) {
		go s.pump()
	}
}

// writeNow writes what is queued on the calling goroutine if the transport
// can do so without blocking; a pump goroutine takes over only for what the
// socket would not take, or to finish a closed session. The caller must not
// hold locks a slow path could need (the dispatcher calls it after
// releasing the manager's).
func (s *Session) writeNow() {
	box := s.transport.Load()
	if box == nil {
		return // not started: Start writes what is queued
	}
	iw, ok := box.t.(InlineWriter)
	if !ok {
		s.schedule()
		return
	}
	if !s.pumping.CompareAndSwap(false, true) {
		return // a pump is running; it will find the queue
	}
	s.mu.Lock()
	if s.closed.Kind != CloseNone {
		s.mu.Unlock()
		go s.pump()
		return
	}
	items := s.takeLocked()
	s.mu.Unlock()
	if len(items) == 0 {
		s.idle(items)
		return
	}
	complete, err := iw.TryWrite(items)
	if err != nil {
		s.writeFailed(err)
		// Finish may write a close frame (up to its own deadline): not on
		// the dispatcher's goroutine.
		go s.finish(iw, s.CloseReason())
		return
	}
	if !complete {
		s.unconfirmed = items // the pump reports them once the rest is out
		go s.pump()
		return
	}
	s.written(items)
	s.idle(items)
}

// idle recycles items and gives up the writer role, taking it back when
// something was queued meanwhile.
func (s *Session) idle(items []Item) {
	recycle(items)
	if s.release() {
		s.schedule()
	}
}

// release gives up the writer role and reports whether something was
// queued (or the session ended) meanwhile, which needs a writer again.
func (s *Session) release() bool {
	s.pumping.Store(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0 || s.closed.Kind != CloseNone
}

func (s *Session) take() ([]Item, CloseReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLocked(), s.closed
}

func (s *Session) pump() {
	t := s.transport.Load().t
	for {
		items, closed := s.take()
		if closed.Kind != CloseNone && (closed.Kind != CloseDisconnect || len(items) == 0 && s.unconfirmed == nil) {
			s.finish(t, closed)
			return // pumping stays set: nothing restarts a finished session
		}
		if len(items) == 0 && s.unconfirmed == nil {
			if s.release() && s.pumping.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		if err := t.Write(items); err != nil {
			s.writeFailed(err)
			s.finish(t, s.CloseReason())
			return
		}
		if s.unconfirmed != nil {
			s.written(s.unconfirmed)
			recycle(s.unconfirmed)
			s.unconfirmed = nil
		}
		s.written(items)
		recycle(items)
	}
}

func (s *Session) finish(t Transport, r CloseReason) {
	s.manager.detach(s)
	t.Finish(r)
	reason := reasonIndex(r.Kind)
	s.manager.counters.disconnects[reason].Add(1)
	attrs := []any{"user", s.Info.UserID, "connection", s.Info.ID, "transport", s.Info.Transport, "remote", s.Info.RemoteAddr,
		"reason", DisconnectReasons[reason], "duration", time.Since(s.startedAt).Round(time.Millisecond)}
	if r.Kind == ClosePeer && r.Reason != peerClosed {
		attrs = append(attrs, "err", r.Reason) // a failed write: a delivery error
	}
	s.manager.log.Info("disconnect", attrs...)
	s.manager.live.Done()
}

// writeFailed ends the session after a failed write: a write that timed out
// met a peer that does not read (a slow consumer); any other error is the
// peer gone.
func (s *Session) writeFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if s.end(CloseReason{Kind: CloseSlow, Reason: "write timed out"}) {
			s.manager.slowKicks.Add(1)
		}
	} else {
		s.end(CloseReason{Kind: ClosePeer, Reason: err.Error()})
	}
	s.manager.detach(s)
}
