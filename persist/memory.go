package persist

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/pushd/pushd/stream"
)

// maxTombstones bounds the memory kept for dropped broadcasts that excluded
// some users. Past it the oldest are folded into a watermark that applies to
// every user: an excluded user may then see a spurious reset, never a silent
// loss.
const maxTombstones = 1024

// Memory is the embedded in-memory Store. Appends are serialised by one
// mutex and hand their batch to the feed channel under it, so positions
// become visible and are dispatched strictly in order; the feed runs on its
// own goroutine, so a publisher waits for the store, not for the fan-out to
// every subscriber.
//
// A Memory is safe for concurrent use by multiple goroutines.
type Memory struct {
	r     stream.Retention
	epoch string

	// mu protects every field below.
	mu     sync.Mutex
	head   uint64
	feed   chan []*stream.Message // nil until SetFeed
	closed bool
	users  map[string]*memUser
	bcasts []*stream.Message // kept broadcasts, oldest first
	// bcastPlain counts kept broadcasts without exclusions: a broadcast with
	// MaxCount newer plain broadcasts is beyond every user's window.
	bcastPlain int
	bcastLost  uint64            // highest dropped broadcast, for every user
	tombs      []*stream.Message // dropped broadcasts with exclusions

	delivered, expired int64

	keys     map[string]memKey // idempotency keys
	keyOrder []keyExpiry       // the same, oldest first: Expire pops the front
}

type memKey struct {
	keptKey
	expires int64 // milliseconds since the epoch
}

type keyExpiry struct {
	key     string
	expires int64
}

// The interfaces the memory store implements. It has no Pinger: it is
// always reachable.
var (
	_ stream.Store         = (*Memory)(nil)
	_ stream.Expirer       = (*Memory)(nil)
	_ stream.QueueReporter = (*Memory)(nil)
)

type memUser struct {
	msgs   []*stream.Message // kept user-addressed messages, oldest first
	lost   uint64            // highest dropped (not superseded) own message
	cursor uint64
	known  bool
}

// NewMemory returns an empty in-memory store with retention r.
func NewMemory(r stream.Retention) *Memory {
	return &Memory{r: r, epoch: stream.NewEpoch(), users: make(map[string]*memUser), keys: make(map[string]memKey)}
}

// Epoch implements stream.Store.
func (s *Memory) Epoch() string { return s.epoch }

// feedBacklog bounds the batches committed but not yet dispatched; past it
// Append waits (back-pressure on publishers, never on subscribers).
const feedBacklog = 4096

// maxFeedBatch bounds how many committed messages one dispatch carries.
const maxFeedBatch = 256

// SetFeed implements stream.Store.
func (s *Memory) SetFeed(feed func([]*stream.Message)) {
	ch := make(chan []*stream.Message, feedBacklog)
	s.mu.Lock()
	s.feed = ch
	s.mu.Unlock()
	go func() {
		for batch := range ch {
			// Coalesce what else is committed already: one dispatch, and
			// per session one queue append and one write.
			open := true
			for open && len(batch) < maxFeedBatch {
				select {
				case more, ok := <-ch:
					if !ok {
						open = false
						break
					}
					batch = append(batch[:len(batch):len(batch)], more...)
					continue
				default:
				}
				break
			}
			feed(batch)
		}
	}()
}

func (s *Memory) user(id string) *memUser {
	u := s.users[id]
	if u == nil {
		u = &memUser{}
		s.users[id] = u
	}
	return u
}

// Append implements stream.Store.
func (s *Memory) Append(ctx context.Context, drafts []stream.Draft) ([]*stream.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.r.Clock().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("memory store closed: %w", stream.ErrUnavailable)
	}
	plan := newKeyedAppend(func(key string) (keptKey, bool) {
		k, ok := s.keys[key]
		return k.keptKey, ok && k.expires > now
	})
	srcs, err := plan.plan(drafts)
	if err != nil {
		return nil, err
	}
	fresh := make([]*stream.Message, len(plan.fresh))
	for i, d := range plan.fresh {
		if d.Timestamp == 0 {
			d.Timestamp = now
		}
		s.head++
		msg := stream.NewMessage(s.epoch, s.head, d)
		fresh[i] = msg
		if d.IdempotencyKey != "" {
			s.keepKey(d, msg, now)
		}
		if msg.Broadcast() {
			s.bcasts = append(s.bcasts, msg)
			if len(msg.Exclude) == 0 {
				s.bcastPlain++
			}
			s.dropOldBroadcasts()
			continue
		}
		u := s.user(msg.UserID)
		if msg.Key != "" {
			// Superseded: replaced by the newer value, not lost.
			u.msgs = slices.DeleteFunc(u.msgs, func(o *stream.Message) bool { return o.Key == msg.Key })
		}
		u.msgs = append(u.msgs, msg)
		s.trimUser(msg.UserID, u, now)
	}
	if s.feed != nil && len(fresh) > 0 {
		s.feed <- fresh
	}
	return plan.messages(s.epoch, drafts, srcs, fresh), nil
}

// keepKey remembers the key of draft d, stored as msg, for the key TTL.
func (s *Memory) keepKey(d stream.Draft, msg *stream.Message, now int64) {
	exp := now + s.r.KeyTTL().Milliseconds()
	s.keys[d.IdempotencyKey] = memKey{keptKey{fingerprint: d.Fingerprint, seq: msg.Seq, ts: msg.Timestamp}, exp}
	s.keyOrder = append(s.keyOrder, keyExpiry{d.IdempotencyKey, exp})
}

// forgetKeys drops the idempotency keys expired at now.
func (s *Memory) forgetKeys(now int64) {
	n := 0
	for ; n < len(s.keyOrder) && s.keyOrder[n].expires <= now; n++ {
		e := s.keyOrder[n]
		if k, ok := s.keys[e.key]; ok && k.expires == e.expires {
			delete(s.keys, e.key)
		}
	}
	clear(s.keyOrder[:n])
	s.keyOrder = s.keyOrder[n:]
}

func (s *Memory) expiredAt(msg *stream.Message, now int64) bool {
	return s.r.TTL > 0 && msg.Timestamp <= now-s.r.TTL.Milliseconds()
}

// window walks userID's stream newest first and returns the kept messages
// (newest first) and the highest Seq of the stream that is no longer kept.
func (s *Memory) window(userID string, u *memUser, now int64) (kept []*stream.Message, lost uint64) {
	var own []*stream.Message
	if u != nil {
		own = u.msgs
	}
	kept = make([]*stream.Message, 0, min(s.r.MaxCount, len(own)+len(s.bcasts)))
	lost, _ = s.walk(userID, u, now, func(m *stream.Message) { kept = append(kept, m) })
	return kept, lost
}

// walk visits the kept messages of userID's stream newest first and returns
// the highest lost Seq and the oldest kept Seq (0 when none is kept).
func (s *Memory) walk(userID string, u *memUser, now int64, visit func(*stream.Message)) (lost, oldest uint64) {
	if u != nil {
		lost = u.lost
	}
	if s.bcastLost > lost {
		lost = s.bcastLost
	}
	for _, t := range s.tombs {
		if t.Seq > lost && !t.Excludes(userID) {
			lost = t.Seq
		}
	}
	var own []*stream.Message
	if u != nil {
		own = u.msgs
	}
	kept := 0
	i, j := len(own)-1, len(s.bcasts)-1
	for i >= 0 || j >= 0 {
		var msg *stream.Message
		if j < 0 || (i >= 0 && own[i].Seq > s.bcasts[j].Seq) {
			msg = own[i]
			i--
		} else {
			msg = s.bcasts[j]
			j--
			if msg.Excludes(userID) {
				continue
			}
		}
		if kept >= s.r.MaxCount || s.expiredAt(msg, now) {
			if msg.Seq > lost {
				lost = msg.Seq
			}
			// Everything older is lost too, and lower: stop here.
			break
		}
		kept++
		oldest = msg.Seq
		if visit != nil {
			visit(msg)
		}
	}
	return lost, oldest
}

// trimUser drops u's own messages that fell out of its window.
func (s *Memory) trimUser(userID string, u *memUser, now int64) {
	_, oldest := s.walk(userID, u, now, nil)
	if oldest == 0 {
		oldest = 1<<64 - 1 // nothing kept
	}
	n := 0
	for _, m := range u.msgs {
		if m.Seq >= oldest && !s.expiredAt(m, now) {
			break
		}
		n++
	}
	s.dropOwn(u, n)
}

// dropOwn drops u's n oldest own messages, remembering the highest as lost.
func (s *Memory) dropOwn(u *memUser, n int) {
	if n <= 0 {
		return
	}
	u.lost = max(u.lost, u.msgs[n-1].Seq)
	clear(u.msgs[:n])
	u.msgs = u.msgs[n:]
	s.expired += int64(n)
}

// dropOldBroadcasts drops broadcasts that are beyond every user's window.
func (s *Memory) dropOldBroadcasts() {
	for len(s.bcasts) > 0 {
		front := s.bcasts[0]
		newer := s.bcastPlain
		if len(front.Exclude) == 0 {
			newer--
		}
		if newer < s.r.MaxCount {
			return
		}
		s.dropBroadcast()
	}
}

func (s *Memory) dropBroadcast() {
	front := s.bcasts[0]
	s.bcasts[0] = nil
	s.bcasts = s.bcasts[1:]
	s.expired++
	if len(front.Exclude) == 0 {
		s.bcastPlain--
		s.bcastLost = max(s.bcastLost, front.Seq)
		return
	}
	s.tombs = append(s.tombs, front)
	if len(s.tombs) > maxTombstones {
		s.bcastLost = max(s.bcastLost, s.tombs[0].Seq)
		s.tombs = slices.Delete(s.tombs, 0, 1)
	}
}

// Head implements stream.Store.
func (s *Memory) Head(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head, nil
}

// ReadStream implements stream.Store.
func (s *Memory) ReadStream(ctx context.Context, userID string, after uint64, limit int) ([]*stream.Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	now := s.r.Clock().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	kept, lost := s.window(userID, s.users[userID], now)
	var out []*stream.Message
	for i := len(kept) - 1; i >= 0 && len(out) < limit; i-- {
		if kept[i].Seq > after {
			out = append(out, kept[i])
		}
	}
	return out, lost > after, nil
}

// DeliveredCursor implements stream.Store.
func (s *Memory) DeliveredCursor(ctx context.Context, userID string) (uint64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[userID]; u != nil {
		return u.cursor, u.known, nil
	}
	return 0, false, nil
}

// MarkDelivered implements stream.Store.
func (s *Memory) MarkDelivered(ctx context.Context, ds []stream.Delivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		u := s.user(d.UserID)
		u.known = true
		if d.Seq > u.cursor {
			u.cursor = d.Seq
		}
		s.delivered += int64(d.Count)
	}
	return nil
}

// Expire implements stream.Expirer.
func (s *Memory) Expire(ctx context.Context) (int, error) {
	now := s.r.Clock().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.expired
	s.forgetKeys(now)
	for len(s.bcasts) > 0 && s.expiredAt(s.bcasts[0], now) {
		s.dropBroadcast()
	}
	for id, u := range s.users {
		s.trimUser(id, u, now)
		if len(u.msgs) == 0 && !u.known && u.lost == 0 {
			delete(s.users, id)
		}
	}
	return int(s.expired - before), nil
}

// QueueStats implements stream.QueueReporter.
func (s *Memory) QueueStats(ctx context.Context) (stream.QueueStats, error) {
	now := s.r.Clock().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	var pending int64
	for _, u := range s.users {
		for _, m := range u.msgs {
			if m.Seq > u.cursor && !s.expiredAt(m, now) {
				pending++
			}
		}
	}
	return stream.QueueStats{PendingMessages: pending, DeliveredMessages: s.delivered, ExpiredMessages: s.expired}, nil
}

// Close implements stream.Store: later appends fail; the feed drains. It has
// nothing to wait for, so it never fails.
func (s *Memory) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		if s.feed != nil {
			close(s.feed)
		}
	}
	return nil
}
