package persist

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pushd/pushd/internal/pgtest"
)

// BenchmarkWatchedWrite is what push.watch_table's triggers cost the
// application: the same writes to three tables of the same shape,
// unwatched, watched (one pg_notify per statement) and watched with
// notify => false. Every round writes to each table in turn, so the three
// share the host's noise; the figures are per table over all rounds. No
// relay runs, so only the application's side is measured (the outbox just
// grows). Single-row INSERT transactions from 1 and 16 writers, and
// 10 000-row INSERT ... SELECT statements.
func BenchmarkWatchedWrite(b *testing.B) {
	db := pgtest.NewDB(b)
	if err := Migrate(bg, db); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(bg, db+"&pool_max_conns=20")
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	for _, q := range []string{
		`CREATE TABLE unwatched (id bigserial PRIMARY KEY, owner text NOT NULL, status text, total numeric)`,
		`CREATE TABLE watched (LIKE unwatched INCLUDING ALL)`,
		`CREATE TABLE quiet (LIKE unwatched INCLUDING ALL)`,
		`SELECT push.watch_table('watched', 'owner')`,
		`SELECT push.watch_table('quiet', 'owner', notify => false)`,
	} {
		if _, err := pool.Exec(bg, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	tables := []string{"unwatched", "watched", "quiet"}
	// rounds runs do(table) for every table per round and reports
	// units/s per table and each watched table's ratio to the unwatched.
	rounds := func(b *testing.B, units int, unit string, do func(table string) error) {
		took := make([]time.Duration, len(tables))
		for range b.N {
			for i, tbl := range tables {
				start := time.Now()
				if err := do(tbl); err != nil {
					b.Fatal(err)
				}
				took[i] += time.Since(start)
			}
		}
		for i, tbl := range tables {
			b.ReportMetric(float64(b.N*units)/took[i].Seconds(), unit+"/s-"+tbl)
			if i > 0 {
				b.ReportMetric(took[0].Seconds()/took[i].Seconds(), "x-"+tbl)
			}
		}
	}
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("row/writers=%d", writers), func(b *testing.B) {
			const perRound = 400
			rounds(b, perRound, "tx", func(tbl string) error {
				insert := fmt.Sprintf(`INSERT INTO %s (owner, status, total) VALUES ($1, 'new', 42)`, tbl)
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, writers)
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := next.Add(1); i <= perRound; i = next.Add(1) {
							if _, err := pool.Exec(context.Background(), insert, fmt.Sprint("u", i%1000)); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				return <-errs
			})
		})
	}
	b.Run("statement10k", func(b *testing.B) {
		rounds(b, 10000, "rows", func(tbl string) error {
			_, err := pool.Exec(bg, fmt.Sprintf(`INSERT INTO %s (owner, status, total) SELECT 'u' || (g %% 1000), 'new', g FROM generate_series(1, 10000) g`, tbl))
			return err
		})
	})
}
