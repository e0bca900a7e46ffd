package persist

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pushd/pushd/stream"
)

// Idempotency keys on PostgreSQL (push.idempotency). The writer looks the
// keys of a group up before its transaction (one query, only for groups
// with keys), plans the group (idempotency.go) and then inserts the new
// keys in the group's transaction, after its messages: a key is committed
// exactly when its message is, so a crash between commit and answer leaves
// a key that turns the publisher's retry into a repeat.
//
// The lookup runs before the append lock is taken, so another node may
// commit the same key in between; the plain INSERT then fails on the
// primary key, nothing of the group is stored, and the writer plans the
// group again (it then finds the key). Expired rows of the group's keys
// are deleted first under the append lock, so only a live key conflicts.

// maxKeyRaces bounds how often a group is planned again after losing a key
// to another node.
const maxKeyRaces = 3

const sqlLookupKeys = `
SELECT key, fingerprint, seq, ts FROM push.idempotency
WHERE key = ANY($1::text[]) AND expires_at > $2::bigint`

const sqlDropExpiredKeys = `
DELETE FROM push.idempotency WHERE key = ANY($1::text[]) AND expires_at <= $2::bigint`

// sqlInsertKeys runs after every segment of the group: head is then the
// group's last position, and ordinal $3[i] (1-based in the group) is at
// head - $5 + $3[i].
const sqlInsertKeys = `
INSERT INTO push.idempotency (key, fingerprint, seq, ts, expires_at)
SELECT k.key, k.fp, m.head - $5::bigint + k.ord, k.ts, $6::bigint
FROM push.meta m, unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS k(key, fp, ord, ts)`

// sqlPurgeKeys deletes (at most $2) keys expired at $1.
const sqlPurgeKeys = `
DELETE FROM push.idempotency WHERE key IN (
    SELECT key FROM push.idempotency WHERE expires_at <= $1::bigint LIMIT $2::bigint)`

// groupPlan is a group's idempotency plan: the drafts to store, and per
// call where its messages come from or why it failed.
type groupPlan struct {
	keys  *keyedAppend
	calls []callPlan // per call
	errs  []error    // per call
	now   int64
}

// planGroup looks up the group's keys and plans it.
func (s *Postgres) planGroup(ctx context.Context, group []*appendReq, now int64) (*groupPlan, error) {
	var keys []string
	for _, r := range group {
		for _, d := range r.drafts {
			if d.IdempotencyKey != "" {
				keys = append(keys, d.IdempotencyKey)
			}
		}
	}
	var kept map[string]keptKey
	if len(keys) > 0 {
		kept = make(map[string]keptKey, len(keys))
		rows, err := s.pool.Query(ctx, sqlLookupKeys, keys, now)
		if err != nil {
			return nil, s.fail(ctx, "look up idempotency keys", err)
		}
		var key string
		var k keptKey
		var seq int64
		_, err = pgx.ForEachRow(rows, []any{&key, &k.fingerprint, &seq, &k.ts}, func() error {
			k.seq = uint64(seq)
			kept[key] = k
			return nil
		})
		if err != nil {
			return nil, s.fail(ctx, "look up idempotency keys", err)
		}
	}
	p := &groupPlan{
		keys:  newKeyedAppend(func(key string) (keptKey, bool) { k, ok := kept[key]; return k, ok }),
		calls: make([]callPlan, len(group)),
		errs:  make([]error, len(group)),
		now:   now,
	}
	for i, r := range group {
		p.calls[i], p.errs[i] = p.keys.plan(r.drafts)
	}
	return p, nil
}

// commit appends group (commitOnce), planning it again when another node
// committed one of its keys first.
func (s *Postgres) commit(group []*appendReq) ([]appendRes, []*stream.Message, error) {
	for race := 1; ; race++ {
		res, fresh, err := s.commitOnce(group)
		if !lostKeyRace(err) || race == maxKeyRaces {
			return res, fresh, err
		}
	}
}

// queueKeys queues the statements that store the plan's new keys.
func (p *groupPlan) queueKeys(b *pgx.Batch, ttlMillis int64) {
	var keys, fps []string
	var ords, stamps []int64
	for i, d := range p.keys.fresh {
		if d.IdempotencyKey == "" {
			continue
		}
		keys = append(keys, d.IdempotencyKey)
		fps = append(fps, d.Fingerprint)
		ords = append(ords, int64(i+1))
		stamps = append(stamps, d.Timestamp)
	}
	if len(keys) == 0 {
		return
	}
	b.Queue(sqlDropExpiredKeys, keys, p.now)
	b.Queue(sqlInsertKeys, keys, fps, ords, stamps, int64(len(p.keys.fresh)), p.now+ttlMillis)
}

// results are the calls' answers once the fresh drafts are stored as fresh.
func (p *groupPlan) results(epoch string, group []*appendReq, fresh []*stream.Message) []appendRes {
	out := make([]appendRes, len(group))
	for i, r := range group {
		if p.errs[i] != nil {
			out[i] = appendRes{err: p.errs[i]}
			continue
		}
		out[i] = appendRes{msgs: p.keys.messages(epoch, r.drafts, p.calls[i], fresh)}
	}
	return out
}

// purgeKeys deletes expired idempotency keys, a bounded batch per
// statement.
func (s *Postgres) purgeKeys(ctx context.Context, conn *pgxpool.Conn) error {
	now := s.r.Clock().UnixMilli()
	for {
		tag, err := conn.Exec(ctx, sqlPurgeKeys, now, expireBatchRows)
		if err != nil {
			return err
		}
		if tag.RowsAffected() < expireBatchRows {
			return nil
		}
	}
}

// lostKeyRace reports whether err is another node committing one of the
// group's keys first.
func lostKeyRace(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.TableName == "idempotency"
}
