package stream

import (
	"context"
	"fmt"
)

// Attach registers s and fills its queue with what the client missed, then
// switches it to live delivery — without a gap or a duplicate, even while
// messages are being published:
//
//  1. register first, so every message committed from now on reaches the
//     session (held back while replaying);
//  2. read the user's stream from the store after the resume point; it holds
//     everything committed before step 1, because positions become visible in
//     order and the feed runs only after commit;
//  3. go live: queue the held messages whose Seq is above the last replayed
//     one (the rest were in the replay).
//
// lastEventID is the client's last event id ("" for none: offline delivery
// from the user's delivered cursor). A reset event precedes the replay when
// history the client had not seen is gone (CONTRACT §4.4). On a store error
// the session is closed and the error returned (wrapping ErrUnavailable when
// the store is down).
func (m *Manager) Attach(ctx context.Context, s *Session, lastEventID string) error {
	user := s.Info.UserID
	s.push(Control{Type: TypeConnected, Payload: map[string]any{
		"connectionId":      s.Info.ID,
		"userId":            user,
		"transport":         s.Info.Transport,
		"serverTime":        NowMillis(),
		"heartbeatInterval": m.cfg.HeartbeatInterval.Milliseconds(),
	}})
	m.register(s)
	if err := m.replay(ctx, s, lastEventID); err != nil {
		s.end(CloseReason{Kind: CloseShutdown, Reason: "store unavailable"})
		m.detach(s)
		return fmt.Errorf("replay for %s: %w", user, err)
	}
	s.goLive()
	return nil
}

func (m *Manager) replay(ctx context.Context, s *Session, lastEventID string) error {
	user := s.Info.UserID
	cursor, known, err := m.store.DeliveredCursor(ctx, user)
	if err != nil {
		return err
	}
	// This node may have delivered more than it has written to the store
	// yet: those messages went to another tab and are not offline backlog.
	cursor = m.seedCursor(user, cursor)

	offline := lastEventID == ""
	after := cursor
	reset := ""
	if !offline {
		seq, ok := ParseID(m.store.Epoch(), lastEventID)
		if ok {
			head, err := m.store.Head(ctx)
			if err != nil {
				return err
			}
			ok = seq <= head
		}
		if ok {
			after = seq
		} else {
			after, reset = 0, "unknown_id"
		}
	}

	// The client has everything up to after: live messages at or below it
	// may still come from a dispatcher that lags behind the store (a
	// message replayed to an earlier connection can be dispatched after
	// this one registered) and must not be sent again.
	s.skipThrough(after)

	for first := true; ; first = false {
		select {
		case <-s.done:
			return nil // cut off meanwhile (slow or disconnected)
		default:
		}
		msgs, trimmed, err := m.store.ReadStream(ctx, user, after, m.cfg.ReplayPage)
		if err != nil {
			return err
		}
		if first {
			// A user never delivered anything starts at the oldest kept
			// message: nothing of "its" history was lost.
			if reset == "" && trimmed && (!offline || known) {
				reset = "trimmed"
			}
			if reset != "" {
				s.push(Control{Type: TypeReset, Payload: map[string]string{"reason": reset}})
			}
		}
		for _, msg := range msgs {
			s.replayed(msg)
			after = msg.Seq
		}
		if len(msgs) < m.cfg.ReplayPage {
			return nil
		}
	}
}
