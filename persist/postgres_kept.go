package persist

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// keptCache lets the append-time trim skip the users that cannot be over
// their window, which is most users most of the time. Looking at a user
// costs index scans of their kept messages (heap visits included, the rows
// being fresh) on every append, so looking at every user makes a group
// spend as long trimming as inserting.
//
// Per user it keeps bounds on the user's own kept messages: at most n of
// them, none below position first, none older than oldest. They stay true
// without reading the log because only appends add own messages and this
// writer makes or sees every append: a group whose first position is not
// the head the cache accounts for had another writer before it (another
// node), so every user of that group is looked at and the cache starts
// over. Trims, supersedes and the retention pass only remove messages, so
// bounds stay bounds. The trim statement decides with them whether a user
// can be over the window (trimUsersOnAppendSQL) and hands back exact values
// for the users it looked at and left whole.
//
// Loaded from the log when it is small enough (load), the cache is
// complete: a user it does not hold has no kept message, so even a user's
// first message skips the trim. Otherwise users are learnt as they are
// looked at.
//
// Only the writer goroutine uses it.
type keptCache struct {
	head  int64                 // log head the bounds account for; -1: unknown
	users map[string]keptBounds // n = -1: unknown
	// complete says every user with a kept own message is in users.
	complete bool
	loaded   time.Time // last load attempt
	// foreign says the last group came after another writer's appends;
	// bounds are not gathered while appends interleave (they would not
	// survive).
	foreign bool
	limit   int // users kept at most
}

// keptBounds bound one user's own kept messages.
type keptBounds struct {
	n      int64 // at most this many own kept messages; -1: unknown
	first  int64 // none below this position (when n > 0)
	oldest int64 // none older than this, ms (when n > 0)
}

// maxKeptUsers bounds the cache (≈ 100 bytes a user); users beyond it are
// looked at on every append, as without the cache.
const maxKeptUsers = 1 << 18

// maxLoadRows is the largest log read whole to load the cache.
const maxLoadRows = 2_000_000

// reloadEvery is how soon a cache that lost its state is loaded again.
const reloadEvery = time.Minute

func newKeptCache() *keptCache {
	return &keptCache{head: -1, users: map[string]keptBounds{}, limit: maxKeptUsers}
}

// reset forgets everything: the outcome of a group is unknown.
func (c *keptCache) reset() {
	c.head = -1
	c.complete = false
	clear(c.users)
}

// load reads every user's kept own messages from the log, when it is small
// enough, into a complete cache. Any failure leaves the cache empty: it
// only costs trims.
func (c *keptCache) load(ctx context.Context, pool *pgxpool.Pool) error {
	c.reset()
	c.loaded = time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// One snapshot: the head and the rows it covers.
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var head int64
	var rowsEstimate float64
	if err := tx.QueryRow(ctx, `SELECT head, (SELECT reltuples FROM pg_class WHERE oid = 'push.messages'::regclass) FROM push.meta`).
		Scan(&head, &rowsEstimate); err != nil {
		return err
	}
	if rowsEstimate > maxLoadRows {
		return fmt.Errorf("log too large to load (≈ %.0f rows)", rowsEstimate)
	}
	rows, err := tx.Query(ctx, `
SELECT user_id, count(*), min(seq), min(ts) FROM push.messages
WHERE user_id IS NOT NULL AND gone_at IS NULL
GROUP BY user_id LIMIT $1`, c.limit+1)
	if err != nil {
		return err
	}
	users := map[string]keptBounds{}
	var user string
	var b keptBounds
	if _, err := pgx.ForEachRow(rows, []any{&user, &b.n, &b.first, &b.oldest}, func() error {
		users[user] = b
		return nil
	}); err != nil {
		return err
	}
	if len(users) > c.limit {
		return fmt.Errorf("more than %d users with kept messages", c.limit)
	}
	c.head, c.users, c.complete = head, users, true
	return nil
}

// lookup returns what is known of u's kept own messages.
func (c *keptCache) lookup(u string) (keptBounds, bool) {
	b, ok := c.users[u]
	switch {
	case ok:
		return b, b.n >= 0
	case c.complete:
		return keptBounds{}, true // none kept
	}
	return keptBounds{}, false
}

// keptGroup is one group's use of the cache: bounds as the group's
// segments change them, assuming every user is skipped (an upper bound
// whether or not the trim drops something).
type keptGroup struct {
	c     *keptCache
	base  int64 // expected position before the next segment; -1: unknown
	after map[string]keptBounds
	segs  []keptSegment
}

// keptSegment is the users a segment's trim statement was asked about, in
// order, with their bounds after the segment if skipped.
type keptSegment struct {
	users []string
	next  []keptBounds
}

func (c *keptCache) group() *keptGroup {
	return &keptGroup{c: c, base: c.head, after: map[string]keptBounds{}}
}

// trimGuard is the trim statement's arguments $6–$10 of
// trimUsersOnAppendSQL: per user of the segment, the bounds of their own
// kept messages after it (n = -1: unknown); the head the bounds account
// for; whether to gather exact values for the users the statement leaves
// whole.
type trimGuard struct {
	n, first, oldest []int64
	base             int64
	gather           bool
}

// guard returns the trim statement's guard for the next segment's users,
// own[i] being users[i]'s drafts in it.
func (g *keptGroup) guard(users []string, own []ownDrafts) trimGuard {
	n := make([]int64, len(users))
	first := make([]int64, len(users))
	oldest := make([]int64, len(users))
	seg := keptSegment{users: users, next: make([]keptBounds, len(users))}
	for i, u := range users {
		b, known := g.after[u]
		if !known {
			b, known = g.c.lookup(u)
		}
		if !known || g.base < 0 {
			n[i] = -1
			seg.next[i] = keptBounds{n: -1}
			continue
		}
		if b.n <= 0 {
			b = keptBounds{first: g.base + own[i].firstOrd, oldest: math.MaxInt64}
		}
		b.n += own[i].count
		b.oldest = min(b.oldest, own[i].minTS)
		n[i], first[i], oldest[i] = b.n, b.first, b.oldest
		g.after[u] = b
		seg.next[i] = b
	}
	g.segs = append(g.segs, seg)
	return trimGuard{n: n, first: first, oldest: oldest, base: g.base, gather: !g.c.foreign}
}

// advance moves past a segment of size drafts.
func (g *keptGroup) advance(size int) {
	if g.base >= 0 {
		g.base += int64(size)
	}
}

// commit applies a committed group whose first segment started after
// position base and that ended at head; looked[i] maps the users segment i's
// statement looked at to what it returned (nil: dropped something, or not
// gathered).
func (g *keptGroup) commit(base, head int64, looked []map[string][]int64) {
	c := g.c
	if base != c.head {
		// Another writer appended since (or nothing was known): every user
		// of the group was looked at; nobody else's bounds are known.
		c.foreign = c.head >= 0
		c.complete = false
		clear(c.users)
	} else {
		c.foreign = false
	}
	c.head = head
	for i, seg := range g.segs {
		for j, u := range seg.users {
			got, wasLooked := looked[i][u]
			switch {
			case wasLooked && len(got) == 3:
				b := keptBounds{n: got[0], first: got[1], oldest: got[2]}
				if b.n == 0 {
					b = keptBounds{}
				}
				c.set(u, b)
			case wasLooked:
				c.set(u, keptBounds{n: -1})
			default:
				c.set(u, seg.next[j])
			}
		}
	}
}

func (c *keptCache) set(u string, b keptBounds) {
	switch _, ok := c.users[u]; {
	case ok || len(c.users) < c.limit:
		c.users[u] = b
	case b.n != 0:
		c.complete = false // u would read as having none kept
	}
}
