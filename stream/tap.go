package stream

import (
	"context"
	"sync"
)

// Tap receives every message this node's feed dispatches — every stored
// message of the service, whoever it is for — into a bounded queue of its
// own. It is how operators watch what is published (the admin tail): the
// dispatcher hands it each batch without blocking, and past the bound the
// newest messages are dropped and counted instead of slowing publishing.
//
// A Tap is safe for concurrent use by multiple goroutines.
type Tap struct {
	m     *Manager
	limit int

	mu      sync.Mutex
	queue   []*Message
	dropped uint64
	closed  bool
	ready   chan struct{}
}

// taps is the manager's set of taps; mu protects set.
type taps struct {
	mu  sync.RWMutex
	set map[*Tap]struct{}
}

// Tap starts a tap holding at most limit undelivered messages. Close it
// when done.
func (m *Manager) Tap(limit int) *Tap {
	t := &Tap{m: m, limit: max(limit, 1), ready: make(chan struct{}, 1)}
	m.taps.mu.Lock()
	if m.taps.set == nil {
		m.taps.set = make(map[*Tap]struct{})
	}
	m.taps.set[t] = struct{}{}
	m.taps.mu.Unlock()
	return t
}

// feedTaps offers batch to every tap; called by dispatch.
func (m *Manager) feedTaps(batch []*Message) {
	m.taps.mu.RLock()
	defer m.taps.mu.RUnlock()
	for t := range m.taps.set {
		t.offer(batch)
	}
}

func (t *Tap) offer(batch []*Message) {
	t.mu.Lock()
	room := t.limit - len(t.queue)
	take := min(room, len(batch))
	t.queue = append(t.queue, batch[:take]...)
	t.dropped += uint64(len(batch) - take)
	t.mu.Unlock()
	select {
	case t.ready <- struct{}{}:
	default:
	}
}

// Next waits until messages are queued (or drops were counted) and takes
// them, with how many were dropped since the last call. ok is false once
// ctx ends, the tap is closed or the manager shuts down.
func (t *Tap) Next(ctx context.Context) (msgs []*Message, dropped uint64, ok bool) {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, 0, false
		}
		if len(t.queue) > 0 || t.dropped > 0 {
			msgs, dropped = t.queue, t.dropped
			t.queue, t.dropped = nil, 0
			t.mu.Unlock()
			return msgs, dropped, true
		}
		t.mu.Unlock()
		select {
		case <-t.ready:
		case <-ctx.Done():
			return nil, 0, false
		case <-t.m.stop:
			return nil, 0, false
		}
	}
}

// Close detaches the tap from the feed.
func (t *Tap) Close() {
	t.m.taps.mu.Lock()
	delete(t.m.taps.set, t)
	t.m.taps.mu.Unlock()
	t.mu.Lock()
	t.closed, t.queue = true, nil
	t.mu.Unlock()
}
