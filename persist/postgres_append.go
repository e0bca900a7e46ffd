package persist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	pushsql "github.com/pushd/pushd/sql"
	"github.com/pushd/pushd/stream"
)

// Group commit: Append calls queue their drafts; one writer goroutine takes
// everything queued (up to maxGroupDrafts), appends it in one transaction
// and wakes the callers. Under load a single commit (and its fsync) carries
// many publishers, and positions are assigned in one place, in order.

const (
	maxGroupDrafts = 2000
	// commitTimeout bounds one group transaction, so a hung server turns
	// into errors instead of stuck publishers.
	commitTimeout = 15 * time.Second
)

type appendReq struct {
	ctx    context.Context
	drafts []stream.Draft
	done   chan appendRes // buffered: the writer never blocks on a caller
}

type appendRes struct {
	msgs []*stream.Message
	err  error
}

// Append implements stream.Store. It returns only after the transaction
// holding the drafts committed; when the connection is lost during the
// commit it finds out whether it committed (postgres_outcome.go) and fails
// with stream.ErrOutcomeUnknown only when it cannot tell.
func (s *Postgres) Append(ctx context.Context, drafts []stream.Draft) ([]*stream.Message, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.settling.Load() {
		return nil, errInDoubt
	}
	if len(drafts) == 0 {
		return []*stream.Message{}, nil
	}
	now := s.r.Clock().UnixMilli()
	ds := make([]stream.Draft, len(drafts))
	for i, d := range drafts {
		// PostgreSQL text cannot hold NUL or invalid UTF-8; reject it here so
		// one bad draft never fails the other publishers of its group.
		if err := checkText(d.UserID, d.Type, d.Key); err != nil {
			return nil, fmt.Errorf("persist: draft %d: %w", i, err)
		}
		if err := checkText(d.Exclude...); err != nil {
			return nil, fmt.Errorf("persist: draft %d exclude: %w", i, err)
		}
		if d.Timestamp == 0 {
			d.Timestamp = now
		}
		ds[i] = d
	}
	req := &appendReq{ctx: ctx, drafts: ds, done: make(chan appendRes, 1)}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return nil, s.fail(ctx, "append", ctx.Err())
	case <-s.stop:
		return nil, errClosed
	}
	select {
	case res := <-req.done:
		return res.msgs, res.err
	case <-ctx.Done():
		// The group may still commit: then the feed delivers the messages,
		// but the caller is told it failed, never the other way round.
		return nil, s.fail(ctx, "append", ctx.Err())
	case <-s.writerGone:
		select {
		case res := <-req.done:
			return res.msgs, res.err
		default:
			return nil, errClosed
		}
	}
}

// checkText fails, wrapping stream.ErrRejected, for a string PostgreSQL
// text cannot hold.
func checkText(ss ...string) error {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			return fmt.Errorf("%w: string %q holds NUL or invalid UTF-8", stream.ErrRejected, s)
		}
	}
	return nil
}

// writer is the single goroutine that appends to the log from this process:
// groups of Append calls, and the relay of database-driven changes
// (postgres_relay.go) when the outbox's notification or the poll says so.
func (s *Postgres) writer() {
	defer s.wg.Done()
	defer close(s.writerGone)
	relayTick := time.NewTicker(s.pollEvery)
	defer relayTick.Stop()
	for {
		var first *appendReq
		select {
		case first = <-s.reqs:
		case <-s.relayWake:
			if s.relayOnce() {
				s.kickRelay()
			}
			continue
		case <-relayTick.C:
			if s.relayPoll(relayTick) && s.relayOnce() {
				s.kickRelay()
			}
			continue
		case <-s.stop:
			for {
				select {
				case r := <-s.reqs:
					r.done <- appendRes{err: errClosed}
				default:
					return
				}
			}
		}
		group := []*appendReq{first}
		n := len(first.drafts)
	gather:
		for n < maxGroupDrafts {
			select {
			case r := <-s.reqs:
				group = append(group, r)
				n += len(r.drafts)
			default:
				break gather
			}
		}
		s.commitGroup(group)
	}
}

func (s *Postgres) commitGroup(group []*appendReq) {
	waiting := group[:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.done <- appendRes{err: err} // gave up while queued: not appended
			continue
		}
		waiting = append(waiting, r)
	}
	if len(waiting) == 0 {
		return
	}
	if s.kept.head < 0 && time.Since(s.kept.loaded) > reloadEvery {
		if err := s.kept.load(s.stopCtx, s.pool); err != nil {
			s.log.Debug("bounds of kept messages not loaded", "err", err)
		}
	}
	res, fresh, err := s.commit(waiting)
	if err != nil && len(waiting) > 1 && !errors.Is(err, stream.ErrUnavailable) && !errors.Is(err, stream.ErrOutcomeUnknown) {
		// Not an outage but a statement error: retry one by one so only
		// the culprit fails.
		for _, r := range waiting {
			res, fresh, err := s.commit([]*appendReq{r})
			if err != nil {
				r.done <- appendRes{err: err}
				continue
			}
			r.done <- res[0]
			s.handToTail(fresh)
		}
		return
	}
	if err != nil {
		for _, r := range waiting {
			r.done <- appendRes{err: err}
		}
		return
	}
	for i, r := range waiting {
		r.done <- res[i]
	}
	s.handToTail(fresh)
}

// handToTail gives committed messages to the tail, which feeds them without
// reading them back when nothing from another node came in between.
func (s *Postgres) handToTail(msgs []*stream.Message) {
	if len(msgs) == 0 {
		return
	}
	select {
	case s.local <- msgs:
	default:
		s.kick() // the tail reads them from the table instead
	}
}

// commitOnce appends the drafts of group in one transaction: a pipelined
// batch (one round trip) that PostgreSQL runs as one implicit transaction.
// It returns every call's answer and the messages stored (repeats of
// idempotency keys are answered, not stored).
func (s *Postgres) commitOnce(group []*appendReq) ([]appendRes, []*stream.Message, error) {
	// Not the store's stop context: Close lets a commit in flight finish.
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	plan, err := s.planGroup(ctx, group, s.r.Clock().UnixMilli())
	if err != nil {
		return nil, nil, err
	}
	flat := plan.keys.fresh
	if len(flat) == 0 {
		return plan.results(s.epoch, group, nil), nil, nil
	}
	var f *flight
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, pushsql.AppendLock).Exec(func(pgconn.CommandTag) error {
		f.replied = true // the server answered the first statement
		return nil
	})
	ap := s.queueAppend(b, flat)
	plan.queueKeys(b, s.r.KeyTTL().Milliseconds())
	f = s.queueMark(b, len(flat))
	b.Queue(`SELECT pg_notify($1, $2)`, pushsql.NotifyChannel, s.node)
	conn, err := s.acquireLive(ctx)
	if err != nil {
		s.kept.reset()
		return nil, nil, s.fail(ctx, "append", err)
	}
	f.boarded(conn)
	// Close reads up to ReadyForQuery, which follows the implicit COMMIT:
	// only a nil here means the group is durable.
	err = conn.SendBatch(ctx, b).Close()
	conn.Release()
	if err != nil {
		s.kept.reset()
		base, err := s.settle(ctx, f, err)
		if err != nil {
			return nil, nil, err
		}
		ap.base, ap.settled = base, true
	}
	out := s.appended(ap)
	return plan.results(s.epoch, group, out), out, nil
}

// appendPlan is a group of drafts queued for appending, and what its
// statements return once they ran.
type appendPlan struct {
	drafts []stream.Draft
	kept   *keptGroup
	base   int64                // the position before the first draft
	looked []map[string][]int64 // per trim statement: user -> the bounds it returned
	// settled says the reply was lost and the commit learnt afterwards; the
	// statements' results never came, so the kept bounds start over.
	settled bool
}

// queueAppend queues on b the statements that append drafts to the log.
// AppendLock must be taken by an earlier statement of the same transaction.
//
// The memory store applies retention draft by draft; here it is applied per
// segment of drafts, with the same result as long as no user's conflated
// draft follows another draft of the same user within a segment (a trim in
// between could drop, and count, the message the conflated draft would
// supersede). segments cuts there; usually the whole group is one segment.
func (s *Postgres) queueAppend(b *pgx.Batch, drafts []stream.Draft) *appendPlan {
	p := &appendPlan{drafts: drafts, kept: s.kept.group(), base: -1}
	cutoff := s.cutoff(s.r.Clock())
	for _, seg := range segments(drafts) {
		s.queueSegment(b, seg, cutoff, p)
	}
	return p
}

// appended turns a committed plan into its messages.
func (s *Postgres) appended(p *appendPlan) []*stream.Message {
	if !p.settled {
		p.kept.commit(p.base, p.base+int64(len(p.drafts)), p.looked)
	}
	out := make([]*stream.Message, len(p.drafts))
	for i, d := range p.drafts {
		if len(d.Exclude) == 0 {
			d.Exclude = nil
		}
		out[i] = stream.NewMessage(s.epoch, uint64(p.base)+uint64(i)+1, d)
	}
	return out
}

// segments splits drafts where a user's conflated draft follows another
// draft of that user.
func segments(drafts []stream.Draft) [][]stream.Draft {
	var out [][]stream.Draft
	start := 0
	seen := map[string]bool{}
	for i, d := range drafts {
		if d.UserID == "" {
			continue
		}
		if d.Key != "" && seen[d.UserID] {
			out = append(out, drafts[start:i])
			start = i
			clear(seen)
		}
		seen[d.UserID] = true
	}
	return append(out, drafts[start:])
}

// queueSegment queues the statements appending one segment: insert,
// supersede, trim the appending users, drop broadcasts past the cap.
func (s *Postgres) queueSegment(b *pgx.Batch, drafts []stream.Draft, cutoff int64, p *appendPlan) {
	kept := p.kept
	var (
		users, types, keys []string
		payloads           [][]byte
		stamps             []int64
		excludes           []*string
		lastBcast          int // ordinal (1-based) of the last broadcast, 0 for none
		own                = map[string]*ownDrafts{}
		keyed              = map[[2]string]bool{}
		keyUsers, keyKeys  []string
	)
	for i, d := range drafts {
		users = append(users, d.UserID)
		types = append(types, d.Type)
		keys = append(keys, d.Key)
		payloads = append(payloads, d.Payload)
		stamps = append(stamps, d.Timestamp)
		var ex *string
		if d.UserID == "" {
			lastBcast = i + 1
			if len(d.Exclude) > 0 {
				j, _ := json.Marshal(d.Exclude)
				js := string(j)
				ex = &js
			}
		} else {
			if o := own[d.UserID]; o != nil {
				o.count++
				o.lastOrd = int64(i + 1)
				o.minTS = min(o.minTS, d.Timestamp)
			} else {
				own[d.UserID] = &ownDrafts{count: 1, firstOrd: int64(i + 1), lastOrd: int64(i + 1), minTS: d.Timestamp}
			}
			if d.Key != "" && !keyed[[2]string{d.UserID, d.Key}] {
				keyed[[2]string{d.UserID, d.Key}] = true
				keyUsers = append(keyUsers, d.UserID)
				keyKeys = append(keyKeys, d.Key)
			}
		}
		excludes = append(excludes, ex)
	}
	// Sorted: rows of push.users are locked in one order by every writer.
	trimUsers := slices.Sorted(maps.Keys(own))
	ords := make([]int64, len(trimUsers))
	trimOwn := make([]ownDrafts, len(trimUsers))
	for i, u := range trimUsers {
		trimOwn[i] = *own[u]
		ords[i] = trimOwn[i].lastOrd
	}

	b.Queue(sqlInsert, int64(len(drafts)), int64(lastBcast), users, types, keys, payloads, stamps, excludes).
		QueryRow(func(row pgx.Row) error {
			var segBase int64
			if err := row.Scan(&segBase); err != nil {
				return err
			}
			if p.base < 0 {
				p.base = segBase
			}
			return nil
		})
	if len(keyUsers) > 0 {
		b.Queue(sqlSupersede, keyUsers, keyKeys)
	}
	if len(trimUsers) > 0 {
		// Before dropping broadcasts: they were there when these users'
		// drafts were appended.
		g := kept.guard(trimUsers, trimOwn)
		b.Queue(sqlTrimUsersOnAppend, trimUsers, int64(s.r.MaxCount), cutoff, ords, int64(len(drafts)),
			g.n, g.first, g.oldest, g.base, g.gather).
			Query(func(rows pgx.Rows) error {
				got := map[string][]int64{}
				var user string
				var bounds []int64
				_, err := pgx.ForEachRow(rows, []any{&user, &bounds}, func() error {
					got[user] = bounds
					return nil
				})
				p.looked = append(p.looked, got)
				return err
			})
	}
	kept.advance(len(drafts))
	if lastBcast > 0 {
		b.Queue(sqlDropBroadcastsByCap, int64(s.r.MaxCount))
		b.Queue(sqlFoldTombstones, maxTombstones)
	}
}

// ownDrafts sums up a user's drafts in a segment: how many, the ordinals
// (1-based) of the first and the last, the oldest timestamp.
type ownDrafts struct {
	count, firstOrd, lastOrd, minTS int64
}

// sqlInsert assigns positions head+1..head+n (under AppendLock, taken by the
// previous statement of the batch) and inserts the drafts.
const sqlInsert = `
WITH h AS (
    UPDATE push.meta
    SET head = head + $1::bigint,
        bcast_head = CASE WHEN $2::bigint > 0 THEN head + $2::bigint ELSE bcast_head END
    RETURNING head - $1::bigint AS base
), ins AS (
    INSERT INTO push.messages (seq, user_id, exclude, type, key, payload, ts)
    SELECT h.base + d.ord, nullif(d.user_id, ''),
           CASE WHEN d.excl IS NULL THEN '{}'::text[]
                ELSE ARRAY(SELECT json_array_elements_text(d.excl::json)) END,
           d.type, nullif(d.key, ''), d.payload, d.ts
    FROM h, unnest($3::text[], $4::text[], $5::text[], $6::bytea[], $7::bigint[], $8::text[])
            WITH ORDINALITY AS d(user_id, type, key, payload, ts, excl, ord)
)
SELECT base FROM h`

// sqlSupersede keeps, for each (user, key) appended, only the newest message
// in the offline store; the older ones leave without counting as trimmed.
const sqlSupersede = `
UPDATE push.messages m SET gone_at = now()
FROM (
    SELECT k.user_id, k.key,
           (SELECT max(x.seq) FROM push.messages x
            WHERE x.user_id = k.user_id AND x.key = k.key AND x.gone_at IS NULL) AS top
    FROM unnest($1::text[], $2::text[]) AS k(user_id, key)
) k
WHERE m.user_id = k.user_id AND m.key = k.key AND m.gone_at IS NULL AND m.seq < k.top`
