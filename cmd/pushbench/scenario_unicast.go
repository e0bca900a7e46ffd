package main

import (
	"context"
	"math/rand/v2"
	"time"
)

// runUnicast connects N users and sends M notifications to random users
// (POST /api/ws/push/notification, or /api/ws/push/batch with --batch > 1)
// from --publishers concurrent publishers at --rate messages/s (0 = as fast
// as the server answers).
func runUnicast(ctx context.Context, r *run) *result {
	cfg := r.cfg
	res := &result{Scenario: "unicast", Params: map[string]any{"n": cfg.n, "m": cfg.m, "rate": cfg.rate, "publishers": cfg.publishers, "batch": cfg.batch}}
	// Targets are drawn up front so every user's expected set has its exact
	// size; a user that fails to connect is not targeted.
	exp := make([]*bitset, cfg.n)
	subs, ok := connectPhase(ctx, r, res, cfg.n, func(i int) *bitset { return nil }, 0)
	if !ok || len(subs) == 0 {
		r.fillCommon(res)
		return res
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.seed), 1))
	type msg struct {
		s   *sub
		seq int
	}
	msgs := make([]msg, cfg.m)
	counts := make([]int, len(subs))
	for k := range msgs {
		u := rng.IntN(len(subs))
		msgs[k] = msg{subs[u], counts[u]}
		counts[u]++
	}
	for i, s := range subs {
		exp[i] = newBitset(counts[i])
		s.expected = exp[i]
		s.got = newBitset(counts[i])
	}
	settle(ctx, cfg.settle)
	cw := startCPU(r)
	start := time.Now()
	var okN, failN int64
	var took time.Duration
	if cfg.batch <= 1 {
		okN, failN, took = publishPaced(ctx, r, len(msgs), cfg.rate, cfg.publishers, func(k int) error {
			m := msgs[k]
			if err := r.t.notify(ctx, m.s.user, "pushbench", r.body(m.seq, time.Now())); err != nil {
				return err
			}
			m.s.expected.set(m.seq)
			return nil
		})
	} else {
		nb := (len(msgs) + cfg.batch - 1) / cfg.batch
		var okB, failB int64
		okB, failB, took = publishPaced(ctx, r, nb, cfg.rate/float64(cfg.batch), cfg.publishers, func(j int) error {
			part := msgs[j*cfg.batch : min(len(msgs), (j+1)*cfg.batch)]
			items := make([]batchItem, len(part))
			now := time.Now()
			for i, m := range part {
				items[i] = batchItem{Kind: "notification", UserID: m.s.user, Title: "pushbench", Body: r.body(m.seq, now)}
			}
			if err := r.t.batch(ctx, items); err != nil {
				return err
			}
			for _, m := range part {
				m.s.expected.set(m.seq)
			}
			return nil
		})
		// Count messages, not requests.
		okN = 0
		for _, s := range subs {
			okN += int64(s.expected.count())
		}
		failN = int64(len(msgs)) - okN
		_, _ = okB, failB
	}
	r.finishPublished(ctx, cfg, res, cw, subs, start, took, okN, failN, okN)
	return res
}
