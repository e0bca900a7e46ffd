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
	cw := startCPU(r)
	start := time.Now()
	okN, failN, took := publishPaced(ctx, r, cfg.m, cfg.rate, cfg.publishers, func(i int) error {
		if err := r.t.broadcast(ctx, "pushbench", r.body(i, time.Now())); err != nil {
			return err
		}
		expected.set(i)
		return nil
	})
	r.finishPublished(ctx, cfg, res, cw, subs, start, took, okN, failN, okN*int64(len(subs)))
	return res
}
