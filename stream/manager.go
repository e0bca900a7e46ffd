package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config; cmd/pushd's flags take theirs from here.
const (
	// DefaultQueueLimit is Config.QueueLimit when zero (--send-queue).
	DefaultQueueLimit = 1024
	// DefaultReplayPage is Config.ReplayPage when zero.
	DefaultReplayPage = 500
	// DefaultFlushInterval is Config.FlushInterval when zero.
	DefaultFlushInterval = 100 * time.Millisecond
)

// Config tunes a Manager. A zero field takes its default.
type Config struct {
	// HeartbeatInterval is announced in the connected event, and is the
	// period of the heartbeats the manager queues on every session; zero
	// sends none.
	HeartbeatInterval time.Duration
	// QueueLimit bounds each session's queue of live messages; past it the
	// session is cut off as a slow consumer. Default DefaultQueueLimit.
	QueueLimit int
	// ReplayPage is how many messages one store read returns. Default
	// DefaultReplayPage.
	ReplayPage int
	// FlushInterval is how often delivered cursors are written to the
	// store. Default DefaultFlushInterval.
	FlushInterval time.Duration
	// Writers is how many goroutines write one fan-out (each write is
	// non-blocking; a full socket is left to its own pump). Default
	// GOMAXPROCS.
	Writers int
	// MaxConnections bounds the sessions of this node (0 = no limit);
	// MaxConnectionsPerUser bounds one user's (0 = no limit). Past either,
	// Attach refuses with ErrNodeFull or ErrUserFull.
	MaxConnections        int
	MaxConnectionsPerUser int
	Logger                *slog.Logger
}

// Manager owns every session of this node, replays streams on connect and
// fans committed messages out. A Manager is safe for concurrent use by
// multiple goroutines.
//
// Lock order: a cursorShard's mu before Manager.mu (read), as flushCursors
// takes them; Manager.mu before a Session's mu, as dispatch takes them.
// Nothing takes them the other way round.
type Manager struct {
	store Store
	cfg   Config
	log   *slog.Logger

	// cluster is the store as a Cluster, nil when this node is alone.
	cluster   Cluster
	nodeID    string
	startedAt time.Time

	// mu protects the fields below, up to closing.
	mu          sync.RWMutex
	users       map[string]*userSessions
	byTransport map[string]int // registered sessions per transport name
	total       int            // registered sessions
	// closing is set by Shutdown: no session is registered after it.
	closing bool

	cursors   *cursorTable  // delivered cursors, sharded by user (delivered.go)
	taps      taps          // every-message subscribers (tap.go)
	flushes   atomic.Uint64 // flushCursors calls
	stop      chan struct{} // closed by Shutdown: the loops end
	stopped   chan struct{} // closed when the flush loop has written the cursors last
	closeOnce sync.Once

	// live counts started sessions not yet finished, so Shutdown can wait
	// for their close frames to be written.
	live sync.WaitGroup

	slowKicks       atomic.Uint64
	dispatched      atomic.Uint64
	firstDeliveries atomic.Uint64 // messages written to a user for the first time
	flushErrors     atomic.Uint64
	counters        counters
	observer        atomic.Pointer[Observer]
}

// userSessions is one user's registered sessions (under Manager.mu).
type userSessions struct {
	sessions map[*Session]struct{}
}

// NewManager creates a manager on store and registers itself as the store's
// feed; on a store shared by several nodes (a Cluster) it joins the cluster,
// so that its connections count in every node's answers.
//
// It starts the manager's two goroutines, which Shutdown ends: the cursor
// flush (every FlushInterval) and, when HeartbeatInterval is set, the
// heartbeat. They start here rather than in a separate Run so that a
// manager can never serve sessions without writing their cursors.
func NewManager(store Store, cfg Config) *Manager {
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = DefaultQueueLimit
	}
	if cfg.ReplayPage <= 0 {
		cfg.ReplayPage = DefaultReplayPage
	}
	if cfg.Writers <= 0 {
		cfg.Writers = runtime.GOMAXPROCS(0)
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		store:       store,
		cfg:         cfg,
		log:         cfg.Logger,
		users:       make(map[string]*userSessions),
		byTransport: make(map[string]int),
		cursors:     newCursorTable(),
		stop:        make(chan struct{}),
		stopped:     make(chan struct{}),
	}
	m.joinCluster(store)
	store.SetFeed(m.dispatch)
	go m.flushLoop()
	if cfg.HeartbeatInterval > 0 {
		go m.heartbeatLoop()
	}
	return m
}

// Ready reports whether the store can serve (readiness): the error of its
// Ping when it is a Pinger, else nil.
func (m *Manager) Ready(ctx context.Context) error {
	if p, ok := m.store.(Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// QueueStats reports the store's offline queue; ok is false, with zero
// figures, when the store is not a QueueReporter.
func (m *Manager) QueueStats(ctx context.Context) (st QueueStats, ok bool, err error) {
	q, ok := m.store.(QueueReporter)
	if !ok {
		return QueueStats{}, false, nil
	}
	st, err = q.QueueStats(ctx)
	return st, true, err
}

// OutboxPending reports how many database-driven changes wait in the
// store's outbox; ok is false when the store is not an OutboxReporter (it
// has no outbox).
func (m *Manager) OutboxPending(ctx context.Context) (n int64, ok bool, err error) {
	o, ok := m.store.(OutboxReporter)
	if !ok {
		return 0, false, nil
	}
	n, err = o.OutboxPending(ctx)
	return n, true, err
}

// Publish stores drafts (in order) and returns them; delivery to live
// sessions follows through the store's feed. Nothing is acknowledged that was
// not stored.
func (m *Manager) Publish(ctx context.Context, drafts []Draft) ([]*Message, error) {
	start := time.Now()
	msgs, err := m.store.Append(ctx, drafts)
	m.timeStore(OpAppend, start)
	return msgs, err
}

// NewSession creates a session that is not yet attached.
func (m *Manager) NewSession(userID, transport, remoteAddr, userAgent string) *Session {
	return newSession(m, SessionInfo{
		ID:          randomID(),
		Node:        m.nodeID,
		UserID:      userID,
		Transport:   transport,
		ConnectedAt: NowMillis(),
		RemoteAddr:  remoteAddr,
		UserAgent:   userAgent,
	}, m.cfg.QueueLimit)
}

// randomID is 16 hex digits from crypto/rand.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// register adds s to its user's sessions unless a limit or Shutdown refuses
// it.
func (m *Manager) register(s *Session) error {
	m.mu.Lock()
	if err := m.admitLocked(s.Info.UserID); err != nil {
		m.mu.Unlock()
		return err
	}
	us := m.users[s.Info.UserID]
	if us == nil {
		us = &userSessions{sessions: make(map[*Session]struct{})}
		m.users[s.Info.UserID] = us
	}
	us.sessions[s] = struct{}{}
	m.byTransport[s.Info.Transport]++
	m.total++
	m.mu.Unlock()
	return nil
}

func (m *Manager) detach(s *Session) {
	m.mu.Lock()
	us := m.users[s.Info.UserID]
	if us != nil {
		if _, ok := us.sessions[s]; ok {
			delete(us.sessions, s)
			m.byTransport[s.Info.Transport]--
			m.total--
			if len(us.sessions) == 0 {
				delete(m.users, s.Info.UserID)
			}
		}
	}
	m.mu.Unlock()
}

// dispatch is the store feed: it hands each message to every live session of
// its stream without ever blocking. Sessions that overflow are cut off.
//
// A batch of several messages (the store coalesces what was committed while
// the previous dispatch ran) is handed over session by session, all of a
// session's messages at once, so a busy node writes several messages per
// syscall instead of one.
func (m *Manager) dispatch(batch []*Message) {
	acked := monoNow()
	for _, msg := range batch {
		msg.acked.Store(acked)
	}
	var slow []*Session
	wp := wakePool.Get().(*[]*Session)
	wake := (*wp)[:0]
	handed := 0 // messages handed to the sessions in wake
	deliver := func(us *userSessions, msgs []*Message) {
		for s := range us.sessions {
			ok, queued := s.deliverAll(msgs)
			if !ok {
				slow = append(slow, s)
			} else if queued {
				wake = append(wake, s)
				handed += len(msgs)
			}
		}
	}
	m.mu.RLock()
	switch {
	case len(batch) == 1 && batch[0].UserID != "":
		if us := m.users[batch[0].UserID]; us != nil {
			deliver(us, batch)
		}
	case !hasBroadcast(batch):
		byUser := make(map[string][]*Message)
		for _, msg := range batch {
			if m.users[msg.UserID] != nil {
				byUser[msg.UserID] = append(byUser[msg.UserID], msg)
			}
		}
		for uid, msgs := range byUser {
			deliver(m.users[uid], msgs)
		}
	default:
		mine := make([]*Message, 0, len(batch))
		for uid, us := range m.users {
			mine = mine[:0]
			for _, msg := range batch {
				if msg.For(uid) {
					mine = append(mine, msg)
				}
			}
			if len(mine) > 0 {
				deliver(us, mine)
			}
		}
	}
	m.mu.RUnlock()
	m.dispatched.Add(uint64(len(batch)))
	m.feedTaps(batch)
	// Written after the lock is released: connects and disconnects must not
	// wait for a fan-out's writes.
	writers := m.cfg.Writers
	if 2*handed >= 3*len(wake) {
		// Several messages per connection: publishing outpaces the writes.
		// Half the writers make this round last longer, so the next one
		// carries more messages per write(2) — CPU per delivery falls as
		// the load rises instead of the node saturating.
		writers = max(1, writers/2)
	}
	m.writeAll(wake, writers)
	clear(wake)
	*wp = wake[:0]
	wakePool.Put(wp)
	for _, s := range slow {
		m.kickSlow(s)
	}
}

// writeAll writes the sessions' queues, split over w goroutines when there
// are many.
func (m *Manager) writeAll(wake []*Session, w int) {
	if w <= 1 || len(wake) < 64 {
		for _, s := range wake {
			s.writeNow()
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (len(wake) + w - 1) / w
	for i := chunk; i < len(wake); i += chunk {
		part := wake[i:min(i+chunk, len(wake))]
		wg.Go(func() {
			for _, s := range part {
				s.writeNow()
			}
		})
	}
	for _, s := range wake[:chunk] {
		s.writeNow()
	}
	wg.Wait()
}

// wakePool recycles dispatch's list of sessions to write.
var wakePool = sync.Pool{New: func() any { return new([]*Session) }}

func hasBroadcast(batch []*Message) bool {
	for _, msg := range batch {
		if msg.UserID == "" {
			return true
		}
	}
	return false
}

func (m *Manager) kickSlow(s *Session) {
	if s.end(CloseReason{Kind: CloseSlow, Reason: "too slow"}) {
		m.slowKicks.Add(1)
	}
	m.detach(s)
}

// DisconnectUser ends every connection of userID with a disconnect event
// carrying reason; it returns how many were ended.
func (m *Manager) DisconnectUser(userID, reason string) int {
	m.mu.RLock()
	var list []*Session
	if us := m.users[userID]; us != nil {
		for s := range us.sessions {
			list = append(list, s)
		}
	}
	m.mu.RUnlock()
	n := 0
	for _, s := range list {
		if s.end(CloseReason{Kind: CloseDisconnect, Reason: reason}) {
			n++
		}
		m.detach(s)
	}
	return n
}

// Connections lists userID's live connections.
func (m *Manager) Connections(userID string) []SessionInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []SessionInfo{}
	if us := m.users[userID]; us != nil {
		for s := range us.sessions {
			out = append(out, s.Info)
		}
	}
	return out
}

// Counts are the live connection figures of this node.
type Counts struct {
	Connections int
	Users       int
	Transports  map[string]int
}

// Counts reports connections, distinct users and connections per transport.
func (m *Manager) Counts() Counts {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c := Counts{Users: len(m.users), Transports: map[string]int{}}
	for tr, n := range m.byTransport {
		c.Transports[tr] = n
		c.Connections += n
	}
	return c
}

// Metrics are cumulative counters of this node.
type Metrics struct {
	SlowConsumerKicks uint64
	Dispatched        uint64
	Delivered         uint64
	CursorFlushErrors uint64
}

// Metrics returns the counters.
func (m *Manager) Metrics() Metrics {
	return Metrics{
		SlowConsumerKicks: m.slowKicks.Load(),
		Dispatched:        m.dispatched.Load(),
		Delivered:         m.firstDeliveries.Load(),
		CursorFlushErrors: m.flushErrors.Load(),
	}
}

// Shutdown ends every session (they reconnect and resume elsewhere or later)
// and writes the delivered cursors. It returns nil once every session has
// finished (its close frame written) and the cursors are written, or ctx's
// error if ctx ends first; what is left then goes on in the background, as
// with net/http's Server.Shutdown.
//
// No session is admitted once it has begun (Attach returns ErrShuttingDown),
// so a client reconnecting at once is refused instead of being registered
// after the sessions to end were collected, and then waited for.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	var all []*Session
	for _, us := range m.users {
		for s := range us.sessions {
			all = append(all, s)
		}
	}
	m.mu.Unlock()
	for _, s := range all {
		s.end(CloseReason{Kind: CloseShutdown, Reason: "server shutting down"})
		m.detach(s)
	}
	finished := make(chan struct{})
	go func() { m.live.Wait(); close(finished) }()
	drained := waitOrDone(ctx, finished)
	m.closeOnce.Do(func() { close(m.stop) })
	if !waitOrDone(ctx, m.stopped) || !drained {
		return ctx.Err()
	}
	return nil
}

// waitOrDone waits until ch is closed (true) or ctx ends (false); a closed
// ch wins over an ended ctx.
func waitOrDone(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// heartbeatLoop queues a heartbeat on every started session each interval:
// one timer for the node instead of one per connection.
func (m *Manager) heartbeatLoop() {
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	var batch []*Session
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		batch = batch[:0]
		m.mu.RLock()
		for _, us := range m.users {
			for s := range us.sessions {
				if s.transport.Load() != nil {
					batch = append(batch, s)
				}
			}
		}
		m.mu.RUnlock()
		for _, s := range batch {
			s.queueControl(heartbeat(0))
		}
		m.writeAll(batch, m.cfg.Writers)
		clear(batch)
	}
}
