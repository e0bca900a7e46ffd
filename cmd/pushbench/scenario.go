package main

import (
	"context"
	"time"
)

// scenario is one kind of run. baseline reports whether the baseline server
// can take part (it keeps no history, so it cannot resume).
type scenario struct {
	run         func(ctx context.Context, r *run) *result
	baseline    bool
	defaultRate float64
	doc         string
}

var scenarios = map[string]scenario{
	"idle":         {run: runIdle, baseline: true, doc: "N idle connections: connect rate, server RSS per connection, idle CPU"},
	"fanout":       {run: runFanout, baseline: true, defaultRate: 10, doc: "N subscribers x M broadcasts: latency, deliveries/s, CPU per 1000 deliveries"},
	"unicast":      {run: runUnicast, baseline: true, doc: "N users, M messages to random users (--batch for the batch API): publish and delivery rate"},
	"resume-storm": {run: runResumeStorm, baseline: false, doc: "N clients miss M messages, all resume at once: time until all caught up"},
	"db-changes":   {run: runDBChanges, baseline: false, doc: "M rows committed to a push.watch_table() table (--database-url): changes/s and commit->client latency"},
}

// connected returns the subscribers whose connection is open.
func connected(subs []*sub) []*sub {
	var out []*sub
	for _, s := range subs {
		s.mu.Lock()
		if s.conn != nil {
			out = append(out, s)
		}
		s.mu.Unlock()
	}
	return out
}

// connectPhase fetches tokens for n new users and connects them, filling the
// connection figures of res. It returns the connected subscribers.
func connectPhase(ctx context.Context, r *run, res *result, n int, expected func(i int) *bitset, gotCap int) ([]*sub, bool) {
	subs, err := r.makeSubs(ctx, n, expected, gotCap)
	if err != nil {
		r.noteErr("token", err)
		return nil, false
	}
	took, failed := r.connectAll(ctx, subs, false)
	res.Connections = n - failed
	res.ConnectFailed = failed
	res.ConnectSeconds = round(took.Seconds(), 3)
	if took > 0 {
		res.ConnectRate = round(float64(res.Connections)/took.Seconds(), 1)
	}
	return connected(subs), true
}

func settle(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}
