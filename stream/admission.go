package stream

import "errors"

// Admission errors: Attach (and Admit, the cheap pre-check a transport makes
// before it answers or upgrades) refuses a session with one of these. The
// transport answers before any stream byte: 503 for ErrNodeFull and
// ErrShuttingDown, 429 for ErrUserFull.
var (
	// ErrNodeFull means the node holds Config.MaxConnections sessions.
	ErrNodeFull = errors.New("this node holds its maximum number of connections")
	// ErrUserFull means the user holds Config.MaxConnectionsPerUser
	// sessions on this node.
	ErrUserFull = errors.New("too many connections for this user")
	// ErrShuttingDown means Shutdown has begun: no session is admitted any
	// more.
	ErrShuttingDown = errors.New("server shutting down")
)

// Admit reports whether a session of user would be admitted now. Attach
// checks again under the registration lock, so concurrent connects never
// exceed a limit; Admit lets a transport refuse early and cheaply (before a
// WebSocket upgrade).
func (m *Manager) Admit(user string) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.admitLocked(user)
}

// admitLocked is Admit with m.mu held.
func (m *Manager) admitLocked(user string) error {
	switch {
	case m.closing:
		return ErrShuttingDown
	case m.cfg.MaxConnections > 0 && m.total >= m.cfg.MaxConnections:
		return ErrNodeFull
	}
	if limit := m.cfg.MaxConnectionsPerUser; limit > 0 {
		if us := m.users[user]; us != nil && len(us.sessions) >= limit {
			return ErrUserFull
		}
	}
	return nil
}
