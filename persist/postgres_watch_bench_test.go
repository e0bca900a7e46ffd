package persist

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pushd/pushd/internal/pgtest"
)

// BenchmarkWatchedWrite is what push.watch_table's triggers cost the
// application: the same writes to the same kind of table, unwatched,
// watched (one pg_notify per statement) and watched with notify => false,
// side by side in one run. No relay runs, so only the application's side
// is measured (the outbox just grows). Single-row INSERT transactions from
// 1 and 16 writers, and 10 000-row INSERT ... SELECT statements.
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
	for _, writers := range []int{1, 16} {
		for _, tbl := range tables {
			b.Run(fmt.Sprintf("row/writers=%d/%s", writers, tbl), func(b *testing.B) {
				insert := fmt.Sprintf(`INSERT INTO %s (owner, status, total) VALUES ($1, 'new', 42)`, tbl)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							if _, err := pool.Exec(context.Background(), insert, fmt.Sprint("u", i%1000)); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
			})
		}
	}
	for _, tbl := range tables {
		b.Run("statement10k/"+tbl, func(b *testing.B) {
			insert := fmt.Sprintf(`INSERT INTO %s (owner, status, total) SELECT 'u' || (g %% 1000), 'new', g FROM generate_series(1, 10000) g`, tbl)
			for range b.N {
				if _, err := pool.Exec(bg, insert); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*10000/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
