package main

import (
	"context"
	"fmt"
)

// runIdle opens N connections and holds them: connect rate, server RSS per
// connection (RSS after the hold minus RSS before connecting), idle CPU.
func runIdle(ctx context.Context, r *run) *result {
	cfg := r.cfg
	res := &result{Scenario: "idle", Params: map[string]any{"n": cfg.n, "holdSeconds": cfg.hold.Seconds()}}
	empty := newBitset(0)
	subs, err := r.makeSubs(ctx, cfg.n, func(int) *bitset { return empty }, 0)
	if err != nil {
		r.noteErr("token", err)
		r.fillCommon(res)
		return res
	}
	settle(ctx, cfg.settle)
	pids := r.t.allPIDs() // every node of a cluster: RSS summed
	for _, pid := range pids {
		s, _ := readProc(pid)
		res.ServerRSSBaseKiB += s.RSSKiB
	}
	connectCPU := startCPU(r)
	took, failed := r.connectAll(ctx, subs, false)
	connectCPU.connectCPU(res, cfg.n-failed)
	res.Connections = cfg.n - failed
	res.ConnectFailed = failed
	res.ConnectSeconds = round(took.Seconds(), 3)
	if took > 0 {
		res.ConnectRate = round(float64(res.Connections)/took.Seconds(), 1)
	}
	cw := startCPU(r)
	settle(ctx, cfg.hold)
	cw.finish(res, 0)
	if res.ServerCPUms > 0 && cfg.hold > 0 {
		res.ServerIdleCPUmsPS = round(res.ServerCPUms/cfg.hold.Seconds(), 2)
	}
	if len(pids) > 0 && res.Connections > 0 {
		res.RSSPerConnKiB = round(float64(res.ServerRSSKiB-res.ServerRSSBaseKiB)/float64(res.Connections), 2)
	}
	if live := r.live.Load(); live != int64(res.Connections) {
		r.noteErr(fmt.Sprintf("only %d of %d connections still open after the hold", live, res.Connections), nil)
	}
	r.closeAll(subs)
	r.fillCommon(res)
	res.OK = failed == 0 && res.Drops == 0 && res.Duplicates == 0
	return res
}
