package persist

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/stream"
)

// crashCycles is how many times TestPostgresCrashMidCommit crashes the
// server; PUSHD_CRASH_CYCLES asks for more.
func crashCycles(t *testing.T) int {
	if v := os.Getenv("PUSHD_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("PUSHD_CRASH_CYCLES=%q: want a positive count", v)
		}
		return n
	}
	return 12
}

// outcomeLog collects what publishers were answered, by the body each one
// sent (unique per append).
type outcomeLog struct {
	mu               sync.Mutex
	ok               map[string]uint64 // body -> seq
	refused, unknown []string
	otherErrs        []error
}

func (o *outcomeLog) record(body string, ms []*stream.Message, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		o.ok[body] = ms[0].Seq
	case errors.Is(err, stream.ErrOutcomeUnknown):
		o.unknown = append(o.unknown, body)
	case errors.Is(err, stream.ErrUnavailable):
		o.refused = append(o.refused, body)
	default:
		o.otherErrs = append(o.otherErrs, err)
	}
}

// TestPostgresCrashMidCommit crashes PostgreSQL (pg_ctl stop -m immediate)
// again and again while publishers append, and restarts it. Every append
// answered as stored is in the log at its position, every append refused as
// unavailable is not (a retry never duplicates), and the feed delivers every
// stored message exactly once, in order. Commits cut off in flight are
// settled by asking the server after it is back.
func TestPostgresCrashMidCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("crashes a PostgreSQL cluster of its own for ~30 s")
	}
	cluster := pgtest.NewCluster(t)
	url := cluster.NewDB(t)
	// The server's replies reach the store late, so a crash often cuts off
	// the reply to a commit that went through: the case where answering
	// 503 would be a lie.
	s := openPG(t, pgtest.LagProxy(t, url, 15*time.Millisecond), big())
	var fed feedLog
	s.SetFeed(fed.feed)
	log := &outcomeLog{ok: map[string]uint64{}}

	stop := untilStopped(6, func(w, i int) {
		body := strconv.Itoa(w*1_000_000 + i)
		d := stream.Draft{Type: stream.TypeNotification, UserID: "u" + strconv.Itoa(w), Payload: []byte(`{"title":"t","body":"` + body + `"}`)}
		ctx, cancel := context.WithTimeout(bg, 20*time.Second)
		ms, err := s.Append(ctx, []stream.Draft{d})
		cancel()
		log.record(body, ms, err)
		if err != nil {
			time.Sleep(20 * time.Millisecond) // a publisher backs off a little
		}
	})
	for range crashCycles(t) {
		time.Sleep(time.Duration(150+rand.IntN(250)) * time.Millisecond)
		cluster.Crash(t)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		cluster.Start(t)
	}
	attempt := 0
	waitUntil(t, "an append to succeed after the last restart", 20*time.Second, func() bool {
		attempt++
		body := "after-" + strconv.Itoa(attempt)
		ms, err := s.Append(bg, []stream.Draft{{Type: stream.TypeNotification, UserID: "after", Payload: []byte(`{"title":"t","body":"` + body + `"}`)}})
		log.record(body, ms, err)
		return err == nil
	})
	stop()

	stored := readBodies(t, url)
	log.mu.Lock()
	defer log.mu.Unlock()
	oc := &s.outcomes
	t.Logf("%d cycles: %d stored (%d answered stored), %d refused, %d in doubt; commits in doubt settled: %d committed, %d not, %d unknown",
		crashCycles(t), len(stored), len(log.ok), len(log.refused), len(log.unknown), oc.committed.Load(), oc.notCommitted.Load(), oc.unknown.Load())
	for _, err := range log.otherErrs {
		t.Errorf("append failed with %v: neither stored, refused nor in doubt", err)
	}
	for body, seq := range log.ok {
		if got, ok := stored[body]; !ok || got != seq {
			t.Errorf("append %s answered stored at %d, but the log has it at %d (present: %v)", body, seq, got, ok)
		}
	}
	for _, body := range log.refused {
		if seq, ok := stored[body]; ok {
			t.Errorf("append %s answered unavailable (503), but it was committed at %d: a retry would duplicate it", body, seq)
		}
	}
	maxSeq := uint64(0)
	for _, seq := range stored {
		maxSeq = max(maxSeq, seq)
	}
	waitUntil(t, "the feed to deliver every stored message", 20*time.Second, func() bool { return fed.len() >= len(stored) })
	time.Sleep(100 * time.Millisecond)
	fed.dense(t, "feed", len(stored))
	if maxSeq != uint64(len(stored)) {
		t.Errorf("log positions are not dense: %d messages, highest %d", len(stored), maxSeq)
	}
	if oc.committed.Load() == 0 {
		t.Error("no crash cut off the reply to a commit that went through: the test did not test what it is for")
	}
}

// readBodies returns every stored message's body -> seq, read on a
// connection of its own.
func readBodies(t *testing.T, url string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	rows, err := conn.Query(ctx, `SELECT convert_from(payload, 'UTF8')::json->>'body', seq FROM push.messages`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	var body string
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&body, &seq}, func() error {
		if prev, dup := out[body]; dup {
			t.Errorf("body %s stored twice, at %d and %d", body, prev, seq)
		}
		out[body] = uint64(seq)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPostgresOutcomeWaitsForTheOldBackend: a commit in doubt whose backend
// is still there (the server did not notice the cut) is not called "not
// committed" while that backend could still commit: the store ends it, and
// only then reads the outcome.
func TestPostgresOutcomeWaitsForTheOldBackend(t *testing.T) {
	url := pgtest.NewDB(t)
	s := openPG(t, url, big())
	s.SetFeed(func([]*stream.Message) {})
	mustAppend(t, s, note("a", 1)) // the writer's row exists: mark 1

	// The old backend: in a transaction that has written the next mark but
	// not committed.
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	old, err := pgx.ConnectConfig(bg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(bg)
	if err := rememberBackend(bg, old); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(bg, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(bg, sqlMarkGroup, s.node, int64(2), int64(0)); err != nil {
		t.Fatal(err)
	}
	f := &flight{mark: 2, n: 1, pid: old.PgConn().PID()}
	f.start, _ = old.PgConn().CustomData()[backendStartKey].(time.Time)

	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if _, _, err := s.learn(ctx, f); !errors.Is(err, errBackendAlive) {
		t.Fatalf("learn with the old backend in its transaction: %v, want errBackendAlive", err)
	}
	waitUntil(t, "the old backend to be ended", 5*time.Second, func() bool {
		return old.Ping(bg) != nil
	})
	_, committed, err := s.learn(ctx, f)
	if err != nil || committed {
		t.Fatalf("learn after the old backend ended: committed %v, err %v; want not committed", committed, err)
	}
	base, err := s.settle(bg, f, io.ErrUnexpectedEOF)
	if !errors.Is(err, stream.ErrUnavailable) || errors.Is(err, stream.ErrOutcomeUnknown) {
		t.Fatalf("settle: base %d, err %v; want ErrUnavailable", base, err)
	}
}

// TestPostgresOutcomeUnknown: when the database stays out of reach for the
// whole window, a commit in doubt is reported as ErrOutcomeUnknown, not as
// an outage (which would promise it was not stored).
func TestPostgresOutcomeUnknown(t *testing.T) {
	direct := pgtest.NewDB(t)
	proxy, url := viaProxy(t, direct)
	s := openPG(t, url, big())
	s.SetFeed(func([]*stream.Message) {})
	mustAppend(t, s, note("a", 1))
	s.outcomeWindow = time.Second
	proxy.Cut()
	start := time.Now()
	_, err := s.settle(bg, &flight{mark: 99, n: 1}, io.ErrUnexpectedEOF)
	if !errors.Is(err, stream.ErrOutcomeUnknown) || errors.Is(err, stream.ErrUnavailable) {
		t.Fatalf("settle with the database out of reach: %v, want ErrOutcomeUnknown only", err)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Fatalf("settle gave up after %v, want about the window (1s)", d)
	}
	if s.outcomes.unknown.Load() != 1 {
		t.Fatalf("unknown outcomes counted: %d", s.outcomes.unknown.Load())
	}
}

// TestPostgresClosedWhileIdle: a pool connection the server ended while it
// sat idle is told from a live one without a round trip, so an append is
// not sent on it (and then left in doubt).
func TestPostgresClosedWhileIdle(t *testing.T) {
	url := pgtest.NewDB(t)
	s := openPG(t, url, big())
	conn, err := s.pool.Acquire(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	if closedWhileIdle(pc) {
		t.Fatal("a live idle connection taken for closed")
	}
	other, err := pgx.Connect(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(bg)
	if _, err := other.Exec(bg, `SELECT pg_terminate_backend($1)`, int32(pc.PID())); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the ended connection to be told closed", 5*time.Second, func() bool { return closedWhileIdle(pc) })
}
