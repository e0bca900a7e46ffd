package stream

import (
	"sync"
	"sync/atomic"
	"time"
)

// Item is one queued outbound event: a stored message or a control event
// (whose Raw, when set, is transport bytes written as they are). Two words,
// because a burst queues millions of them.
type Item struct {
	Msg     *Message
	Control *Control
}

// CloseKind says why the manager ended a session.
type CloseKind int

const (
	// CloseNone means the session is open.
	CloseNone CloseKind = iota
	// CloseSlow means its queue overflowed, or a write timed out on a peer
	// that does not read; the client should resume.
	CloseSlow
	// CloseDisconnect means it was disconnected through the API; the
	// client must not reconnect. Reason says why.
	CloseDisconnect
	// CloseShutdown means the server is stopping; the client should
	// reconnect.
	CloseShutdown
	// ClosePeer means the transport saw the peer go away, or a write to it
	// fail.
	ClosePeer
	// CloseTimeout means the peer was silent past the heartbeat timeout.
	CloseTimeout
)

// CloseReason is why a session ended.
type CloseReason struct {
	Kind   CloseKind
	Reason string
}

// SessionInfo describes a connection (GET /api/ws/connections/:userId).
type SessionInfo struct {
	ID          string `json:"id"`
	Node        string `json:"node"`
	UserID      string `json:"-"`
	Transport   string `json:"transport"`
	ConnectedAt int64  `json:"connectedAt"`
	RemoteAddr  string `json:"remoteAddr"`
	UserAgent   string `json:"userAgent"`
}

// Session is one subscriber connection as the manager sees it: a bounded
// queue filled by the dispatcher (never blocking it) and drained by the
// transport's writer. It knows nothing of sockets.
//
// A Session is safe for concurrent use by multiple goroutines: the
// dispatcher, the heartbeat loop and the transport's reader call it at
// once. Info is set before the session is shared and never changes. The
// transport's Write, TryWrite and Finish are called by one writer at a time
// (pump.go).
type Session struct {
	Info SessionInfo

	// mu protects the fields below, up to closed. Lock order: Manager.mu
	// before Session.mu (dispatch holds the manager's read lock while it
	// queues).
	mu    sync.Mutex
	queue []Item
	// liveQueued counts the live (non-replay) items in queue, the part
	// bounded by limit.
	liveQueued int
	// queuedByKey maps a conflation key (a dashboard update's widgetId) to
	// the index in queue of its newest message still queued.
	queuedByKey map[string]int
	replaying   bool
	held        []*Message // live messages that arrived during replay
	lastSeq     uint64     // highest Seq queued: the de-duplication point
	closed      CloseReason

	limit   int
	tr      int          // transport index of the counters
	cursors *cursorShard // the user's shard of the delivered cursors
	// liveFrom is the last Seq queued by the replay (set before Start):
	// only messages above it are timed from acknowledgement to write.
	liveFrom  uint64
	startedAt time.Time
	onEnd     func(CloseReason)
	done      chan struct{}
	manager   *Manager

	// transport is set by Start: from then on queued items are written by
	// an on-demand pump (pump.go) or inline by the dispatcher.
	transport atomic.Pointer[transportBox]
	pumping   atomic.Bool
	// unconfirmed are items an inline write did not finish; the pump
	// reports them written once the rest is out (writer only).
	unconfirmed []Item
}

func newSession(m *Manager, info SessionInfo, limit int) *Session {
	return &Session{
		Info:      info,
		limit:     limit,
		tr:        transportIndex(info.Transport),
		cursors:   m.cursors.shard(info.UserID),
		replaying: true,
		done:      make(chan struct{}),
		manager:   m,
	}
}

// Done is closed when the manager ends the session; see CloseReason.
func (s *Session) Done() <-chan struct{} { return s.done }

// CloseReason says why Done was closed.
func (s *Session) CloseReason() CloseReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// takeLocked hands the queue over (without the slots conflation emptied)
// and leaves an empty one (s.mu held). The caller gives the slice back with
// recycle once written.
func (s *Session) takeLocked() []Item {
	items := s.queue
	if len(s.queuedByKey) > 0 {
		kept := items[:0]
		for _, it := range items {
			if it.Msg != nil || it.Control != nil {
				kept = append(kept, it)
			}
		}
		clear(items[len(kept):])
		items = kept
		clear(s.queuedByKey)
	}
	s.queue = nil
	s.liveQueued = 0
	return items
}

// Queue slices come from per-capacity pools and go back once written, so
// an idle connection keeps none and a burst's buffers serve the next burst.
var itemPools [12]sync.Pool // capacities 8 << i

func newItems(n int) []Item {
	for i := range itemPools {
		if c := 8 << i; n <= c {
			if p, ok := itemPools[i].Get().(*[]Item); ok {
				return (*p)[:0]
			}
			return make([]Item, 0, c)
		}
	}
	return make([]Item, 0, n)
}

func recycle(items []Item) {
	c := cap(items)
	for i := range itemPools {
		if 8<<i == c {
			clear(items)
			items = items[:0]
			itemPools[i].Put(&items)
			return
		}
	}
}

// reserveLocked makes room for n more items in the queue (s.mu held).
func (s *Session) reserveLocked(n int) {
	if len(s.queue)+n <= cap(s.queue) {
		return
	}
	q := append(newItems(2*len(s.queue)+n), s.queue...)
	recycle(s.queue)
	s.queue = q
}

func (s *Session) appendLocked(it Item) {
	s.reserveLocked(1)
	s.queue = append(s.queue, it)
}

// written records that the transport wrote items to the socket, so the
// user's delivered cursor can advance.
func (s *Session) written(items []Item) {
	var last uint64
	var acked int64 // of the oldest live message written
	n := 0
	for _, it := range items {
		if it.Msg != nil {
			n++
			last = max(last, it.Msg.Seq)
			if acked == 0 && it.Msg.Seq > s.liveFrom {
				acked = it.Msg.acked.Load()
			}
		}
	}
	if last == 0 {
		return
	}
	s.manager.noteDelivered(s.cursors, s.Info.UserID, items, last, s.tr, n)
	if acked != 0 {
		// One observation per write, of its oldest live message: the
		// histogram costs a clock read per write, not per message.
		if o := s.manager.observer.Load(); o != nil && o.PublishToWrite != nil {
			o.PublishToWrite(time.Duration(monoNow() - acked))
		}
	}
}

// signal starts a writer for what was queued, once the session is started
// (until then Start finds the queue).
func (s *Session) signal() {
	if s.transport.Load() != nil {
		s.schedule()
	}
}

// push queues a control event (connected, reset, heartbeat, disconnect).
func (s *Session) push(c Control) {
	s.queueControl(c)
	s.signal()
}

func (s *Session) queueControl(c Control) {
	s.mu.Lock()
	s.appendLocked(Item{Control: &c})
	s.mu.Unlock()
}

// Send queues a transport-specific control event (a WebSocket error frame).
func (s *Session) Send(c Control) { s.push(c) }

// SendRaw queues bytes the transport writes as they are (protocol frames),
// so they go through the connection's single writer.
func (s *Session) SendRaw(b []byte) { s.push(Control{Raw: b}) }

// Heartbeat queues a heartbeat event; clientTime is echoed when non-zero.
func (s *Session) Heartbeat(clientTime int64) {
	s.queueControl(heartbeat(clientTime))
	s.signal()
}

func heartbeat(clientTime int64) Control {
	p := map[string]int64{"serverTime": NowMillis()}
	if clientTime != 0 {
		p["clientTime"] = clientTime
	}
	return Control{Type: TypeHeartbeat, Payload: p}
}

// skipThrough marks everything up to seq as already held by the client.
func (s *Session) skipThrough(seq uint64) {
	s.mu.Lock()
	s.lastSeq = max(s.lastSeq, seq)
	s.mu.Unlock()
}

// replayed queues a message read from the store during replay; replay is not
// bounded by the live limit (it is at most one user's kept stream).
func (s *Session) replayed(msg *Message) {
	s.mu.Lock()
	if msg.Seq > s.lastSeq {
		s.appendLocked(Item{Msg: msg})
		s.lastSeq = msg.Seq
	}
	s.mu.Unlock()
	s.signal()
}

// goLive ends replay: messages held back meanwhile are queued unless the
// replay already covered them.
func (s *Session) goLive() {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.replaying = false
	s.liveFrom = s.lastSeq
	overflow := false
	for _, msg := range held {
		if !s.enqueueLive(msg) {
			overflow = true
			break
		}
	}
	s.mu.Unlock()
	s.signal()
	if overflow {
		s.manager.kickSlow(s)
	}
}

// deliverAll is called by the dispatcher with messages of this session's
// stream, in order; it never blocks. One lock for all of them, so they go
// out in one write. It reports false when the session overflowed and must
// be cut off, and whether the caller must call writeNow.
func (s *Session) deliverAll(msgs []*Message) (ok, queued bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Kind != CloseNone {
		return true, false
	}
	if s.replaying {
		if len(s.held)+len(msgs) > s.limit {
			return false, false
		}
		s.held = append(s.held, msgs...)
		return true, false
	}
	n := len(s.queue)
	s.reserveLocked(len(msgs))
	for _, msg := range msgs {
		if !s.enqueueLive(msg) {
			return false, false
		}
	}
	return true, len(s.queue) > n
}

// enqueueLive queues msg (s.mu held). A dashboard update still queued for the
// same widget is replaced, so a busy widget costs one slot, not many.
func (s *Session) enqueueLive(msg *Message) bool {
	if msg.Seq <= s.lastSeq {
		return true // already sent by the replay
	}
	if msg.Key != "" {
		if i, ok := s.queuedByKey[msg.Key]; ok {
			s.queue[i].Msg = nil
			s.liveQueued--
		}
	}
	if s.liveQueued >= s.limit {
		return false
	}
	if msg.Key != "" {
		if s.queuedByKey == nil {
			s.queuedByKey = make(map[string]int)
		}
		s.queuedByKey[msg.Key] = len(s.queue)
	}
	s.appendLocked(Item{Msg: msg})
	s.liveQueued++
	s.lastSeq = msg.Seq
	return true
}

// OnEnd registers f to run (once, on the goroutine that ends the session)
// when the manager ends it. Transports use it to abort a write blocked on a
// peer that does not read, so a cut-off socket is released at once. Call it
// before Attach.
func (s *Session) OnEnd(f func(CloseReason)) { s.onEnd = f }

// end closes the session once; it reports whether this call closed it.
func (s *Session) end(r CloseReason) bool {
	s.mu.Lock()
	if s.closed.Kind != CloseNone {
		s.mu.Unlock()
		return false
	}
	s.closed = r
	s.mu.Unlock()
	close(s.done)
	if s.onEnd != nil {
		s.onEnd(r)
	}
	if s.transport.Load() != nil {
		s.schedule() // the pump finishes the connection
	}
	return true
}

// Close ends the session from the transport side (the peer went away) and
// unregisters it. Safe to call more than once.
func (s *Session) Close() {
	s.end(CloseReason{Kind: ClosePeer, Reason: peerClosed})
	s.manager.detach(s)
}

// TimedOut ends the session because the peer was silent past the heartbeat
// timeout, and unregisters it.
func (s *Session) TimedOut() {
	s.end(CloseReason{Kind: CloseTimeout, Reason: "heartbeat timeout"})
	s.manager.detach(s)
}

// peerClosed is the reason of a session the peer ended; any other ClosePeer
// reason is the error of a failed write.
const peerClosed = "peer closed"
