package persist

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/pushd/pushd/stream"
)

// sqlReadStream reads one page of a user's stream and whether anything of
// it after the resume point is lost, in one statement: one snapshot, so a
// message trimmed between "where does the window start" and "read the page"
// cannot vanish unreported.
//
// $1 user, $2 MaxCount, $3 TTL cutoff, $4 after, $5 limit. Always returns at
// least one row; lost is on every row, the message columns are NULL when the
// page is empty. Each branch is an index range scan that stops at the limit.
var sqlReadStream = `
WITH b AS MATERIALIZED (
    SELECT coalesce(` + windowBoundSQL("$1::text", "$2::bigint", "$3::bigint", "") + `, 0) AS bound
), l AS (
    SELECT b.bound, greatest(b.bound,
        (SELECT lost FROM push.users WHERE user_id = $1::text),
        (SELECT bcast_lost FROM push.meta),
        (SELECT seq FROM push.tombstones WHERE NOT ($1::text = ANY (exclude)) ORDER BY seq DESC LIMIT 1)
    ) AS lost
    FROM b
)
SELECT l.lost, m.seq, m.user_id, m.exclude, m.type, m.key, m.payload, m.ts
FROM l LEFT JOIN LATERAL (
    SELECT * FROM (
        (SELECT seq, user_id, exclude, type, key, payload, ts FROM push.messages
         WHERE user_id = $1::text AND gone_at IS NULL AND seq > greatest($4::bigint, l.bound)
         ORDER BY seq LIMIT $5::bigint)
        UNION ALL
        (SELECT seq, user_id, exclude, type, key, payload, ts FROM push.messages
         WHERE user_id IS NULL AND gone_at IS NULL AND NOT ($1::text = ANY (exclude))
           AND seq > greatest($4::bigint, l.bound)
         ORDER BY seq LIMIT $5::bigint)
    ) u ORDER BY seq LIMIT $5::bigint
) m ON true
ORDER BY m.seq`

// ReadStream implements stream.Store.
func (s *Postgres) ReadStream(ctx context.Context, userID string, after uint64, limit int) ([]*stream.Message, bool, error) {
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	limit = max(limit, 0)
	rows, err := s.pool.Query(ctx, sqlReadStream, userID, int64(s.r.MaxCount), s.cutoff(s.r.Clock()), int64(after), int64(limit))
	if err != nil {
		return nil, false, s.fail(ctx, "read stream", err)
	}
	defer rows.Close()
	var (
		out  []*stream.Message
		lost int64
	)
	for rows.Next() {
		var row messageRow
		if err := rows.Scan(append([]any{&lost}, row.dest()...)...); err != nil {
			return nil, false, s.fail(ctx, "read stream", err)
		}
		if row.seq == nil {
			continue // the page is empty; the row only carries lost
		}
		out = append(out, s.message(&row))
	}
	if err := rows.Err(); err != nil {
		return nil, false, s.fail(ctx, "read stream", err)
	}
	return out, uint64(lost) > after, nil
}

// messageRow holds the columns (seq, user_id, exclude, type, key, payload,
// ts) of a stored message. Each may be NULL: ReadStream's row of an empty
// page has none of them.
type messageRow struct {
	seq      *int64
	user     *string
	exclude  []string
	typ, key *string
	payload  []byte
	ts       *int64
}

// dest is the row's scan destinations, in column order.
func (r *messageRow) dest() []any {
	return []any{&r.seq, &r.user, &r.exclude, &r.typ, &r.key, &r.payload, &r.ts}
}

// message rebuilds a stored message from its row (whose seq, type and ts
// are not NULL).
func (s *Postgres) message(r *messageRow) *stream.Message {
	d := stream.Draft{Type: *r.typ, Payload: r.payload, Timestamp: *r.ts}
	if r.user != nil {
		d.UserID = *r.user
	}
	if len(r.exclude) > 0 {
		d.Exclude = r.exclude
	}
	if r.key != nil {
		d.Key = *r.key
	}
	return stream.NewMessage(s.epoch, uint64(*r.seq), d)
}

// scanMessages reads rows of (seq, user_id, exclude, type, key, payload, ts).
func (s *Postgres) scanMessages(rows pgx.Rows) ([]*stream.Message, error) {
	defer rows.Close()
	var out []*stream.Message
	for rows.Next() {
		var row messageRow
		if err := rows.Scan(row.dest()...); err != nil {
			return nil, err
		}
		out = append(out, s.message(&row))
	}
	return out, rows.Err()
}
