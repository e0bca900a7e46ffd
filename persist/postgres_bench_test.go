package persist

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/pgtest"
	"github.com/pushd/pushd/stream"
)

// defaults: the retention pushd runs with unless configured otherwise.
var defaults = stream.Retention{MaxCount: 100, TTL: 24 * time.Hour}

// BenchmarkPostgresAppend: one-message appends from P concurrent
// publishers (to 1000 users); group commit is what makes P>1 scale.
func BenchmarkPostgresAppend(b *testing.B) {
	benchAppends(b, []int{1, 8, 64}, func(i int64) stream.Draft { return note(fmt.Sprint("u", i%1000), int(i)) })
}

// BenchmarkPostgresAppendKeyed: BenchmarkPostgresAppend with an
// idempotency key on every append (each new): the cost of the key lookup
// before the transaction and of the key's row in it.
func BenchmarkPostgresAppendKeyed(b *testing.B) {
	benchAppends(b, []int{8, 64}, func(i int64) stream.Draft {
		d := note(fmt.Sprint("u", i%1000), int(i))
		d.IdempotencyKey, d.Fingerprint = fmt.Sprint("key-", i), "fp"
		return d
	})
}

// benchAppends runs b.N one-draft appends, draft(i) for the i-th, from each
// count of concurrent publishers.
func benchAppends(b *testing.B, publishers []int, draft func(i int64) stream.Draft) {
	for _, p := range publishers {
		b.Run(fmt.Sprint("publishers=", p), func(b *testing.B) {
			s := openPG(b, pgtest.NewDB(b), defaults)
			s.SetFeed(func([]*stream.Message) {})
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range p {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := s.Append(bg, []stream.Draft{draft(i)}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkPostgresReplay: reading a 100-message backlog (what a connect
// with offline delivery does), among other users' messages and broadcasts.
func BenchmarkPostgresReplay(b *testing.B) {
	s := openPG(b, pgtest.NewDB(b), defaults)
	s.SetFeed(func([]*stream.Message) {})
	var ds []stream.Draft
	for i := range 3000 {
		switch {
		case i%30 == 0:
			ds = append(ds, bcast(i))
		case i%3 == 0:
			ds = append(ds, note("replay", i))
		default:
			ds = append(ds, note(fmt.Sprint("other", i%50), i))
		}
		if len(ds) == 500 {
			mustAppend(b, s, ds...)
			ds = ds[:0]
		}
	}
	msgs, _, err := s.ReadStream(bg, "replay", 0, 500)
	if err != nil || len(msgs) != 100 {
		b.Fatalf("backlog of %d messages, %v; want 100", len(msgs), err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := s.ReadStream(bg, "replay", 0, 500); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPostgresAppendBatch: 250-draft appends (what POST
// /api/ws/push/batch hands the store) to 10 000 users from 4 publishers:
// the store's share of the durable batch path, without HTTP or delivery.
// Reports messages/s and the mean time one Append waits for its commit.
func BenchmarkPostgresAppendBatch(b *testing.B) {
	const size, publishers = 250, 4
	s := openPG(b, pgtest.NewDB(b), defaults)
	s.SetFeed(func([]*stream.Message) {})
	var next atomic.Int64
	var waited atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			ds := make([]stream.Draft, size)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				for k := range ds {
					ds[k] = note(fmt.Sprint("u", (int(i)*size+k*7919)%10000), k)
				}
				t0 := time.Now()
				if _, err := s.Append(bg, ds); err != nil {
					b.Error(err)
					return
				}
				waited.Add(int64(time.Since(t0)))
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(waited.Load())/float64(b.N)/1e6, "ms/append")
}
