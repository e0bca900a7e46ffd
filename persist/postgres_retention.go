package persist

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	pushsql "github.com/pushd/pushd/sql"
)

// Retention, as in the memory store:
//
//   - A user's window is the newest Retention.MaxCount kept messages of the
//     user's stream, cut at the newest one older than the TTL. Messages
//     outside it are lost; ReadStream computes the window at read time.
//   - On append, the appending users' own messages outside their window are
//     dropped, and a broadcast with MaxCount newer plain broadcasts (outside
//     every user's window) is dropped.
//   - Expire drops broadcasts past the TTL, then trims users' own messages,
//     and deletes rows marked gone long enough ago for every tail.
//
// Dropping marks the row gone and raises a watermark that keeps "trimmed"
// exact once the row is deleted: push.users.lost for own messages,
// push.meta.bcast_lost for plain broadcasts, push.tombstones for broadcasts
// that excluded someone.

const (
	expireBatchRows  = 1000 // rows per statement in Expire
	expireBatchUsers = 200  // users trimmed per statement in Expire
)

// windowBoundSQL is the position of the first message, newest first, of
// user's stream that is outside the window; NULL when the whole stream is
// kept. Walking newest first, the first message outside is either the
// (maxCount+1)-th (count cap) or the newest one at or below cutoff (age), so
// the bound is the greater of the two: a merge of two backward index scans
// that stops after maxCount+1 rows, and two probes of the age indexes that
// touch only rows already past the TTL (the retention pass removes those).
//
// upto, when not empty, limits the stream to positions up to it: the window
// as it was right after that position was appended.
func windowBoundSQL(user, maxCount, cutoff, upto string) string {
	lim := ""
	if upto != "" {
		lim = " AND seq <= " + upto
	}
	return `(SELECT greatest(
        (SELECT s.seq FROM (
            (SELECT seq FROM push.messages
             WHERE user_id = ` + user + ` AND gone_at IS NULL` + lim + `
             ORDER BY seq DESC LIMIT ` + maxCount + ` + 1)
            UNION ALL
            (SELECT seq FROM push.messages
             WHERE user_id IS NULL AND gone_at IS NULL AND NOT (` + user + ` = ANY (exclude))` + lim + `
             ORDER BY seq DESC LIMIT ` + maxCount + ` + 1)
         ) s ORDER BY s.seq DESC OFFSET ` + maxCount + ` LIMIT 1),
        (SELECT max(seq) FROM push.messages
         WHERE user_id = ` + user + ` AND gone_at IS NULL AND ts <= ` + cutoff + lim + `),
        (SELECT max(seq) FROM push.messages
         WHERE user_id IS NULL AND gone_at IS NULL AND ts <= ` + cutoff + lim + `
           AND NOT (` + user + ` = ANY (exclude)))))`
}

// trimUsersSQL drops the own messages of the users in $1 that are outside
// their window ($2 MaxCount, $3 cutoff), and counts them.
func trimUsersSQL() string {
	return `
WITH b AS MATERIALIZED ( -- one window computation per user, not per row
    SELECT u.user_id, ` + windowBoundSQL("u.user_id", "$2::bigint", "$3::bigint", "") + ` AS bound
    FROM unnest($1::text[]) AS u(user_id)
)` + trimBelowBound + `
SELECT count(*) FROM g`
}

// trimUsersOnAppendSQL runs right after a segment of $5 drafts was inserted.
// User $1[i]'s window is taken as it was after its last draft of the
// segment, ordinal $4[i]: the memory store trims a user when it appends for
// that user, and later broadcasts of the segment must not trim it further
// (the retention pass will).
//
// Only users that may be over their window are looked at (see keptCache):
// $6[i], $7[i], $8[i] bound user i's own kept messages after the segment
// (at most that many, none below that position, none older than that; -1:
// unknown), valid only if the segment starts at position $9 + 1. A user
// looked at is returned with, when $10 and nothing of theirs was outside
// the window, [count, lowest position, oldest ts] of their kept messages.
func trimUsersOnAppendSQL() string {
	return `
WITH h AS (
    SELECT head - $5::bigint AS base FROM push.meta
), k AS ( -- kept broadcasts: how many (as far as MaxCount matters), the newest past the cutoff
    SELECT (SELECT count(*) FROM (SELECT FROM push.messages
                                  WHERE user_id IS NULL AND gone_at IS NULL
                                  LIMIT $2::bigint + 1) x) AS n,
           (SELECT max(seq) FROM push.messages
            WHERE user_id IS NULL AND gone_at IS NULL AND ts <= $3::bigint) AS aged
), b AS MATERIALIZED ( -- one window computation per user that may be over it
    SELECT u.user_id, ` + windowBoundSQL("u.user_id", "$2::bigint", "$3::bigint", "h.base + u.ord") + ` AS bound
    FROM unnest($1::text[], $4::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
             AS u(user_id, ord, n, first, oldest), h, k
    WHERE h.base <> $9::bigint OR u.n < 0 OR u.n + k.n > $2::bigint
       OR u.oldest <= $3::bigint OR u.first <= k.aged
)` + trimBelowBound + `
SELECT b.user_id,
       CASE WHEN $10::boolean AND b.bound IS NULL THEN
           (SELECT ARRAY[count(*), coalesce(min(seq), 0), coalesce(min(ts), 0)]
            FROM push.messages WHERE user_id = b.user_id AND gone_at IS NULL)
       END
FROM b`
}

// trimBelowBound drops the own messages of the users in CTE b(user_id,
// bound) at or below their bound, as CTE g(user_id, seq), recording them as
// lost and counting them as expired.
const trimBelowBound = `, g AS (
    -- Positions collected per user by index first, then updated by primary
    -- key: with UPDATE ... FROM b the planner hash-joins the whole table
    -- when it misjudges b's size. (Only writers holding AppendLock mark
    -- rows gone, so the rows are still not gone here.)
    UPDATE push.messages m SET gone_at = now()
    WHERE m.seq = ANY (ARRAY(
        SELECT x.seq FROM b CROSS JOIN LATERAL (
            SELECT seq FROM push.messages
            WHERE user_id = b.user_id AND gone_at IS NULL AND seq <= b.bound
            OFFSET 0) x)) -- OFFSET 0: keep the per-user index probe
    RETURNING m.user_id, m.seq
), l AS (
    INSERT INTO push.users AS u (user_id, lost)
    SELECT user_id, max(seq) FROM g GROUP BY user_id ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET lost = greatest(u.lost, excluded.lost)
), c AS (
    UPDATE push.counters SET value = value + (SELECT count(*) FROM g)
    WHERE name = 'expired' AND EXISTS (SELECT 1 FROM g)
)`

var (
	sqlTrimUsers         = trimUsersSQL()
	sqlTrimUsersOnAppend = trimUsersOnAppendSQL()
)

// dropBroadcasts records the broadcasts in CTE d(seq, exclude) as lost and
// counts them.
const dropBroadcasts = `
, w AS (
    UPDATE push.meta SET bcast_lost = greatest(bcast_lost, (SELECT max(seq) FROM d WHERE exclude = '{}'))
    WHERE EXISTS (SELECT 1 FROM d WHERE exclude = '{}')
), t AS (
    INSERT INTO push.tombstones (seq, exclude) SELECT seq, exclude FROM d WHERE exclude <> '{}'
), c AS (
    UPDATE push.counters SET value = value + (SELECT count(*) FROM d)
    WHERE name = 'expired' AND EXISTS (SELECT 1 FROM d)
)
SELECT count(*) FROM d`

// sqlDropBroadcastsByCap drops the broadcasts that have at least $1
// (MaxCount) newer broadcasts without exclusions: they are outside every
// user's window.
const sqlDropBroadcastsByCap = `
WITH p AS (
    SELECT seq FROM push.messages
    WHERE user_id IS NULL AND gone_at IS NULL AND exclude = '{}'
    ORDER BY seq DESC OFFSET greatest($1::bigint - 1, 0) LIMIT 1
), d AS (
    UPDATE push.messages SET gone_at = now()
    WHERE user_id IS NULL AND gone_at IS NULL AND ($1::bigint = 0 OR seq < (SELECT seq FROM p))
    RETURNING seq, exclude
)` + dropBroadcasts

// sqlDropBroadcastsByAge drops (at most $2) kept broadcasts older than the
// first one that is not past the cutoff $1.
const sqlDropBroadcastsByAge = `
WITH f AS (
    SELECT seq FROM push.messages
    WHERE user_id IS NULL AND gone_at IS NULL AND ts > $1::bigint
    ORDER BY seq LIMIT 1
), d AS (
    UPDATE push.messages SET gone_at = now()
    WHERE seq IN (
        SELECT seq FROM push.messages
        WHERE user_id IS NULL AND gone_at IS NULL
          AND seq < coalesce((SELECT seq FROM f), 9223372036854775807)
        ORDER BY seq LIMIT $2::bigint)
    RETURNING seq, exclude
)` + dropBroadcasts

// sqlFoldTombstones keeps the newest $1 tombstones and folds older ones into
// the watermark for everyone.
const sqlFoldTombstones = `
WITH f AS (
    DELETE FROM push.tombstones
    WHERE seq < (SELECT seq FROM push.tombstones ORDER BY seq DESC OFFSET $1::bigint - 1 LIMIT 1)
    RETURNING seq
)
UPDATE push.meta SET bcast_lost = greatest(bcast_lost, (SELECT max(seq) FROM f))
WHERE EXISTS (SELECT 1 FROM f)`

// sqlUsersAll lists users with kept own messages after $1, at most $2, by a
// loose index scan (one index probe per user, not one per message).
const sqlUsersAll = `
WITH RECURSIVE u AS (
    (SELECT user_id FROM push.messages
     WHERE user_id > $1::text AND gone_at IS NULL ORDER BY user_id LIMIT 1)
    UNION ALL
    SELECT (SELECT m.user_id FROM push.messages m
            WHERE m.user_id > u.user_id AND m.gone_at IS NULL ORDER BY m.user_id LIMIT 1)
    FROM u WHERE u.user_id IS NOT NULL
)
SELECT user_id FROM u WHERE user_id IS NOT NULL LIMIT $2::bigint`

// sqlUsersAged lists users after $2 with own messages past the cutoff $1.
const sqlUsersAged = `
SELECT DISTINCT user_id FROM push.messages
WHERE gone_at IS NULL AND user_id IS NOT NULL AND ts <= $1::bigint AND user_id > $2::text
ORDER BY user_id LIMIT $3::bigint`

// sqlPurge deletes (at most $2) rows gone for longer than $1 milliseconds.
const sqlPurge = `
DELETE FROM push.messages WHERE seq IN (
    SELECT seq FROM push.messages
    WHERE gone_at < now() - $1::bigint * interval '1 millisecond'
    ORDER BY gone_at LIMIT $2::bigint)`

// Expire implements stream.Expirer. One node at a time runs it (others return
// 0 at once); each statement handles a bounded batch and holds the append
// lock only for that batch.
func (s *Postgres) Expire(ctx context.Context) (int, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, s.fail(ctx, "expire", err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, pushsql.ExpireLock).Scan(&got); err != nil {
		return 0, s.fail(ctx, "expire lock", err)
	}
	if !got {
		return 0, nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, pushsql.ExpireLock); err != nil {
			// Do not return a session holding the lock to the pool.
			_ = conn.Conn().Close(uctx)
		}
	}()
	n, err := s.expire(ctx, conn)
	if err != nil {
		return n, s.fail(ctx, "expire", err)
	}
	return n, nil
}

func (s *Postgres) expire(ctx context.Context, conn *pgxpool.Conn) (int, error) {
	cutoff := s.cutoff(s.r.Clock())
	total := 0
	var mark, bcastHead int64
	if err := conn.QueryRow(ctx, `SELECT trim_mark, bcast_head FROM push.meta`).Scan(&mark, &bcastHead); err != nil {
		return 0, err
	}
	// A broadcast appended since the last full pass may have pushed any
	// user's own messages out of the window: trim everyone then. Otherwise
	// only age can have moved a window.
	full := bcastHead > mark

	if s.r.TTL > 0 {
		for {
			n, err := lockedCount(ctx, conn, sqlDropBroadcastsByAge, []any{cutoff, expireBatchRows}, sqlFoldTombstones, maxTombstones)
			if err != nil {
				return total, err
			}
			total += n
			if n > 0 {
				full = true
			}
			if n < expireBatchRows {
				break
			}
		}
	}

	after := ""
	for {
		var rows pgx.Rows
		var err error
		if full {
			rows, err = conn.Query(ctx, sqlUsersAll, after, expireBatchUsers)
		} else {
			rows, err = conn.Query(ctx, sqlUsersAged, cutoff, after, expireBatchUsers)
		}
		if err != nil {
			return total, err
		}
		users, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return total, err
		}
		if len(users) == 0 {
			break
		}
		n, err := lockedCount(ctx, conn, sqlTrimUsers, []any{users, int64(s.r.MaxCount), cutoff}, "")
		if err != nil {
			return total, err
		}
		total += n
		after = users[len(users)-1]
		if len(users) < expireBatchUsers {
			break
		}
	}
	if full {
		if _, err := conn.Exec(ctx, `UPDATE push.meta SET trim_mark = greatest(trim_mark, $1)`, bcastHead); err != nil {
			return total, err
		}
	}

	for {
		tag, err := conn.Exec(ctx, sqlPurge, s.purgeAfter.Milliseconds(), expireBatchRows)
		if err != nil {
			return total, err
		}
		if tag.RowsAffected() < expireBatchRows {
			break
		}
	}
	if err := s.purgeKeys(ctx, conn); err != nil {
		return total, err
	}
	return total, s.purgeMarks(ctx, conn)
}

// lockedCount runs query (which returns one count) and then, if not empty,
// follow with its argument, in one implicit transaction holding the append
// lock, so it never interleaves with an append.
func lockedCount(ctx context.Context, conn *pgxpool.Conn, query string, args []any, follow string, followArgs ...any) (int, error) {
	var n int64
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, pushsql.AppendLock)
	b.Queue(query, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
	if follow != "" {
		b.Queue(follow, followArgs...)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("retention batch: %w", err)
	}
	return int(n), nil
}
