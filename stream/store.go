package stream

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable is wrapped by every error a Store (and its optional
// interfaces) returns when the backend cannot be reached or cannot serve
// now — a lost connection, too many connections, a server shutting down, a
// closed store — and nothing of the call was stored. Callers may retry
// later: the API answers 503 with Retry-After and acknowledges nothing.
var ErrUnavailable = errors.New("store unavailable")

// ErrOutcomeUnknown is wrapped by the error Append returns when the
// connection to the backend broke while the append was being committed and
// the store could not learn in time whether it committed: the messages may
// or may not be stored (and, if stored, are delivered). The API answers 500
// outcome_unknown; a retry with the same idempotency key is safe.
var ErrOutcomeUnknown = errors.New("store: commit outcome unknown")

// ErrRejected is wrapped by the error Append returns when the store cannot
// hold a draft as given (PostgreSQL text holds no NUL byte and no invalid
// UTF-8); nothing of the call was stored, and a retry fails the same way.
// The API validates every field it stores first, so reaching it means the
// API let through what the store refuses: it answers 500 internal and logs
// the error.
var ErrRejected = errors.New("store rejected the draft")

// ErrKeyConflict is wrapped by the *KeyConflictError Append returns when an
// idempotency key is reused with a different request.
var ErrKeyConflict = errors.New("idempotency key reused with a different request")

// KeyConflictError is returned by Append when the idempotency key of draft
// Index is kept with another fingerprint; nothing of the call was stored.
// The API answers 409 conflict.
type KeyConflictError struct {
	Index int
	Key   string
}

func (e *KeyConflictError) Error() string {
	return fmt.Sprintf("draft %d: idempotency key %q: %v", e.Index, e.Key, ErrKeyConflict)
}

// Unwrap makes errors.Is(err, ErrKeyConflict) hold.
func (e *KeyConflictError) Unwrap() error { return ErrKeyConflict }

// Store is the ordered log behind pushd: the log (Epoch, Append, SetFeed,
// Head, ReadStream) and the users' delivered cursors (DeliveredCursor,
// MarkDelivered). Health, statistics and expiry are optional interfaces
// (Pinger, QueueReporter, Expirer, OutboxReporter, Cluster) found by type
// assertion, as database/sql/driver finds a driver's extras.
//
// Every appended message gets a position (Seq) in one total order. A user's
// stream is the subsequence addressed to that user plus the broadcasts that do
// not exclude them. Implementations must guarantee that positions become
// visible in order: once a reader has seen Seq N it never later finds a
// message below N appear.
type Store interface {
	// Epoch names this store's lifetime; it prefixes every event id.
	Epoch() string

	// Append stores drafts in order and returns them as messages with their
	// positions, one per draft. It returns only once they are durable in
	// this store. A draft's Timestamp is set to the store's clock when zero.
	//
	// A draft with an IdempotencyKey the store keeps is not stored again:
	// its place in the result holds the message first stored under the key
	// (that message's Seq, ID and Timestamp; this draft's other fields, which
	// the equal Fingerprint says are the same request), and it is not fed.
	//
	// Errors: wrapping ErrUnavailable when nothing was stored, wrapping
	// ErrOutcomeUnknown when the store cannot tell, wrapping ErrRejected
	// for a draft the store cannot hold, *KeyConflictError.
	Append(ctx context.Context, drafts []Draft) ([]*Message, error)

	// SetFeed registers the function that receives every committed message
	// exactly once, in Seq order, from one goroutine at a time (for a shared
	// store, including messages appended by other nodes). It must be called
	// before the first Append.
	SetFeed(feed func([]*Message))

	// Head is the highest position committed so far (0 for an empty log).
	Head(ctx context.Context) (uint64, error)

	// ReadStream returns up to limit kept messages of userID's stream with
	// Seq > after, oldest first, dashboard updates conflated per Key.
	// Trimmed reports whether at least one message of the stream with
	// Seq > after is no longer kept (dropped by the count cap or by age);
	// superseded dashboard updates do not count as trimmed.
	ReadStream(ctx context.Context, userID string, after uint64, limit int) (msgs []*Message, trimmed bool, err error)

	// DeliveredCursor is the highest position delivered to any connection of
	// userID; known is false for a user never delivered anything.
	DeliveredCursor(ctx context.Context, userID string) (seq uint64, known bool, err error)

	// MarkDelivered advances users' delivered cursors (never backwards) and
	// counts first deliveries.
	MarkDelivered(ctx context.Context, ds []Delivery) error

	// Close stops the store: later calls fail wrapping ErrUnavailable. It
	// waits for the work in flight (a commit) to finish at most until ctx
	// ends: then it returns ctx's error and the store finishes stopping in
	// the background. Calling it again waits the same way.
	Close(ctx context.Context) error
}

// Pinger is an optional interface a Store may implement: Ping checks that
// the backend is reachable (readiness). Manager.Ready uses it; a store
// without it (the in-memory one) is always ready.
type Pinger interface {
	Ping(ctx context.Context) error
}

// QueueReporter is an optional interface a Store may implement: QueueStats
// reports the offline queue (GET /api/ws/stats). Manager.QueueStats uses it.
type QueueReporter interface {
	QueueStats(ctx context.Context) (QueueStats, error)
}

// Expirer is an optional interface a Store may implement. Expire drops
// messages older than the TTL and beyond the count cap, in bounded batches,
// and returns how many it dropped; it also forgets idempotency keys older
// than Retention.KeyTTL. ReadStream applies the retention window at read
// time whether or not Expire runs; Expire bounds what the store holds, so
// the owner of a store that implements it calls it periodically.
type Expirer interface {
	Expire(ctx context.Context) (int, error)
}

// OutboxReporter is an optional interface of a Store that relays
// database-driven changes through an outbox (PostgreSQL): OutboxPending is
// how many changes wait in it. Manager.OutboxPending uses it.
type OutboxReporter interface {
	OutboxPending(ctx context.Context) (int64, error)
}

// Delivery records that messages up to Seq of UserID's stream reached a
// connection; Count is how many of them had not been delivered before.
type Delivery struct {
	UserID string
	Seq    uint64
	Count  int
}

// QueueStats are the figures of GET /api/ws/stats.
type QueueStats struct {
	// PendingMessages counts the kept user-addressed messages that no
	// connection of their user has received yet.
	PendingMessages int64 `json:"pendingMessages"`
	// DeliveredMessages counts first deliveries of a message to a user
	// since the store was created.
	DeliveredMessages int64 `json:"deliveredMessages"`
	// ExpiredMessages counts the messages dropped by TTL or count cap since
	// the store was created.
	ExpiredMessages int64 `json:"expiredMessages"`
}

// Retention is the offline-queue policy every Store applies.
type Retention struct {
	// MaxCount is how many of the newest messages of a user's stream are
	// kept (superseded dashboard updates excluded). 0 keeps nothing
	// (offline storage disabled).
	MaxCount int
	// TTL is how long a kept message lives.
	TTL time.Duration
	// IdempotencyTTL is how long an idempotency key is kept; 0 means
	// DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
}

// DefaultIdempotencyTTL is how long idempotency keys are kept by default
// (CONTRACT §9 --idempotency-ttl).
const DefaultIdempotencyTTL = 24 * time.Hour

// KeyTTL returns how long idempotency keys are kept.
func (r Retention) KeyTTL() time.Duration {
	if r.IdempotencyTTL > 0 {
		return r.IdempotencyTTL
	}
	return DefaultIdempotencyTTL
}

// Clock returns the retention clock.
func (r Retention) Clock() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
