package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// result is the outcome of one scenario run against one target: one JSON
// line on stdout.
type result struct {
	Scenario  string `json:"scenario"`
	Transport string `json:"transport"`
	Target    string `json:"target"`
	Server    string `json:"server"`
	RunID     string `json:"runId"`
	Start     string `json:"start"`
	OK        bool   `json:"ok"`

	Params map[string]any `json:"params"`

	Connections    int     `json:"connections"`
	ConnectFailed  int     `json:"connectFailed"`
	ConnectSeconds float64 `json:"connectSeconds"`
	ConnectRate    float64 `json:"connectPerSec"`
	ConnectP50ms   float64 `json:"connectP50Ms"`
	ConnectP99ms   float64 `json:"connectP99Ms"`
	// ConnectCPUPer1000 is the servers' CPU per 1000 connects over the
	// connect phase (the idle scenario and the resume storm).
	ConnectCPUPer1000 float64 `json:"connectCpuPer1000Ms,omitempty"`
	// ReconnectSecs is the resume storm's time until every client is
	// connected again.
	ReconnectSecs float64 `json:"reconnectSeconds,omitempty"`

	Published      int64   `json:"published,omitempty"`
	PublishErrors  int64   `json:"publishErrors,omitempty"`
	PublishSeconds float64 `json:"publishSeconds,omitempty"`
	PublishRate    float64 `json:"publishPerSec,omitempty"`

	Expected    int64   `json:"expected"`
	Delivered   int64   `json:"delivered"`
	Missing     int64   `json:"missing"`
	Duplicates  int64   `json:"duplicates"`
	Foreign     int64   `json:"foreign,omitempty"`
	Resets      int64   `json:"resets,omitempty"`
	Drops       int64   `json:"drops"`
	Reconnects  int64   `json:"reconnects,omitempty"`
	DeliveryPS  float64 `json:"deliveriesPerSec,omitempty"`
	CatchUpSecs float64 `json:"catchUpSeconds,omitempty"`

	LatP50 float64 `json:"latencyP50Ms,omitempty"`
	LatP90 float64 `json:"latencyP90Ms,omitempty"`
	LatP99 float64 `json:"latencyP99Ms,omitempty"`
	LatMax float64 `json:"latencyMaxMs,omitempty"`

	ServerPID         int     `json:"serverPid,omitempty"`
	ServerRSSBaseKiB  int64   `json:"serverRssBeforeKiB,omitempty"`
	ServerRSSKiB      int64   `json:"serverRssKiB,omitempty"`
	RSSPerConnKiB     float64 `json:"serverRssPerConnKiB,omitempty"`
	ServerThreads     int64   `json:"serverThreads,omitempty"`
	ServerCPUms       float64 `json:"serverCpuMs,omitempty"`
	CPUPer1000ms      float64 `json:"serverCpuMsPer1000Deliveries,omitempty"`
	WritesPerDeliv    float64 `json:"serverWritesPerDelivery,omitempty"`
	ClientCPUms       float64 `json:"clientCpuMs,omitempty"`
	ClientCPUPer1000  float64 `json:"clientCpuMsPer1000Deliveries,omitempty"`
	ServerIdleCPUmsPS float64 `json:"serverIdleCpuMsPerSec,omitempty"`

	// Nodes is how many pushd nodes served the run (--nodes); NodeLatency
	// splits the latency by the node that delivered (the first node is the
	// one published to).
	Nodes       int           `json:"nodes,omitempty"`
	NodeLatency []nodeLatency `json:"nodeLatency,omitempty"`

	// PostgreSQL over the measured window: CPU of the server's processes
	// and statements (pg_stat_statements calls, else transactions) per
	// second in the benchmark's database.
	PostgresCPUms   float64 `json:"postgresCpuMs,omitempty"`
	PostgresCPUPct  float64 `json:"postgresCpuPercent,omitempty"`
	PostgresQPS     float64 `json:"postgresQueriesPerSec,omitempty"`
	PostgresQPSKind string  `json:"postgresQueriesKind,omitempty"`

	// LoadAvg is the host's 1-minute load average at the start and end of
	// the run: on a shared machine, figures taken under load are suspect.
	LoadAvg [2]float64 `json:"loadAvg1m"`

	Errors      []string `json:"errors,omitempty"`
	WallSeconds float64  `json:"wallSeconds"`
	Skipped     string   `json:"skipped,omitempty"`
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func (r *run) fillCommon(res *result) {
	res.RunID = r.runID
	res.Target = r.t.name
	res.Server = r.t.base.String()
	res.Transport = r.cfg.transport
	res.Delivered = r.delivered.Load()
	res.Duplicates = r.dups.Load()
	res.Foreign = r.foreign.Load()
	res.Resets = r.resets.Load()
	res.Drops = r.drops.Load()
	res.Reconnects = r.reconnects.Load()
	res.ConnectP50ms = round(r.connLat.quantile(0.50), 2)
	res.ConnectP99ms = round(r.connLat.quantile(0.99), 2)
	if lat := r.lat.merged(); lat.n.Load() > 0 {
		res.LatP50 = round(lat.quantile(0.50), 3)
		res.LatP90 = round(lat.quantile(0.90), 3)
		res.LatP99 = round(lat.quantile(0.99), 3)
		res.LatMax = round(float64(lat.max.Load())/1e6, 3)
	}
	for i := range r.nodeLat {
		h := &r.nodeLat[i]
		res.NodeLatency = append(res.NodeLatency, nodeLatency{
			Node: r.t.nodes[i].String(), Deliveries: int64(h.n.Load()),
			P50: round(h.quantile(0.50), 3), P99: round(h.quantile(0.99), 3),
		})
	}
	if len(r.t.nodes) > 0 {
		res.Nodes = len(r.t.nodes)
	}
	res.Errors = r.errors()
	sort.Strings(res.Errors)
}

// nodeLatency is the publish-to-receipt latency of one node's subscribers.
type nodeLatency struct {
	Node       string  `json:"node"`
	Deliveries int64   `json:"deliveries"`
	P50        float64 `json:"p50Ms"`
	P99        float64 `json:"p99Ms"`
}

// cpuWindow measures server and client CPU over a phase: the server's
// summed over every node of a cluster, and PostgreSQL's when asked
// (--postgres-pid, --database-url).
type cpuWindow struct {
	pids         []int
	before       []procSample
	clientBefore time.Duration
	ok           bool
	pg           *pgWindow
}

func startCPU(r *run) *cpuWindow {
	w := &cpuWindow{pids: r.t.allPIDs(), clientBefore: selfCPU()}
	w.ok = len(w.pids) > 0
	for _, pid := range w.pids {
		s, err := readProc(pid)
		w.before = append(w.before, s)
		w.ok = w.ok && err == nil
	}
	w.pg = startPG(r)
	return w
}

// serverCPU is the servers' CPU time since the window started (false when
// /proc could not be read).
func (w *cpuWindow) serverCPU() (time.Duration, bool) {
	if !w.ok {
		return 0, false
	}
	var cpu time.Duration
	for i, pid := range w.pids {
		after, err := readProc(pid)
		if err != nil {
			return 0, false
		}
		cpu += after.CPU - w.before[i].CPU
	}
	return cpu, true
}

// connectCPU fills the servers' CPU per 1000 connects made in the window.
func (w *cpuWindow) connectCPU(res *result, connects int) {
	if cpu, ok := w.serverCPU(); ok && connects > 0 {
		res.ConnectCPUPer1000 = round(float64(cpu)/1e6/float64(connects)*1000, 2)
	}
}

// finish fills CPU figures for deliveries made in the window.
func (w *cpuWindow) finish(res *result, deliveries int64) {
	client := selfCPU() - w.clientBefore
	res.ClientCPUms = round(float64(client)/1e6, 1)
	if deliveries > 0 {
		res.ClientCPUPer1000 = round(float64(client)/1e6/float64(deliveries)*1000, 3)
	}
	w.pg.finish(res)
	if !w.ok {
		return
	}
	var cpu time.Duration
	var writes int64
	res.ServerRSSKiB, res.ServerThreads = 0, 0
	for i, pid := range w.pids {
		after, err := readProc(pid)
		if err != nil {
			return
		}
		cpu += after.CPU - w.before[i].CPU
		writes += after.Writes - w.before[i].Writes
		res.ServerRSSKiB += after.RSSKiB
		res.ServerThreads += after.Threads
	}
	res.ServerCPUms = round(float64(cpu)/1e6, 1)
	if deliveries > 0 {
		res.CPUPer1000ms = round(float64(cpu)/1e6/float64(deliveries)*1000, 3)
		res.WritesPerDeliv = round(float64(writes)/float64(deliveries), 3)
	}
}

func writeJSON(w io.Writer, res *result) {
	b, _ := json.Marshal(res)
	fmt.Fprintf(w, "%s\n", b)
}

type row struct {
	name string
	get  func(*result) string
}

func f(v float64, unit string) string {
	if v == 0 {
		return "-"
	}
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f%s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f%s", v, unit)
	default:
		return fmt.Sprintf("%.3g%s", v, unit)
	}
}

var tableRows = []row{
	{"ok", func(r *result) string { return fmt.Sprint(r.OK) }},
	{"connections", func(r *result) string { return fmt.Sprintf("%d (%d failed)", r.Connections, r.ConnectFailed) }},
	{"connect rate", func(r *result) string { return f(r.ConnectRate, "/s") }},
	{"connect p50 / p99", func(r *result) string { return f(r.ConnectP50ms, "ms") + " / " + f(r.ConnectP99ms, "ms") }},
	{"server CPU / 1000 connects", func(r *result) string { return f(r.ConnectCPUPer1000, " ms") }},
	{"reconnect time (all)", func(r *result) string { return f(r.ReconnectSecs, "s") }},
	{"published", func(r *result) string { return fmt.Sprintf("%d (%d errors)", r.Published, r.PublishErrors) }},
	{"publish rate", func(r *result) string { return f(r.PublishRate, "/s") }},
	{"delivered / expected", func(r *result) string { return fmt.Sprintf("%d / %d", r.Delivered, r.Expected) }},
	{"missing / duplicates", func(r *result) string { return fmt.Sprintf("%d / %d", r.Missing, r.Duplicates) }},
	{"drops / reconnects / resets", func(r *result) string { return fmt.Sprintf("%d / %d / %d", r.Drops, r.Reconnects, r.Resets) }},
	{"deliveries/s", func(r *result) string { return f(r.DeliveryPS, "/s") }},
	{"catch-up time", func(r *result) string { return f(r.CatchUpSecs, "s") }},
	{"latency p50", func(r *result) string { return f(r.LatP50, "ms") }},
	{"latency p90", func(r *result) string { return f(r.LatP90, "ms") }},
	{"latency p99", func(r *result) string { return f(r.LatP99, "ms") }},
	{"latency max", func(r *result) string { return f(r.LatMax, "ms") }},
	{"latency p50 / p99 by node", func(r *result) string {
		var parts []string
		for i, n := range r.NodeLatency {
			parts = append(parts, fmt.Sprintf("%d: %s / %s", i+1, f(n.P50, "ms"), f(n.P99, "ms")))
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, ", ")
	}},
	{"server RSS", func(r *result) string { return f(float64(r.ServerRSSKiB)/1024, " MiB") }},
	{"server RSS / conn", func(r *result) string { return f(r.RSSPerConnKiB, " KiB") }},
	{"server CPU", func(r *result) string { return f(r.ServerCPUms, " ms") }},
	{"server CPU / 1000 deliv.", func(r *result) string { return f(r.CPUPer1000ms, " ms") }},
	{"server writes / delivery", func(r *result) string { return f(r.WritesPerDeliv, "") }},
	{"server idle CPU", func(r *result) string { return f(r.ServerIdleCPUmsPS, " ms/s") }},
	{"postgres CPU", func(r *result) string {
		if r.PostgresCPUms == 0 {
			return "-"
		}
		return f(r.PostgresCPUms, " ms") + " (" + f(r.PostgresCPUPct, "%") + " of one core)"
	}},
	{"postgres queries/s", func(r *result) string {
		if r.PostgresQPS == 0 {
			return "-"
		}
		return f(r.PostgresQPS, "/s") + " (" + r.PostgresQPSKind + ")"
	}},
	{"client CPU / 1000 deliv.", func(r *result) string { return f(r.ClientCPUPer1000, " ms") }},
	{"wall time", func(r *result) string { return f(r.WallSeconds, "s") }},
	{"host load (1 min) start/end", func(r *result) string { return fmt.Sprintf("%.1f / %.1f", r.LoadAvg[0], r.LoadAvg[1]) }},
}

// writeTable prints results side by side, with target/baseline ratios for
// the headline figures when a baseline ran.
func writeTable(w io.Writer, results []*result) {
	if len(results) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{fmt.Sprintf("%s/%s", results[0].Scenario, results[0].Transport)}
	for _, r := range results {
		head = append(head, r.Target)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, rw := range tableRows {
		cells := []string{rw.name}
		empty := true
		for _, r := range results {
			if r.Skipped != "" {
				cells = append(cells, "skipped")
				continue
			}
			c := rw.get(r)
			if c != "-" && c != "- / -" {
				empty = false
			}
			cells = append(cells, c)
		}
		if !empty {
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	tw.Flush()
	var base *result
	for _, r := range results {
		if r.Target == "baseline" && r.Skipped == "" {
			base = r
		}
	}
	for _, r := range results {
		if base == nil || r == base || r.Skipped != "" {
			continue
		}
		ratio := func(name string, a, b float64) {
			if a > 0 && b > 0 {
				fmt.Fprintf(w, "  %s/%s %-26s %.2fx\n", r.Target, base.Target, name, a/b)
			}
		}
		ratio("RSS per connection", r.RSSPerConnKiB, base.RSSPerConnKiB)
		ratio("CPU per 1000 deliveries", r.CPUPer1000ms, base.CPUPer1000ms)
		ratio("latency p99", r.LatP99, base.LatP99)
		ratio("publish rate", r.PublishRate, base.PublishRate)
		ratio("deliveries/s", r.DeliveryPS, base.DeliveryPS)
		ratio("connect rate", r.ConnectRate, base.ConnectRate)
		ratio("CPU per 1000 connects", r.ConnectCPUPer1000, base.ConnectCPUPer1000)
		ratio("reconnect time (all)", r.ReconnectSecs, base.ReconnectSecs)
	}
	for _, r := range results {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s: %s\n", r.Target, e)
		}
		if r.Skipped != "" {
			fmt.Fprintf(w, "  %s: skipped: %s\n", r.Target, r.Skipped)
		}
	}
}
