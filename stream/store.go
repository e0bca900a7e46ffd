package stream

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps every error a Store returns when its backend cannot be
// reached: the API answers 503 and acknowledges nothing.
var ErrUnavailable = errors.New("store unavailable")

// Store is the ordered log behind pushd.
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
	// positions. It returns only once they are durable in this store. A
	// draft's Timestamp is set to the store's clock when zero.
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

	// Expire drops messages older than the TTL and beyond the count cap, in
	// bounded batches, and returns how many it dropped.
	Expire(ctx context.Context) (int, error)

	// QueueStats reports the offline queue.
	QueueStats(ctx context.Context) (QueueStats, error)

	// Ping checks that the backend is reachable (readiness).
	Ping(ctx context.Context) error

	Close() error
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
	// PendingMessages: kept user-addressed messages that no connection of
	// their user has received yet.
	PendingMessages int64 `json:"pendingMessages"`
	// DeliveredMessages: first deliveries of a message to a user, counted
	// since the store was created.
	DeliveredMessages int64 `json:"deliveredMessages"`
	// ExpiredMessages: messages dropped by TTL or count cap since the store
	// was created.
	ExpiredMessages int64 `json:"expiredMessages"`
}

// Retention is the offline-queue policy every Store applies.
type Retention struct {
	// MaxCount: newest messages kept per user stream (superseded dashboard
	// updates excluded). 0 keeps nothing (offline storage disabled).
	MaxCount int
	// TTL: how long a kept message lives.
	TTL time.Duration
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
}

// Clock returns the retention clock.
func (r Retention) Clock() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
