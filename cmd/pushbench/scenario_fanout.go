package main

import (
	"context"
	"time"
)

// runFanout connects N subscribers and publishes M broadcasts through
// POST /api/ws/broadcast at --rate: every subscriber must receive every
// broadcast exactly once.
func runFanout(ctx context.Context, r *run) *result {
	cfg := r.cfg
	res := &result{Scenario: "fanout", Params: map[string]any{"n": cfg.n, "m": cfg.m, "rate": cfg.rate, "publishers": cfg.publishers}}
	expected := newBitset(cfg.m)
	subs, ok := connectPhase(ctx, r, res, cfg.n, func(int) *bitset { return expected }, cfg.m)
	if !ok {
		r.fillCommon(res)
		return res
	}
	settle(ctx, cfg.settle)
	cw := startCPU(r.t.pid)
	start := time.Now()
	okN, failN, took := publishPaced(ctx, r, cfg.m, cfg.rate, cfg.publishers, func(i int) error {
		if err := r.t.broadcast(ctx, "pushbench", r.body(i, time.Now())); err != nil {
			return err
		}
		expected.set(i)
		return nil
	})
	res.Published, res.PublishErrors = okN, failN
	res.PublishSeconds = round(took.Seconds(), 3)
	res.PublishRate = round(float64(okN)/took.Seconds(), 1)
	res.Expected = okN * int64(len(subs))
	r.waitDelivered(ctx, res.Expected, cfg.drain)
	cw.finish(res, r.delivered.Load())
	if last := r.lastRecv.Load(); last > 0 {
		res.DeliveryPS = round(float64(r.delivered.Load())/time.Unix(0, last).Sub(start).Seconds(), 1)
	}
	res.Missing = missing(subs)
	r.closeAll(subs)
	r.fillCommon(res)
	res.OK = res.ConnectFailed == 0 && failN == 0 && res.Missing == 0 && res.Duplicates == 0
	return res
}
