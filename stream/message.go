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

	// encMu serializes the builds of the encodings; built has bit i set
	// once enc[i] is built, so a built encoding is read without the lock.
	encMu sync.Mutex
	built atomic.Uint32
	enc   [numEncodingSlots][]byte
}

// EncodingSlot names one wire encoding a Message caches for a transport (see
// Message.Encoding). The slots of every transport are listed here, so that
// no two transports share one.
type EncodingSlot uint8

const (
	// SlotWSFrame holds a message's complete WebSocket text frame.
	SlotWSFrame EncodingSlot = iota
	// SlotWSDeflate holds its permessage-deflate WebSocket frame.
	SlotWSDeflate
	// SlotSSE holds its Server-Sent Events frame.
	SlotSSE
	numEncodingSlots
)

// Encoding returns the transport encoding cached in slot, built once from
// the envelope JSON by build: a transport that frames messages then shares
// one buffer across every connection that delivers the message. It is safe
// for concurrent use; build runs once per slot and must not call Encoding.
func (m *Message) Encoding(slot EncodingSlot, build func(envelope []byte) []byte) []byte {
	bit := uint32(1) << slot
	if m.built.Load()&bit != 0 {
		return m.enc[slot]
	}
	m.encMu.Lock()
	defer m.encMu.Unlock()
	if m.built.Load()&bit == 0 {
		m.enc[slot] = build(m.JSON())
		m.built.Or(bit)
	}
	return m.enc[slot]
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
	})
}

// JSON is the envelope {"id","type","payload","timestamp"} that every
// transport carries (CONTRACT §3), on one line.
func (m *Message) JSON() []byte { m.render(); return m.json }

// Control is a per-connection event without an id: connected, heartbeat,
// reset, disconnect.
type Control struct {
	Type string
	// Payload is encoded with encoding/json, unless it is a json.RawMessage,
	// which is taken as it is (it must be compact JSON).
	Payload any
	// Raw, when set, is written as it is instead (a WebSocket pong frame).
	Raw []byte
}

// JSON renders the control envelope.
func (c Control) JSON() []byte {
	p, ok := c.Payload.(json.RawMessage) // encoded already (connected)
	if !ok {
		var err error
		if p, err = json.Marshal(c.Payload); err != nil {
			p = []byte("{}")
		}
	}
	return appendEnvelope(nil, "", c.Type, p, NowMillis())
}

func appendEnvelope(b []byte, id, typ string, payload json.RawMessage, ts int64) []byte {
	if bytes.ContainsAny(payload, "\r\n") {
		// The envelope is one line (SSE carries it in one data: line); JSON
		// whitespace in the payload may hold newlines.
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

// monoStart anchors monoNow: nanoseconds on the monotonic clock, immune to
// wall-clock steps.
var monoStart = time.Now()

func monoNow() int64 { return int64(time.Since(monoStart)) }
