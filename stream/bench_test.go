package stream_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pushd/pushd/persist"
	"github.com/pushd/pushd/stream"
)

// countingTransport stands in for a socket: it counts what the pump writes.
type countingTransport struct {
	writes, items atomic.Int64
}

func (c *countingTransport) Write(items []stream.Item) error {
	c.writes.Add(1)
	c.items.Add(int64(len(items)))
	for _, it := range items {
		if it.Msg != nil {
			_ = it.Msg.JSON() // render, as a transport would
		}
	}
	return nil
}
func (c *countingTransport) Finish(stream.CloseReason) {}

// BenchmarkBroadcastFanout: one broadcast to N started sessions, through the
// store, the dispatcher and the pumps, until every session has written it.
// Reports writes per delivery: below 1 means coalescing happened.
func BenchmarkBroadcastFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint("subscribers=", n), func(b *testing.B) {
			m := stream.NewManager(persist.NewMemory(stream.Retention{MaxCount: 100, TTL: time.Hour}), stream.Config{QueueLimit: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
			// The hooks as the API installs them: the histograms' cost is
			// part of every write.
			toWrite := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "w", Buckets: prometheus.ExponentialBuckets(0.00025, 2, 17)})
			storeOps := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "s", Buckets: prometheus.ExponentialBuckets(0.00025, 2, 17)})
			m.SetObserver(stream.Observer{
				PublishToWrite: func(d time.Duration) { toWrite.Observe(d.Seconds()) },
				StoreOperation: func(_ stream.StoreOp, d time.Duration) { storeOps.Observe(d.Seconds()) },
			})
			tr := &countingTransport{}
			for i := range n {
				s := m.NewSession(fmt.Sprint("u", i), "bench", "", "")
				if err := m.Attach(ctx, s, ""); err != nil {
					b.Fatal(err)
				}
				s.Start(tr)
			}
			for tr.items.Load() < int64(n) { // connected events
				time.Sleep(time.Millisecond)
			}
			base := tr.items.Load()
			baseWrites := tr.writes.Load()
			p, _ := json.Marshal(map[string]string{"title": "t", "body": "b"})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Publish(ctx, []stream.Draft{{Type: stream.TypeNotification, Payload: p}}); err != nil {
					b.Fatal(err)
				}
			}
			want := base + int64(b.N)*int64(n)
			for tr.items.Load() < want {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			deliveries := float64(b.N) * float64(n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/deliveries, "ns/delivery")
			b.ReportMetric(float64(tr.writes.Load()-baseWrites)/deliveries, "writes/delivery")
			m.Shutdown(ctx)
		})
	}
}
