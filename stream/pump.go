package stream

// Transport is a connection that Session.Start drives.
//
// Sessions started with a Transport need no goroutine while idle: when
// something is queued, a pump goroutine is started on demand, writes
// everything queued in one coalesced write, and exits when the queue is
// empty. Only one pump runs per session at a time, so the transport has a
// single writer (gorilla/websocket's rule, and no interleaved SSE frames).
type Transport interface {
	// Write sends items to the peer (with a write deadline). An error ends
	// the session as ClosePeer.
	Write(items []Item) error
	// Finish closes the connection once the session has ended; for
	// CloseDisconnect everything queued was written first. It runs once, on
	// the pump goroutine.
	Finish(reason CloseReason)
}

type transportBox struct{ t Transport }

// Start hands the session to t: from now on queued items are written by the
// pump. Call it after Attach.
func (s *Session) Start(t Transport) {
	s.m.live.Add(1)
	s.transport.Store(&transportBox{t})
	s.schedule()
}

func (s *Session) schedule() {
	if s.pumping.CompareAndSwap(false, true) {
		go s.pump()
	}
}

func (s *Session) take() ([]Item, CloseReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := s.takeLocked(s.spare[:0])
	s.spare = nil
	return items, s.closed
}

func (s *Session) pump() {
	t := s.transport.Load().t
	for {
		items, closed := s.take()
		if closed.Kind != CloseNone && (closed.Kind != CloseDisconnect || len(items) == 0) {
			s.finish(t, closed)
			return // pumping stays set: nothing restarts a finished session
		}
		if len(items) == 0 {
			s.pumping.Store(false)
			s.mu.Lock()
			more := len(s.queue) > 0 || s.closed.Kind != CloseNone
			s.mu.Unlock()
			if more && s.pumping.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		if err := t.Write(items); err != nil {
			s.end(CloseReason{Kind: ClosePeer, Reason: err.Error()})
			s.m.detach(s)
			s.finish(t, s.CloseReason())
			return
		}
		s.Written(items)
		clear(items)
		if cap(items) <= 256 {
			s.mu.Lock()
			s.spare = items[:0]
			s.mu.Unlock()
		}
	}
}

func (s *Session) finish(t Transport, r CloseReason) {
	s.m.detach(s)
	t.Finish(r)
	s.m.live.Done()
}
