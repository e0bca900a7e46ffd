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
// delivery here, so one lock for all of them would be contended by every
// writer.

const cursorShards = 64

// cursorShard is the cursors of the users that hash to it.
type cursorShard struct {
	// mu protects the fields below.
	mu    sync.Mutex
	users map[string]*cursorEntry // connected users (and unflushed ones)
	dirty []string                // users whose entry is dirty, for the flush
	// written counts stored messages written to connections, by transport
	// (pushd_deliveries_total): kept here, under the lock every write
	// takes anyway, instead of in one atomic all writers would contend on.
	written [numTransports]uint64
}

// markDirty records e (of user) as changed since the last flush (sh.mu held).
func (sh *cursorShard) markDirty(user string, e *cursorEntry) {
	if !e.dirty {
		e.dirty = true
		sh.dirty = append(sh.dirty, user)
	}
}

// cursorEntry is one user's delivered cursor: one map lookup per write.
type cursorEntry struct {
	seq   uint64 // last known delivered cursor
	dirty bool   // seq and count not yet written to the store
	count int    // first deliveries since the last flush
}

// cursorTable is the manager's delivered cursors, sharded by user.
type cursorTable struct {
	seed   maphash.Seed
	shards [cursorShards]cursorShard
}

func newCursorTable() *cursorTable {
	t := &cursorTable{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].users = make(map[string]*cursorEntry)
	}
	return t
}

func (t *cursorTable) shard(user string) *cursorShard {
	return &t.shards[maphash.String(t.seed, user)%cursorShards]
}

func (sh *cursorShard) entry(user string) *cursorEntry {
	e := sh.users[user]
	if e == nil {
		e = &cursorEntry{}
		sh.users[user] = e
	}
	return e
}

// seedCursor merges the store's cursor of user into the in-memory one and
// returns the higher of the two.
func (m *Manager) seedCursor(user string, seq uint64) uint64 {
	sh := m.cursors.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.entry(user)
	e.seq = max(e.seq, seq)
	return e.seq
}

// noteDelivered advances user's cursor to top after items were written; sh
// is the user's shard (the session keeps it, saving a hash per write); it
// also counts the written messages of transport tr.
func (m *Manager) noteDelivered(sh *cursorShard, user string, items []Item, top uint64, tr, written int) {
	sh.mu.Lock()
	sh.written[tr] += uint64(written)
	e := sh.entry(user)
	if top <= e.seq {
		sh.mu.Unlock()
		return
	}
	n := 0
	for _, it := range items {
		if it.Msg != nil && it.Msg.Seq > e.seq {
			n++
		}
	}
	e.seq = top
	e.count += n
	sh.markDirty(user, e)
	sh.mu.Unlock()
	m.firstDeliveries.Add(uint64(n))
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

func (m *Manager) flushCursors() {
	var batch []Delivery
	// Forgetting cursors of users without sessions (the store has them)
	// walks every cursor: once every 50 flushes, not on each one.
	sweep := m.flushes.Add(1)%50 == 0
	for i := range m.cursors.shards {
		sh := &m.cursors.shards[i]
		sh.mu.Lock()
		for _, u := range sh.dirty {
			e := sh.users[u]
			batch = append(batch, Delivery{UserID: u, Seq: e.seq, Count: e.count})
			e.dirty, e.count = false, 0
		}
		clear(sh.dirty)
		sh.dirty = sh.dirty[:0]
		if sweep {
			m.mu.RLock()
			for u := range sh.users {
				if m.users[u] == nil {
					delete(sh.users, u) // no session left; the store has it
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
	start := time.Now()
	err := m.store.MarkDelivered(ctx, batch)
	m.timeStore(OpMarkDelivered, start)
	if err != nil {
		m.flushErrors.Add(1)
		m.log.Warn("store error: writing delivered cursors failed; will retry", "err", err, "users", len(batch))
		for _, d := range batch {
			sh := m.cursors.shard(d.UserID)
			sh.mu.Lock()
			e := sh.entry(d.UserID)
			e.seq = max(e.seq, d.Seq)
			e.count += d.Count
			sh.markDirty(d.UserID, e)
			sh.mu.Unlock()
		}
	}
}

// written sums the shards' counts of messages written, by transport.
func (t *cursorTable) written() [numTransports]uint64 {
	var sum [numTransports]uint64
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for tr, n := range sh.written {
			sum[tr] += n
		}
		sh.mu.Unlock()
	}
	return sum
}
