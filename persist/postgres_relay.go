package persist

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushd/pushd/internal/flatjson"
	pushsql "github.com/pushd/pushd/sql"
	"github.com/pushd/pushd/stream"
)

// The relay moves database-driven changes (CONTRACT §6) from push.outbox,
// where the triggers of push.watch_table write them in the application's
// transactions, into the log. It runs in the writer goroutine, between
// groups of appends, so its messages get positions like any other.
//
// One relay transaction takes AppendLock in a statement of its own, then
// deletes the outbox rows it can see (the oldest relayBatch by seq) and
// appends them in seq order, and commits: the delete and the append are one
// transaction, so a committed change enters the log exactly once whatever
// happens — another node's relay waits for the lock and then finds the rows
// gone; a relay killed before its commit leaves them in place.
//
// Why move-and-delete and not a cursor ("seq > last"): seq values are taken
// when a trigger runs, not when its transaction commits, so a lower seq can
// become visible after a higher one; a cursor would skip it for ever. Rows
// that are visible are taken; a row that commits late is taken by a later
// relay, never skipped.
//
// Why one row's changes stay in commit order: a second transaction that
// changes the row waits for the first one's row lock until that commits,
// and its trigger runs after its own statement, so its outbox rows get a
// higher seq than the first transaction's and cannot become visible before
// them; a relay therefore takes the first change in an earlier batch or
// earlier in the same one. The same holds for every change that follows
// another's commit (a transaction started after another committed, a write
// made after a delivery was seen). Concurrent transactions on different
// rows interleave in visibility order, seq within a batch.

const (
	// relayBatch bounds the changes one relay transaction moves (it takes
	// whole outbox rows, each of up to 1000 changes, while fewer than
	// relayBatch are taken).
	relayBatch = 2000
	// relayPollFast is the relay's poll while a table is watched with
	// notify => false: nothing wakes it for those.
	relayPollFast = 25 * time.Millisecond
	// outboxWarnBacklog is the outbox size past which the relay says so in
	// the log (and again when it has caught up).
	outboxWarnBacklog = 10000
	// outboxCheckEvery bounds how often a busy relay counts the outbox.
	outboxCheckEvery = 10 * time.Second
	// defaultChangeDataLimit is the largest data a change carries unless
	// WithChangeDataLimit says otherwise (the REST body limit's default).
	defaultChangeDataLimit = 65536
)

// sqlTakeOutbox deletes the oldest visible outbox rows, as many as hold
// fewer than $1 changes before the last one taken, and returns them; the
// relay splits their JSON arrays itself (the relay's backend is one core
// of PostgreSQL for every node, so its work is kept small). RETURNING gives
// no order: the relay sorts by seq.
const sqlTakeOutbox = `
WITH pick AS (
    SELECT seq FROM (
        SELECT seq, n, sum(n) OVER (ORDER BY seq) AS upto
        FROM (SELECT seq, n FROM push.outbox ORDER BY seq LIMIT $1) l
    ) s
    WHERE upto - n < $1
)
DELETE FROM push.outbox o USING pick WHERE o.seq = pick.seq
RETURNING o.seq, o.table_id, o.changes::text`

// change is one change of push.outbox.
type change struct {
	seq     int64
	tableID string
	action  string
	rowID   string
	userID  *string
	data    []byte
}

// splitChanges appends the changes of one outbox row, a JSON array of
// [action, rowId, audience or null, data], to out in their order.
func (s *Postgres) splitChanges(out []change, seq int64, tableID string, js []byte) []change {
	var elems [][4]json.RawMessage
	if err := json.Unmarshal(js, &elems); err != nil {
		s.log.Error("database changes not pushed: malformed outbox row", "seq", seq, "table", tableID, "err", err)
		return out
	}
	for _, e := range elems {
		c := change{seq: seq, tableID: tableID, data: e[3]}
		ok := jsonText(e[0], &c.action) && jsonText(e[1], &c.rowID)
		if string(e[2]) != "null" {
			var u string
			ok = ok && jsonText(e[2], &u)
			c.userID = &u
		}
		if !ok {
			s.log.Error("database change not pushed: malformed outbox row", "seq", seq, "table", tableID)
			continue
		}
		out = append(out, c)
	}
	return out
}

// jsonText decodes a JSON string, without the decoder for the usual one
// that needs no unescaping.
func jsonText(raw json.RawMessage, dst *string) bool {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		*dst = string(raw[1 : n-1])
		return true
	}
	return json.Unmarshal(raw, dst) == nil
}

var changeActions = map[string]string{"c": "create", "u": "update", "d": "delete"}

// relayState is the writer's bookkeeping of the relay (writer only).
type relayState struct {
	failing   bool
	pollFast  bool
	warned    bool
	lastCount time.Time
}

// relayOnce runs relay transactions while they move full batches and no
// append is waiting, and reports whether the outbox may hold more.
func (s *Postgres) relayOnce() (more bool) {
	for {
		moved, err := s.relay()
		if err != nil {
			if !s.relayState.failing {
				s.log.Warn("moving database changes into the log failed; retrying", "err", err)
				s.relayState.failing = true
			}
			return false // the poll tries again
		}
		if s.relayState.failing {
			s.log.Info("moving database changes into the log again")
			s.relayState.failing = false
		}
		if moved < relayBatch { // nothing visible was left: a take stops short of relayBatch only at the end
			if s.relayState.warned {
				s.checkBacklog()
			}
			return false
		}
		s.checkBacklog()
		if len(s.reqs) > 0 {
			return true // let the publishers in; the caller comes back
		}
	}
}

// relay moves one batch of outbox rows into the log and returns how many
// rows it took. It costs two round trips: BEGIN, the lock and the take in one
// pipeline, the append and COMMIT in the next.
func (s *Postgres) relay() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	conn, err := s.acquireLive(ctx)
	if err != nil {
		return 0, s.fail(ctx, "relay", err)
	}
	// A connection left inside a transaction (a failed step) is closed by
	// the pool on release, which rolls the transaction back.
	defer conn.Release()
	var changes []change
	take := &pgx.Batch{}
	take.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	// Its own statement: under READ COMMITTED the next statement's snapshot
	// is taken after the lock is held, so it sees every relay and append
	// that committed before.
	take.Queue(`SELECT pg_advisory_xact_lock($1)`, pushsql.AppendLock)
	type outboxRow struct {
		seq     int64
		tableID string
		changes []byte
	}
	var taken []outboxRow
	take.Queue(sqlTakeOutbox, relayBatch).Query(func(rows pgx.Rows) error {
		var r outboxRow
		_, err := pgx.ForEachRow(rows, []any{&r.seq, &r.tableID, &r.changes}, func() error {
			taken = append(taken, r)
			r.changes = nil
			return nil
		})
		return err
	})
	if err := conn.SendBatch(ctx, take).Close(); err != nil {
		return 0, s.fail(ctx, "relay take", err)
	}
	slices.SortFunc(taken, func(a, b outboxRow) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range taken {
		changes = s.splitChanges(changes, r.seq, r.tableID, r.changes)
	}
	if len(taken) == 0 {
		if _, err := conn.Exec(ctx, `ROLLBACK`); err != nil {
			return 0, s.fail(ctx, "relay", err)
		}
		return 0, nil
	}
	now := s.r.Clock().UnixMilli()
	drafts := make([]stream.Draft, 0, len(changes))
	for _, c := range changes {
		if d, ok := s.changeDraft(c, now); ok {
			drafts = append(drafts, d)
		}
	}
	b := &pgx.Batch{}
	var plan *appendPlan
	if len(drafts) > 0 {
		plan = s.queueAppend(b, drafts)
		b.Queue(`SELECT pg_notify($1, $2)`, pushsql.NotifyChannel, s.node)
	}
	b.Queue(`COMMIT`)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		// Committed or not, the table knows: the tail reads what is there,
		// and rows still in the outbox are taken again.
		s.kept.reset()
		s.kick()
		return 0, s.fail(ctx, "relay append", err)
	}
	if conn.Conn().PgConn().TxStatus() != 'I' {
		// COMMIT of an aborted transaction answers ROLLBACK, not an error.
		s.kept.reset()
		return 0, s.fail(ctx, "relay commit", errors.New("the relay transaction did not commit"))
	}
	if plan != nil {
		s.handToTail(s.appended(plan))
	}
	return len(changes), nil
}

// changeDraft builds the data_change message of one outbox row, with the
// payload of POST /api/ws/push/data-change (keys in the same order).
func (s *Postgres) changeDraft(c change, now int64) (stream.Draft, bool) {
	action, ok := changeActions[c.action]
	user := ""
	if c.userID != nil {
		user = *c.userID
	}
	if !ok || c.rowID == "" || checkText(user) != nil {
		// Only a hand-written outbox row can get here (the triggers write
		// c/u/d and a key, and text holds valid UTF-8 in a UTF8 database).
		s.log.Error("database change not pushed: malformed outbox row", "seq", c.seq, "table", c.tableID, "action", c.action)
		return stream.Draft{}, false
	}
	p := make([]byte, 0, 96+len(c.data)+len(c.tableID)+len(c.rowID))
	p = append(p, `{"action":"`...)
	p = append(p, action...)
	p = append(p, '"')
	if c.data != nil {
		omitted := len(c.data) > s.changeDataLimit
		if !omitted {
			p = append(p, `,"data":`...)
			buf := bytes.NewBuffer(p)
			if err := json.Compact(buf, c.data); err != nil {
				s.log.Error("database change pushed without data: the row is not valid JSON", "seq", c.seq, "table", c.tableID, "err", err)
				omitted = true
				p = p[:len(p)-len(`,"data":`)]
			} else {
				p = buf.Bytes()
			}
		}
		if omitted {
			p = append(p, `,"dataOmitted":true`...)
		}
	}
	p = append(p, `,"rowId":`...)
	p = flatjson.AppendString(p, c.rowID)
	p = append(p, `,"tableId":`...)
	p = flatjson.AppendString(p, c.tableID)
	p = append(p, `,"timestamp":`...)
	p = strconv.AppendInt(p, now, 10)
	p = append(p, '}')
	return stream.Draft{Type: stream.TypeDataChange, UserID: user, Payload: p, Timestamp: now}, true
}

// relayPoll is the writer's safety-net check of the outbox: whether rows
// are waiting (a notification may have been lost, or the table is watched
// with notify => false) and how often to look.
func (s *Postgres) relayPoll(tick *time.Ticker) bool {
	ctx, cancel := context.WithTimeout(s.stopCtx, 5*time.Second)
	defer cancel()
	var waiting, quiet bool
	err := s.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM push.outbox), EXISTS (SELECT 1 FROM push.watched WHERE NOT notify)`).Scan(&waiting, &quiet)
	if err != nil {
		return true // let relay() report it
	}
	if quiet != s.relayState.pollFast { // the ticker starts at pollEvery
		s.relayState.pollFast = quiet
		if quiet {
			tick.Reset(relayPollFast)
		} else {
			tick.Reset(s.pollEvery)
		}
	}
	return waiting
}

// checkBacklog logs when the outbox holds more than outboxWarnBacklog
// changes, and when it is back under; at most every outboxCheckEvery.
func (s *Postgres) checkBacklog() {
	st := &s.relayState
	if time.Since(st.lastCount) < outboxCheckEvery {
		return
	}
	st.lastCount = time.Now()
	ctx, cancel := context.WithTimeout(s.stopCtx, 5*time.Second)
	defer cancel()
	n, err := s.OutboxPending(ctx)
	switch {
	case err != nil:
	case n >= outboxWarnBacklog && !st.warned:
		st.warned = true
		s.log.Warn("database changes are waiting in push.outbox; pushd is relaying them", "pending", n)
	case n < outboxWarnBacklog && st.warned:
		st.warned = false
		s.log.Info("push.outbox backlog relayed", "pending", n)
	}
}

// OutboxPending implements stream.OutboxReporter: how many database-driven
// changes wait in push.outbox, not yet in the log (the pushd_outbox_pending
// metric).
func (s *Postgres) OutboxPending(ctx context.Context) (int64, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(n), 0) FROM push.outbox`).Scan(&n); err != nil {
		return 0, s.fail(ctx, "outbox pending", err)
	}
	return n, nil
}

func (s *Postgres) kickRelay() {
	select {
	case s.relayWake <- struct{}{}:
	default:
	}
}
