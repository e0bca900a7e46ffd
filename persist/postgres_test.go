package persist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushd/pushd/internal/pgtest"
	pushsql "github.com/pushd/pushd/sql"
	"github.com/pushd/pushd/stream"
	"github.com/pushd/pushd/stream/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var bg = context.Background()

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// openPG opens a store on url and closes it when t ends.
func openPG(t testing.TB, url string, r stream.Retention) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	s, err := OpenPostgres(ctx, url, r, quietLogger())
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(bg) })
	return s
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, r stream.Retention) storetest.Store {
		return openPG(t, pgtest.NewDB(t), r)
	})
}

func big() stream.Retention { return stream.Retention{MaxCount: 100000, TTL: 24 * time.Hour} }

func note(user string, n int) stream.Draft {
	return stream.Draft{Type: stream.TypeNotification, UserID: user, Payload: []byte(fmt.Sprintf(`{"title":"t","body":"%d"}`, n))}
}

func bcast(n int, exclude ...string) stream.Draft {
	return stream.Draft{Type: stream.TypeNotification, Exclude: exclude, Payload: []byte(fmt.Sprintf(`{"title":"b","body":"%d"}`, n))}
}

func mustAppend(t testing.TB, s stream.Store, ds ...stream.Draft) []*stream.Message {
	t.Helper()
	ms, err := s.Append(bg, ds)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return ms
}

// feedLog collects what a store's feed delivers.
type feedLog struct {
	mu   sync.Mutex
	seqs []uint64
}

func (f *feedLog) feed(b []*stream.Message) {
	f.mu.Lock()
	for _, m := range b {
		f.seqs = append(f.seqs, m.Seq)
	}
	f.mu.Unlock()
}

func (f *feedLog) len() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.seqs) }

// dense fails unless the feed delivered exactly 1..n, in order.
func (f *feedLog) dense(t *testing.T, who string, n int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seqs) != n {
		t.Fatalf("%s: feed delivered %d messages, want %d", who, len(f.seqs), n)
	}
	for i, s := range f.seqs {
		if s != uint64(i+1) {
			t.Fatalf("%s: feed position %d is seq %d (gap, duplicate or reorder)", who, i, s)
		}
	}
}

func waitUntil(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPostgresTwoNodesOrdering: two stores on one database are two nodes.
// Many publishers on both append concurrently while a reader tails the
// broadcast stream with ReadStream(after = last seen): if a position ever
// became visible before a lower one, the reader would pass over the lower
// one and never see it. Both feeds must deliver every position exactly once,
// in order, whichever node appended it.
func TestPostgresTwoNodesOrdering(t *testing.T) {
	url := pgtest.NewDB(t)
	ret := big()
	a, b := openPG(t, url, ret), openPG(t, url, ret)
	var fa, fb feedLog
	a.SetFeed(fa.feed)
	b.SetFeed(fb.feed)

	const writers, each = 16, 60 // per node
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, node := range []*Postgres{a, b} {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					ds := []stream.Draft{bcast(i)}
					if i%3 == 0 {
						ds = append(ds, note(fmt.Sprint("u", w), i)) // multi-draft appends too
					}
					if _, err := node.Append(bg, ds); err != nil {
						t.Errorf("append: %v", err)
						return
					}
					total.Add(int64(len(ds)))
				}
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	reader := openPG(t, url, ret)
	reader.SetFeed(func([]*stream.Message) {})
	var after uint64
	seen := 0
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		msgs, _, err := reader.ReadStream(bg, "tail", after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Seq <= after {
				t.Fatalf("reader got %d after %d", m.Seq, after)
			}
			after = m.Seq
			seen++
		}
	}
	for { // drain what committed after the last read
		msgs, _, err := reader.ReadStream(bg, "tail", after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		seen += len(msgs)
		after = msgs[len(msgs)-1].Seq
	}
	if want := 2 * writers * each; seen != want {
		t.Fatalf("tailing reader saw %d broadcasts, want %d: it skipped ids", seen, want)
	}
	n := int(total.Load())
	waitUntil(t, "both feeds", 15*time.Second, func() bool { return fa.len() >= n && fb.len() >= n })
	time.Sleep(50 * time.Millisecond) // a duplicate would arrive now
	fa.dense(t, "node a", n)
	fb.dense(t, "node b", n)
}

// TestPostgresSlowFeedStaysDense: while a slow dispatch runs, commits of
// this node queue up for the tail, which hands them over together (or reads
// them back when too many queued); either way the feed sees every position
// once, in order.
func TestPostgresSlowFeedStaysDense(t *testing.T) {
	st := openPG(t, pgtest.NewDB(t), big())
	var f feedLog
	var calls, biggest atomic.Int64
	st.SetFeed(func(b []*stream.Message) {
		calls.Add(1)
		if n := int64(len(b)); n > biggest.Load() {
			biggest.Store(n)
		}
		time.Sleep(3 * time.Millisecond)
		f.feed(b)
	})
	const writers, each = 16, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := st.Append(bg, []stream.Draft{note(fmt.Sprint("u", w), i)}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitUntil(t, "the feed", 15*time.Second, func() bool { return f.len() >= writers*each })
	time.Sleep(50 * time.Millisecond) // a duplicate would arrive now
	f.dense(t, "slow feed", writers*each)
	t.Logf("%d feed calls, largest %d messages", calls.Load(), biggest.Load())
}

// TestPostgresRestart: a new store on the same database sees the old log,
// cursors, counters and epoch.
func TestPostgresRestart(t *testing.T) {
	url := pgtest.NewDB(t)
	r := stream.Retention{MaxCount: 2, TTL: time.Hour}
	s1 := openPG(t, url, r)
	s1.SetFeed(func([]*stream.Message) {})
	ms := mustAppend(t, s1, note("a", 1), note("a", 2), note("a", 3), note("b", 1))
	if err := s1.MarkDelivered(bg, []stream.Delivery{{UserID: "b", Seq: ms[3].Seq, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	epoch := s1.Epoch()
	if err := s1.Close(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Head(bg); !errors.Is(err, stream.ErrUnavailable) {
		t.Fatalf("closed store: err = %v, want ErrUnavailable", err)
	}

	s2 := openPG(t, url, r)
	s2.SetFeed(func([]*stream.Message) {})
	if s2.Epoch() != epoch {
		t.Fatalf("epoch changed across restart: %s -> %s", epoch, s2.Epoch())
	}
	if h, err := s2.Head(bg); err != nil || h != ms[3].Seq {
		t.Fatalf("head = %d, %v; want %d", h, err, ms[3].Seq)
	}
	got, trimmed, err := s2.ReadStream(bg, "a", 0, 100)
	if err != nil || len(got) != 2 || got[0].ID != ms[1].ID || got[1].ID != ms[2].ID || !trimmed {
		t.Fatalf("a after restart: %v trimmed=%v err=%v", got, trimmed, err)
	}
	if string(got[1].Payload) != string(ms[2].Payload) || got[1].Timestamp != ms[2].Timestamp {
		t.Fatalf("message changed across restart: %+v vs %+v", got[1], ms[2])
	}
	if seq, known, err := s2.DeliveredCursor(bg, "b"); err != nil || !known || seq != ms[3].Seq {
		t.Fatalf("cursor of b = %d %v %v", seq, known, err)
	}
	st, err := s2.QueueStats(bg)
	if err != nil || st.DeliveredMessages != 1 || st.ExpiredMessages != 1 || st.PendingMessages != 2 {
		t.Fatalf("stats after restart = %+v, %v", st, err)
	}
	// Positions continue, never reused.
	if m := mustAppend(t, s2, note("c", 1)); m[0].Seq != ms[3].Seq+1 {
		t.Fatalf("next position %d, want %d", m[0].Seq, ms[3].Seq+1)
	}
}

// TestPostgresEpochPerDatabase: a wiped (here: another) database has another
// epoch, so its ids do not parse.
func TestPostgresEpochPerDatabase(t *testing.T) {
	a := openPG(t, pgtest.NewDB(t), big())
	b := openPG(t, pgtest.NewDB(t), big())
	a.SetFeed(func([]*stream.Message) {})
	if a.Epoch() == b.Epoch() || len(a.Epoch()) != 8 || strings.Contains(a.Epoch(), "-") {
		t.Fatalf("epochs %q and %q", a.Epoch(), b.Epoch())
	}
	m := mustAppend(t, a, note("x", 1))
	if _, ok := stream.ParseID(b.Epoch(), m[0].ID); ok {
		t.Fatal("id of one database parsed under the other's epoch")
	}
}

// TestPostgresMigrate: idempotent, safe when several nodes start at once,
// and nothing lands in public.
func TestPostgresMigrate(t *testing.T) {
	url := pgtest.NewDB(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- Migrate(bg, url) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	if err := Migrate(bg, url); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	conn := connect(t, url)
	var versions, public, metaRows int
	if err := conn.QueryRow(bg, `SELECT count(*) FROM push.schema_migrations`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	all, _ := pushsql.Migrations()
	if versions != len(all) {
		t.Fatalf("%d versions recorded, want %d", versions, len(all))
	}
	if err := conn.QueryRow(bg, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`).Scan(&public); err != nil {
		t.Fatal(err)
	}
	if public != 0 {
		t.Fatalf("%d relations created in public", public)
	}
	if err := conn.QueryRow(bg, `SELECT count(*) FROM push.meta`).Scan(&metaRows); err != nil || metaRows != 1 {
		t.Fatalf("push.meta rows = %d, %v", metaRows, err)
	}
	if err := Migrate(bg, "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"); !errors.Is(err, stream.ErrUnavailable) {
		t.Fatalf("migrate against a closed port: %v, want ErrUnavailable", err)
	}
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(bg) })
	return conn
}

// TestPostgresIndexes: the per-connect and per-wake-up statements are index
// scans on a table large enough (and analysed) for a sequential scan to be
// chosen if no index fitted.
func TestPostgresIndexes(t *testing.T) {
	url := pgtest.NewDB(t)
	s := openPG(t, url, stream.Retention{MaxCount: 100, TTL: time.Hour})
	s.SetFeed(func([]*stream.Message) {})
	conn := connect(t, url)
	// 60k messages for 2000 users, some broadcasts and widgets, written
	// directly: the store's own path is not what is measured here.
	if _, err := conn.Exec(bg, `
INSERT INTO push.messages (seq, user_id, exclude, type, key, payload, ts)
SELECT g,
       CASE WHEN g % 50 = 0 THEN NULL ELSE 'u' || (g % 2000) END,
       CASE WHEN g % 100 = 0 THEN ARRAY['u1'] ELSE '{}' END,
       'notification',
       CASE WHEN g % 7 = 0 AND g % 50 <> 0 THEN 'w' || (g % 3) END,
       convert_to('{}', 'UTF8'),
       (extract(epoch FROM now()) * 1000)::bigint - 60000 + g
FROM generate_series(1, 60000) g;
UPDATE push.meta SET head = 60000;
ANALYZE push.messages`); err != nil {
		t.Fatal(err)
	}
	cut := s.cutoff(time.Now())
	plans := []struct {
		name string
		sql  string
		args []any
	}{
		{"ReadStream", sqlReadStream, []any{"u42", int64(100), cut, int64(0), int64(500)}},
		{"ReadStream resume", sqlReadStream, []any{"u42", int64(100), cut, int64(59000), int64(500)}},
		{"tail", `SELECT seq, user_id, exclude, type, key, payload, ts FROM push.messages WHERE seq > $1 ORDER BY seq LIMIT $2`, []any{int64(59990), tailPage}},
		{"trim on append", sqlTrimUsersOnAppend, []any{[]string{"u42", "u43"}, int64(100), cut, []int64{1, 2}, int64(2), []int64{-1, -1}, []int64{0, 0}, []int64{0, 0}, int64(-1), true}},
		{"trim in retention pass", sqlTrimUsers, []any{[]string{"u42", "u43"}, int64(100), cut}},
		{"supersede", sqlSupersede, []any{[]string{"u42"}, []string{"w1"}}},
		{"broadcast cap", sqlDropBroadcastsByCap, []any{int64(100)}},
		{"users by age", sqlUsersAged, []any{cut, "", int64(200)}},
		{"users loose scan", sqlUsersAll, []any{"", int64(200)}},
	}
	for _, p := range plans {
		rows, err := conn.Query(bg, "EXPLAIN "+p.sql, p.args...)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		plan := strings.Join(lines, "\n")
		if strings.Contains(plan, "Seq Scan on messages") {
			t.Errorf("%s scans push.messages sequentially:\n%s", p.name, plan)
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", p.name, plan)
		}
	}
}

// TestPostgresPurgeKeepsTrimmedExact: rows leave the table after the grace
// period, and "trimmed" stays exact through the watermarks.
func TestPostgresPurgeKeepsTrimmedExact(t *testing.T) {
	url := pgtest.NewDB(t)
	s := openPG(t, url, stream.Retention{MaxCount: 2, TTL: time.Hour})
	s.SetFeed(func([]*stream.Message) {})
	s.purgeAfter = 0
	ms := mustAppend(t, s, note("a", 1), bcast(2, "b"), bcast(3), note("a", 4), bcast(5), bcast(6))
	if _, err := s.Expire(bg); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := connect(t, url).QueryRow(bg, `SELECT count(*) FROM push.messages`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	// b2 and b3 have two newer plain broadcasts: outside every window.
	// a's window is b5, b6, so a1 and a4 are trimmed.
	if rows != 2 {
		t.Fatalf("%d rows left, want 2 (b5, b6)", rows)
	}
	check := func(user string, after uint64, want bool) {
		t.Helper()
		_, trimmed, err := s.ReadStream(bg, user, after, 10)
		if err != nil || trimmed != want {
			t.Fatalf("%s after %d: trimmed=%v err=%v, want %v", user, after, trimmed, err, want)
		}
	}
	check("a", 0, true)
	check("a", ms[4].Seq, false)
	check("a", ms[3].Seq, false)
	check("a", ms[2].Seq, true) // a4
	check("b", ms[2].Seq, false)
	check("b", ms[1].Seq, true) // b3; b2 never was b's
	check("b", 0, true)
	check("z", ms[1].Seq, true)
}

// TestPostgresPollWithoutNotify: a commit whose NOTIFY never arrives is fed
// by the poll.
func TestPostgresPollWithoutNotify(t *testing.T) {
	url := pgtest.NewDB(t)
	s := openPG(t, url, big())
	var f feedLog
	s.SetFeed(f.feed)
	conn := connect(t, url)
	// Another writer that follows the protocol except for NOTIFY.
	if _, err := conn.Exec(bg, `
SELECT pg_advisory_xact_lock(`+fmt.Sprint(pushsql.AppendLock)+`);
WITH h AS (UPDATE push.meta SET head = head + 1 RETURNING head)
INSERT INTO push.messages (seq, user_id, type, payload, ts)
SELECT head, 'a', 'notification', convert_to('{}', 'UTF8'), 1 FROM h`); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the poll", 5*time.Second, func() bool { return f.len() == 1 })
	mustAppend(t, s, note("a", 2))
	waitUntil(t, "the local commit", 5*time.Second, func() bool { return f.len() == 2 })
	f.dense(t, "feed", 2)
}

// TestPostgresOfflineDisabledStillBus: with MaxCount 0 nothing is kept, but
// every node's feed still gets every message.
func TestPostgresOfflineDisabledStillBus(t *testing.T) {
	url := pgtest.NewDB(t)
	r := stream.Retention{MaxCount: 0, TTL: time.Hour}
	a, b := openPG(t, url, r), openPG(t, url, r)
	var fa, fb feedLog
	a.SetFeed(fa.feed)
	b.SetFeed(fb.feed)
	for i := range 20 {
		mustAppend(t, a, note("u", i), bcast(i))
	}
	waitUntil(t, "node b's feed", 10*time.Second, func() bool { return fb.len() == 40 })
	fb.dense(t, "node b", 40)
	fa.dense(t, "node a", 40)
	got, trimmed, err := b.ReadStream(bg, "u", 0, 100)
	if err != nil || len(got) != 0 || !trimmed {
		t.Fatalf("offline disabled: %d kept, trimmed=%v, err=%v", len(got), trimmed, err)
	}
	st, _ := a.QueueStats(bg)
	if st.PendingMessages != 0 || st.ExpiredMessages != 40 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestPostgresBadDraft: a draft PostgreSQL cannot store fails alone.
func TestPostgresBadDraft(t *testing.T) {
	s := openPG(t, pgtest.NewDB(t), big())
	s.SetFeed(func([]*stream.Message) {})
	if _, err := s.Append(bg, []stream.Draft{note("a\x00b", 1)}); err == nil || errors.Is(err, stream.ErrUnavailable) || !errors.Is(err, stream.ErrRejected) {
		t.Fatalf("NUL in user id: err = %v, want a non-outage error wrapping ErrRejected", err)
	}
	mustAppend(t, s, note("a", 1))
}

// TestPostgresCloseUnderLoad: Close while publishers append: every Append
// returns (success or ErrUnavailable), nothing hangs.
func TestPostgresCloseUnderLoad(t *testing.T) {
	s := openPG(t, pgtest.NewDB(t), big())
	s.SetFeed(func([]*stream.Message) {})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_, err := s.Append(bg, []stream.Draft{note(fmt.Sprint("u", w), i)})
				if err != nil {
					if !errors.Is(err, stream.ErrUnavailable) {
						t.Errorf("append after close: %v", err)
					}
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if err := s.Close(bg); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("appenders still blocked 10s after Close")
	}
}

// TestPostgresCloseWaitsUntilCtx: Close waits for the writer's commit at
// most until its context ends, and then returns the context's error; once
// the commit can finish, Close returns nil.
func TestPostgresCloseWaitsUntilCtx(t *testing.T) {
	url := pgtest.NewDB(t)
	s := openPG(t, url, big())
	s.SetFeed(func([]*stream.Message) {})
	// Another session holds the append lock: the writer's next commit
	// waits for it.
	conn, err := pgx.Connect(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	if _, err := conn.Exec(bg, `SELECT pg_advisory_lock($1)`, pushsql.AppendLock); err != nil {
		t.Fatal(err)
	}
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(bg, []stream.Draft{note("a", 1)})
		appended <- err
	}()
	waitUntil(t, "the commit waiting for the lock", 10*time.Second, func() bool {
		var waiting bool
		err := conn.QueryRow(bg, `SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
			WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted)`).Scan(&waiting)
		return err == nil && waiting
	})
	short, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	if err := s.Close(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close while a commit waits: %v, want context.DeadlineExceeded", err)
	}
	if _, err := conn.Exec(bg, `SELECT pg_advisory_unlock($1)`, pushsql.AppendLock); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(bg); err != nil {
		t.Fatalf("Close once the commit could finish: %v, want nil", err)
	}
	if err := <-appended; err != nil {
		t.Fatalf("the append in flight during Close: %v, want it committed", err)
	}
}
