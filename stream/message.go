package stream

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Stored message types (CONTRACT §3): they get an event id and are replayable.
const (
	TypeNotification    = "notification"
	TypeDashboardUpdate = "dashboard_update"
	TypeDataChange      = "data_change"
	TypeAuditLog        = "audit_log"
)

// Control event types: never stored, never carry an id.
const (
	TypeConnected  = "connected"
	TypeHeartbeat  = "heartbeat"
	TypeReset      = "reset"
	TypeDisconnect = "disconnect"
)

// Draft is a message before the store gives it a place in the log.
type Draft struct {
	Type string
	// UserID addresses one user; empty means broadcast.
	UserID string
	// Exclude lists users a broadcast does not reach.
	Exclude []string
	// Key is the conflation key (the widgetId of a dashboard_update): only the
	// newest stored message per (user, Key) is replayed. Empty: no conflation.
	Key string
	// Payload is the compact JSON payload.
	Payload json.RawMessage
	// Timestamp in milliseconds since the epoch; the store sets it when zero.
	Timestamp int64
	// IdempotencyKey, when not empty, makes the append of this draft
	// idempotent (CONTRACT §5): the store keeps the key, with Fingerprint,
	// for Retention.IdempotencyTTL, atomically with the message. A draft
	// whose key the store keeps with the same Fingerprint (stored earlier,
	// or earlier in the same append) is not stored again: the append
	// returns the message first stored under the key in its place. With
	// another Fingerprint the append stores nothing and fails with a
	// *KeyConflictError.
	IdempotencyKey string
	// Fingerprint identifies the request behind an idempotent draft (the
	// API uses a hash of the canonical request), so that a repeat can be
	// told from a different request reusing the key.
	Fingerprint string
}

// Message is a stored message: a Draft with its position Seq in the store's
// total order. Messages are immutable once built and shared by every session
// that delivers them, so the wire encodings are rendered once, lazily.
type Message struct {
	Seq       uint64
	ID        string
	Type      string
	UserID    string
	Exclude   []string
	Key       string
	Payload   json.RawMessage
	Timestamp int64
	// Repeat marks what Append returns for a draft whose idempotency key
	// the store kept: the message stored before under the key, not by this
	// call (and not fed again).
	Repeat bool

	// acked is when the feed handed the message to this node's dispatcher
	// (monoNow), the start of pushd_publish_to_write_seconds.
	acked atomic.Int64

	once sync.Once
	json []byte
	sse  []byte
	enc  [maxEncodings]encoding
}

// maxEncodings is how many transport-specific encodings a message caches.
const maxEncodings = 2

type encoding struct {
	once sync.Once
	b    []byte
}

// Encoding returns the transport encoding cached in slot (0 ≤ slot <
// maxEncodings), built once from the envelope JSON by build: a transport
// that frames messages (a complete WebSocket frame) then shares one buffer
// across every connection, as SSE does with SSE().
func (m *Message) Encoding(slot int, build func(envelope []byte) []byte) []byte {
	e := &m.enc[slot]
	e.once.Do(func() { e.b = build(m.JSON()) })
	return e.b
}

// NewMessage builds the stored form of d at position seq of a store whose
// epoch is epoch.
func NewMessage(epoch string, seq uint64, d Draft) *Message {
	return &Message{
		Seq: seq, ID: FormatID(epoch, seq), Type: d.Type, UserID: d.UserID,
		Exclude: d.Exclude, Key: d.Key, Payload: d.Payload, Timestamp: d.Timestamp,
	}
}

// Broadcast reports whether the message is addressed to every user.
func (m *Message) Broadcast() bool { return m.UserID == "" }

// Excludes reports whether a broadcast skips userID.
func (m *Message) Excludes(userID string) bool {
	for _, u := range m.Exclude {
		if u == userID {
			return true
		}
	}
	return false
}

// For reports whether the message is part of userID's stream.
func (m *Message) For(userID string) bool {
	if m.UserID != "" {
		return m.UserID == userID
	}
	return !m.Excludes(userID)
}

func (m *Message) render() {
	m.once.Do(func() {
		// Sized up front: growing these showed in publish profiles.
		m.json = appendEnvelope(make([]byte, 0, len(m.Payload)+len(m.ID)+len(m.Type)+64), m.ID, m.Type, m.Payload, m.Timestamp)
		m.sse = appendSSE(make([]byte, 0, len(m.json)+2*len(m.ID)+len(m.Type)+32), m.ID, m.Type, m.json)
	})
}

// JSON is the envelope {"id","type","payload","timestamp"} as sent on a
// WebSocket text frame.
func (m *Message) JSON() []byte { m.render(); return m.json }

// SSE is the complete Server-Sent Events frame of the message.
func (m *Message) SSE() []byte { m.render(); return m.sse }

// Control is a per-connection event without an id: connected, heartbeat,
// reset, disconnect.
type Control struct {
	Type    string
	Payload any
	// Raw, when set, is written as it is instead (a WebSocket pong frame).
	Raw []byte
}

// JSON renders the control envelope.
func (c Control) JSON() []byte {
	p, err := json.Marshal(c.Payload)
	if err != nil {
		p = []byte("{}")
	}
	return appendEnvelope(nil, "", c.Type, p, NowMillis())
}

// SSE renders the control event as an SSE frame (no id: line, so it never
// moves the browser's Last-Event-ID).
func (c Control) SSE() []byte { return appendSSE(nil, "", c.Type, c.JSON()) }

func appendEnvelope(b []byte, id, typ string, payload json.RawMessage, ts int64) []byte {
	if bytes.ContainsAny(payload, "\r\n") {
		// SSE data lines must not contain raw newlines; JSON whitespace may.
		var buf bytes.Buffer
		if json.Compact(&buf, payload) == nil {
			payload = buf.Bytes()
		}
	}
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	b = append(b, '{')
	if id != "" {
		b = append(b, `"id":`...)
		b = strconv.AppendQuote(b, id)
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = strconv.AppendQuote(b, typ)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, '}')
}

func appendSSE(b []byte, id, typ string, envelope []byte) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	b = append(b, envelope...)
	return append(b, '\n', '\n')
}

// monoStart anchors monoNow: nanoseconds on the monotonic clock, immune to
// wall-clock steps.
var monoStart = time.Now()

func monoNow() int64 { return int64(time.Since(monoStart)) }
