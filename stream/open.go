package stream

import (
	"context"
	"errors"
	"time"
)

// SessionSpec describes the connection a transport opens a session for.
type SessionSpec struct {
	UserID     string
	Transport  string // "sse", "ws": the label of the per-transport counters
	RemoteAddr string
	UserAgent  string
	// LastEventID is the client's resume point ("" for none: offline
	// delivery from the user's delivered cursor).
	LastEventID string
	// OnSlow, when not nil, runs once, on the goroutine that cuts the
	// session off as too slow (CloseSlow), so the transport can fail a
	// write blocked on a peer that does not read and release the socket at
	// once. It may run before Open returns.
	OnSlow func()
}

// Open creates a session for spec and attaches it (Attach): registered,
// with what the client missed queued. The transport then writes its stream
// head and hands the session its connection with Start. Open's error is
// Attach's: Refused tells a refusal (answered with Retry-After) from
// a fault.
func (m *Manager) Open(ctx context.Context, spec SessionSpec) (*Session, error) {
	s := m.NewSession(spec.UserID, spec.Transport, spec.RemoteAddr, spec.UserAgent)
	if spec.OnSlow != nil {
		s.OnEnd(func(r CloseReason) {
			if r.Kind == CloseSlow {
				spec.OnSlow()
			}
		})
	}
	if err := m.Attach(ctx, s, spec.LastEventID); err != nil {
		return nil, err
	}
	return s, nil
}

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
