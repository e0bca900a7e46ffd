package stream

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// Delivered cursors are tracked in memory for connected users and written to
// the store in batches (every FlushInterval), off the write path of the
// sessions. A crash can lose at most one interval of cursor movement, which
// means re-delivery offline, never loss.
//
// The state is sharded by user: every write of every session notes its
// delivery here, and one lock for all of them was a measured hot spot at
// 10 000 connections.

const cursorShards = 64

type cursorShard struct {
	mu      sync.Mutex
	cursors map[string]uint64 // last known delivered cursor of connected users
	dirty   map[string]*Delivery
}

type cursorTable struct {
	seed   maphash.Seed
	shards [cursorShards]cursorShard
}

func newCursorTable() *cursorTable {
	t := &cursorTable{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].cursors = make(map[string]uint64)
		t.shards[i].dirty = make(map[string]*Delivery)
	}
	return t
}

func (t *cursorTable) shard(user string) *cursorShard {
	return &t.shards[maphash.String(t.seed, user)%cursorShards]
}

// seedCursor merges the store's cursor of user into the in-memory one and
// returns the higher of the two.
func (m *Manager) seedCursor(user string, seq uint64) uint64 {
	sh := m.cur.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if seq > sh.cursors[user] {
		sh.cursors[user] = seq
	}
	return sh.cursors[user]
}

func (m *Manager) noteDelivered(user string, items []Item, max uint64) {
	sh := m.cur.shard(user)
	sh.mu.Lock()
	cur := sh.cursors[user]
	if max <= cur {
		sh.mu.Unlock()
		return
	}
	n := 0
	for _, it := range items {
		if it.Msg != nil && it.Msg.Seq > cur {
			n++
		}
	}
	sh.cursors[user] = max
	d := sh.dirty[user]
	if d == nil {
		d = &Delivery{UserID: user}
		sh.dirty[user] = d
	}
	d.Seq = max
	d.Count += n
	sh.mu.Unlock()
	m.deliveredN.Add(uint64(n))
}

func (m *Manager) flushLoop() {
	defer close(m.stopped)
	t := time.NewTicker(m.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.flushCursors()
		case <-m.stop:
			m.flushCursors()
			return
		}
	}
}

// FlushCursors writes pending delivered cursors now (tests, shutdown).
func (m *Manager) FlushCursors() { m.flushCursors() }

func (m *Manager) flushCursors() {
	var batch []Delivery
	// Forgetting cursors of users without sessions (the store has them)
	// walks every cursor: once every 50 flushes, not on each one.
	sweep := m.flushes.Add(1)%50 == 0
	for i := range m.cur.shards {
		sh := &m.cur.shards[i]
		sh.mu.Lock()
		for _, d := range sh.dirty {
			batch = append(batch, *d)
		}
		clear(sh.dirty)
		if sweep {
			m.mu.RLock()
			for u := range sh.cursors {
				if m.users[u] == nil && sh.dirty[u] == nil {
					delete(sh.cursors, u)
				}
			}
			m.mu.RUnlock()
		}
		sh.mu.Unlock()
	}
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.store.MarkDelivered(ctx, batch); err != nil {
		m.flushErrors.Add(1)
		m.log.Warn("writing delivered cursors failed; will retry", "err", err, "users", len(batch))
		for _, d := range batch {
			sh := m.cur.shard(d.UserID)
			sh.mu.Lock()
			if cur := sh.dirty[d.UserID]; cur != nil {
				cur.Seq = max(cur.Seq, d.Seq)
				cur.Count += d.Count
			} else {
				dd := d
				sh.dirty[d.UserID] = &dd
			}
			sh.mu.Unlock()
		}
	}
}
