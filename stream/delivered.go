package stream

import (
	"context"
	"time"
)

// Delivered cursors are tracked in memory for connected users and written to
// the store in batches (every FlushInterval), off the write path of the
// sessions. A crash can lose at most one interval of cursor movement, which
// means re-delivery offline, never loss.

// seedCursor merges the store's cursor of user into the in-memory one and
// returns the higher of the two.
func (m *Manager) seedCursor(user string, seq uint64) uint64 {
	m.curMu.Lock()
	defer m.curMu.Unlock()
	if seq > m.cursors[user] {
		m.cursors[user] = seq
	}
	return m.cursors[user]
}

func (m *Manager) noteDelivered(user string, items []Item, max uint64) {
	m.curMu.Lock()
	cur := m.cursors[user]
	if max <= cur {
		m.curMu.Unlock()
		return
	}
	n := 0
	for _, it := range items {
		if it.Msg != nil && it.Msg.Seq > cur {
			n++
		}
	}
	m.cursors[user] = max
	d := m.curDirty[user]
	if d == nil {
		d = &Delivery{UserID: user}
		m.curDirty[user] = d
	}
	d.Seq = max
	d.Count += n
	m.curMu.Unlock()
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
		case <-m.flushKick:
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
	m.curMu.Lock()
	if len(m.curDirty) == 0 {
		m.curMu.Unlock()
		return
	}
	batch := make([]Delivery, 0, len(m.curDirty))
	for _, d := range m.curDirty {
		batch = append(batch, *d)
	}
	clear(m.curDirty)
	// Forget cursors of users without sessions; the store has them.
	m.mu.RLock()
	for u := range m.cursors {
		if m.users[u] == nil {
			delete(m.cursors, u)
		}
	}
	m.mu.RUnlock()
	m.curMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.store.MarkDelivered(ctx, batch); err != nil {
		m.flushErrors.Add(1)
		m.log.Warn("writing delivered cursors failed; will retry", "err", err, "users", len(batch))
		m.curMu.Lock()
		for _, d := range batch {
			cur := m.curDirty[d.UserID]
			if cur == nil {
				dd := d
				m.curDirty[d.UserID] = &dd
				continue
			}
			if d.Seq > cur.Seq {
				cur.Seq = d.Seq
			}
			cur.Count += d.Count
		}
		m.curMu.Unlock()
	}
}
