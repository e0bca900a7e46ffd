package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/pushd/pushd/internal/flatjson"
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
// the store is down); a session over a limit, or one arriving during
// Shutdown, is refused with an admission error (admission.go).
func (m *Manager) Attach(ctx context.Context, s *Session, lastEventID string) error {
	user := s.Info.UserID
	s.push(Control{Type: TypeConnected, Payload: m.connectedPayload(s)})
	if err := m.register(s); err != nil {
		s.end(CloseReason{Kind: CloseShutdown, Reason: err.Error()})
		return err
	}
	if err := m.replay(ctx, s, lastEventID); err != nil {
		s.end(CloseReason{Kind: CloseShutdown, Reason: "store unavailable"})
		m.detach(s)
		m.log.Warn("store error: replay failed", "user", user, "connection", s.Info.ID, "err", err)
		return fmt.Errorf("replay for %s: %w", user, err)
	}
	s.goLive()
	return nil
}

func (m *Manager) replay(ctx context.Context, s *Session, lastEventID string) error {
	user := s.Info.UserID
	start := time.Now()
	cursor, known, err := m.store.DeliveredCursor(ctx, user)
	m.timeStore(OpDeliveredCursor, start)
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
		m.counters.replays.Add(1)
		seq, ok := ParseID(m.store.Epoch(), lastEventID)
		if ok {
			start := time.Now()
			head, err := m.store.Head(ctx)
			m.timeStore(OpHead, start)
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
		start := time.Now()
		msgs, trimmed, err := m.store.ReadStream(ctx, user, after, m.cfg.ReplayPage)
		m.timeStore(OpReadStream, start)
		if err != nil {
			return err
		}
		m.counters.replayed.Add(uint64(len(msgs)))
		if first {
			// A user never delivered anything starts at the oldest kept
			// message: nothing of "its" history was lost.
			if reset == "" && trimmed && (!offline || known) {
				reset = "trimmed"
			}
			if reset != "" {
				s.push(Control{Type: TypeReset, Payload: map[string]string{"reason": reset}})
				m.counters.resets[resetIndex(reset)].Add(1)
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

func resetIndex(reason string) int {
	if reason == ResetReasons[0] {
		return 0
	}
	return 1
}

// connectedPayload is the payload of a session's connected event, written
// by hand in the order encoding/json gives a map (keys sorted): every
// connect sends one, and reflection over a map was most of its cost.
func (m *Manager) connectedPayload(s *Session) json.RawMessage {
	b := make([]byte, 0, 160+len(s.Info.UserID))
	b = append(b, `{"connectionId":"`...)
	b = append(b, s.Info.ID...) // hex
	b = append(b, `","heartbeatInterval":`...)
	b = strconv.AppendInt(b, m.cfg.HeartbeatInterval.Milliseconds(), 10)
	b = append(b, `,"serverTime":`...)
	b = strconv.AppendInt(b, NowMillis(), 10)
	b = append(b, `,"transport":`...)
	b = flatjson.AppendString(b, s.Info.Transport)
	b = append(b, `,"userId":`...)
	b = flatjson.AppendString(b, s.Info.UserID)
	return append(b, '}')
}
