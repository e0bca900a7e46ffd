package stream

import (
	"errors"
	"time"
)

// DisconnectEvent is the control event a transport sends last on a session
// ended through the API (CloseDisconnect): it tells the client why, and not
// to reconnect.
func DisconnectEvent(reason string) Control {
	return Control{Type: TypeDisconnect, Payload: map[string]string{"reason": reason}}
}

// Refused reports whether err, from Admit or Attach, refuses a session for
// now and says so to the client: an admission error (a limit reached, a
// shutdown begun) or a store outage (ErrUnavailable). A transport answers it
// before any stream byte with 503 or 429 and Retry-After (a WebSocket: a
// close code saying when to come back). Any other error is a fault, which
// the transport answers with 500 (a WebSocket: close code 1011) and logs.
func Refused(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrShuttingDown) ||
		errors.Is(err, ErrNodeFull) || errors.Is(err, ErrUserFull)
}

// HeartbeatInterval is how often the manager queues a heartbeat on every
// started session (Config.HeartbeatInterval; zero: never). A transport that
// closes a silent peer counts from it, so the two cannot drift apart.
func (m *Manager) HeartbeatInterval() time.Duration { return m.cfg.HeartbeatInterval }
