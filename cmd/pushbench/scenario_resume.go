package main

import (
	"context"
	"fmt"
	"time"
)

// runResumeStorm connects N clients, delivers one "prime" broadcast so each
// has a last event id, disconnects them all, publishes M messages each one
// misses (--miss-via broadcast: M broadcasts; unicast: M notifications per
// user through the batch API), then reconnects all at once with their last
// ids and measures the time until every client has every missed message.
func runResumeStorm(ctx context.Context, r *run) *result {
	cfg := r.cfg
	res := &result{Scenario: "resume-storm", Params: map[string]any{"n": cfg.n, "m": cfg.m, "missVia": cfg.missVia, "connectConcurrency": cfg.connectConcurrency}}
	shared := newBitset(cfg.m + 1)
	expected := func(int) *bitset { return shared }
	if cfg.missVia == "unicast" {
		expected = func(int) *bitset { return newBitset(cfg.m + 1) }
	}
	subs, ok := connectPhase(ctx, r, res, cfg.n, expected, cfg.m+1)
	if !ok || len(subs) == 0 {
		r.fillCommon(res)
		return res
	}
	// Prime: seq 0, so every client holds an event id of this run.
	if err := r.t.broadcast(ctx, "pushbench", r.body(0, time.Now())); err != nil {
		r.noteErr("prime broadcast", err)
		r.closeAll(subs)
		r.fillCommon(res)
		return res
	}
	for _, s := range subs {
		s.expected.set(0)
	}
	if !r.waitDelivered(ctx, int64(len(subs)), cfg.drain) {
		r.noteErr(fmt.Sprintf("prime broadcast reached %d of %d clients", r.delivered.Load(), len(subs)), nil)
	}
	r.closeAll(subs)

	// Publish what they all miss.
	var okN, failN int64
	var took time.Duration
	if cfg.missVia == "unicast" {
		b := max(cfg.batch, 1)
		total := len(subs) * cfg.m
		nb := (total + b - 1) / b
		_, _, took = publishPaced(ctx, r, nb, 0, cfg.publishers, func(j int) error {
			lo, hi := j*b, min(total, (j+1)*b)
			items := make([]batchItem, 0, hi-lo)
			now := time.Now()
			for k := lo; k < hi; k++ {
				// message k: seq 1+k/len(subs) for user k%len(subs), so
				// each user's messages are published in seq order.
				s := subs[k%len(subs)]
				items = append(items, batchItem{Kind: "notification", UserID: s.user, Title: "pushbench", Body: r.body(1+k/len(subs), now)})
			}
			var err error
			if b == 1 {
				err = r.t.notify(ctx, items[0].UserID, items[0].Title, items[0].Body)
			} else {
				err = r.t.batch(ctx, items)
			}
			if err != nil {
				return err
			}
			for k := lo; k < hi; k++ {
				subs[k%len(subs)].expected.set(1 + k/len(subs))
			}
			return nil
		})
		var n int64
		for _, s := range subs {
			n += int64(s.expected.count() - 1)
		}
		okN, failN = n, int64(total)-n
		res.Expected = int64(len(subs)) + okN
	} else {
		// Broadcasts one after the other, so they keep their order.
		okN, failN, took = publishPaced(ctx, r, cfg.m, 0, 1, func(i int) error {
			if err := r.t.broadcast(ctx, "pushbench", r.body(i+1, time.Now())); err != nil {
				return err
			}
			shared.set(i + 1)
			return nil
		})
		res.Expected = int64(len(subs)) * (1 + okN)
	}
	res.Published, res.PublishErrors = okN, failN
	res.PublishSeconds = round(took.Seconds(), 3)
	if took > 0 {
		res.PublishRate = round(float64(okN)/took.Seconds(), 1)
	}
	settle(ctx, cfg.settle)

	// The storm.
	cw := startCPU(r)
	primed := r.delivered.Load()
	stormStart := time.Now()
	connTook, failed := r.connectAll(ctx, subs, true)
	cw.connectCPU(res, len(subs)-failed)
	if failed > 0 {
		res.ConnectFailed += failed
	}
	caught := r.waitDelivered(ctx, res.Expected, cfg.drain)
	cw.finish(res, r.delivered.Load()-primed)
	if last := r.lastRecv.Load(); last > stormStart.UnixNano() && caught {
		res.CatchUpSecs = round(time.Unix(0, last).Sub(stormStart).Seconds(), 3)
		res.DeliveryPS = round(float64(r.delivered.Load()-primed)/time.Unix(0, last).Sub(stormStart).Seconds(), 1)
	}
	res.ReconnectSecs = round(connTook.Seconds(), 3)
	res.Missing = missing(subs)
	r.closeAll(subs)
	r.fillCommon(res)
	res.OK = res.ConnectFailed == 0 && failN == 0 && res.Missing == 0 && res.Duplicates == 0
	return res
}
