package stream

// FlushCursors writes the pending delivered cursors now, as the flush loop
// does every FlushInterval and Shutdown does last; tests call it instead of
// waiting for the loop.
func (m *Manager) FlushCursors() { m.flushCursors() }
