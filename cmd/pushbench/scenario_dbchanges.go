package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// appendLock is sql.AppendLock: the advisory lock every writer of pushd's
// log holds (pushbench does not import the server's packages).
const appendLock int64 = 0x7075736801

// runDBChanges connects N users, creates a table watched with
// push.watch_table() in --database-url (the database pushd runs on), and
// commits M rows to it from --publishers writer connections, --batch rows
// per INSERT statement and transaction, at --rate rows/s (0 = flat out).
// Each row carries a marker naming its subscriber and its index; the
// latency is commit (taken by the writer after COMMIT returns) to receipt.
// PostgreSQL's CPU is reported with --postgres-pid.
//
// --backlog holds pushd's append lock while the rows are committed, so
// they wait in the outbox as if no pushd ran, then lets go: the drain rate
// is the relay's catching up, resume-storm style.
func runDBChanges(ctx context.Context, r *run) *result {
	cfg := r.cfg
	res := &result{Scenario: "db-changes", Params: map[string]any{"n": cfg.n, "m": cfg.m, "rate": cfg.rate,
		"writers": cfg.publishers, "rowsPerStatement": cfg.batch, "notify": cfg.notify, "backlog": cfg.backlog}}
	if cfg.databaseURL == "" {
		r.fillCommon(res)
		res.Skipped = "db-changes needs --database-url (the database pushd runs on)"
		return res
	}
	pool, err := pgxpool.New(ctx, cfg.databaseURL+sep(cfg.databaseURL)+"pool_max_conns="+strconv.Itoa(cfg.publishers+2))
	if err != nil {
		r.noteErr("database", err)
		r.fillCommon(res)
		return res
	}
	defer pool.Close()
	table := "pushbench_" + r.runID
	_, err = pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (id bigint PRIMARY KEY, owner text NOT NULL, marker text NOT NULL, amount int NOT NULL DEFAULT 0)`, table))
	if err == nil {
		_, err = pool.Exec(ctx, `SELECT push.watch_table($1, 'owner', notify => $2)`, table, cfg.notify)
	}
	if err != nil {
		r.noteErr("create the watched table", err)
		r.fillCommon(res)
		return res
	}
	defer func() {
		_, _ = pool.Exec(context.Background(), fmt.Sprintf(`DROP TABLE IF EXISTS %s`, table))
	}()

	subs, ok := connectPhase(ctx, r, res, cfg.n, func(int) *bitset { return nil }, 0)
	if !ok || len(subs) == 0 {
		r.fillCommon(res)
		return res
	}
	// Rows are drawn up front, so every subscriber's expected set has its
	// exact size.
	rng := rand.New(rand.NewPCG(uint64(cfg.seed), 2))
	type row struct {
		s   *sub
		seq int
	}
	rows := make([]row, cfg.m)
	counts := make([]int, len(subs))
	for k := range rows {
		u := rng.IntN(len(subs))
		rows[k] = row{subs[u], counts[u]}
		counts[u]++
	}
	for i, s := range subs {
		s.expected = newBitset(counts[i])
		s.got = newBitset(counts[i])
	}
	commitAt := make([]atomic.Int64, len(rows))
	r.recvAt = make([]atomic.Int64, len(rows))

	var hold *pgx.Conn
	if cfg.backlog {
		hold, err = pgx.Connect(ctx, cfg.databaseURL)
		if err == nil {
			_, err = hold.Exec(ctx, `SELECT pg_advisory_lock($1)`, appendLock)
		}
		if err != nil {
			r.noteErr("hold the append lock", err)
			r.closeAll(subs)
			r.fillCommon(res)
			return res
		}
		defer hold.Close(context.Background())
	}
	settle(ctx, cfg.settle)
	cw := startCPU(r)
	start := time.Now()
	b := max(cfg.batch, 1)
	nb := (len(rows) + b - 1) / b
	_, _, took := publishPaced(ctx, r, nb, cfg.rate/float64(b), cfg.publishers, func(j int) error {
		lo, hi := j*b, min(len(rows), (j+1)*b)
		ids := make([]int64, 0, hi-lo)
		owners := make([]string, 0, hi-lo)
		markers := make([]string, 0, hi-lo)
		for k := lo; k < hi; k++ {
			ids = append(ids, int64(k))
			owners = append(owners, rows[k].s.user)
			// The marker's time field is the row's index: the commit
			// time is known only after COMMIT.
			markers = append(markers, r.body(rows[k].seq, time.Unix(0, int64(k))))
		}
		var err error
		if b == 1 {
			_, err = pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, owner, marker) VALUES ($1, $2, $3)`, table), ids[0], owners[0], markers[0])
		} else {
			_, err = pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, owner, marker) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])`, table), ids, owners, markers)
		}
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		for k := lo; k < hi; k++ {
			commitAt[k].Store(now)
			rows[k].s.expected.set(rows[k].seq)
		}
		return nil
	})
	var okN int64
	for _, s := range subs {
		okN += int64(s.expected.count())
	}
	res.Published, res.PublishErrors = okN, int64(len(rows))-okN
	res.PublishSeconds = round(took.Seconds(), 3)
	if took > 0 {
		res.PublishRate = round(float64(okN)/took.Seconds(), 1)
	}
	res.Expected = okN
	drainStart := start
	if hold != nil {
		drainStart = time.Now()
		if _, err := hold.Exec(ctx, `SELECT pg_advisory_unlock($1)`, appendLock); err != nil {
			r.noteErr("release the append lock", err)
		}
		res.Params["backlogSeconds"] = res.PublishSeconds
	}
	r.waitDelivered(ctx, res.Expected, cfg.drain)
	cw.finish(res, r.delivered.Load())
	if last := r.lastRecv.Load(); last > 0 {
		res.DeliveryPS = round(float64(r.delivered.Load())/time.Unix(0, last).Sub(drainStart).Seconds(), 1)
		if hold != nil {
			res.CatchUpSecs = round(time.Unix(0, last).Sub(drainStart).Seconds(), 3)
		}
	}
	for k := range rows {
		c, got := commitAt[k].Load(), r.recvAt[k].Load()
		if c > 0 && got > 0 {
			if hold != nil {
				c = max(c, drainStart.UnixNano())
			}
			r.lat.record(k, time.Duration(max(got-c, 0)))
		}
	}
	var left int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(n), 0) FROM push.outbox`).Scan(&left); err == nil && left > 0 {
		r.noteErr(fmt.Sprintf("%d changes still in push.outbox", left), nil)
	}
	res.Missing = missing(subs)
	r.closeAll(subs)
	r.fillCommon(res)
	res.OK = res.ConnectFailed == 0 && res.PublishErrors == 0 && res.Missing == 0 && res.Duplicates == 0
	return res
}

func sep(url string) string {
	if bytes.ContainsRune([]byte(url), '?') {
		return "&"
	}
	return "?"
}
