// Command pushbench is a load generator for pushd and the reference
// baseline server it is compared with.
//
//	pushbench idle|fanout|unicast|resume-storm|db-changes [flags]
//	pushbench baseline-server [--addr 127.0.0.1:3002]
//
// Every run is bounded in connections, messages and time, talks to loopback
// addresses only, counts missing and duplicate messages per subscriber, and
// prints one JSON line per target on stdout and a table on stderr.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"
)

// config holds the flags of a scenario run.
type config struct {
	scenario           string
	transport          string
	n, m               int
	rate               float64
	publishers         int
	batch              int
	hold, drain        time.Duration
	settle, timeout    time.Duration
	connectConcurrency int
	apiConcurrency     int
	reconnect          bool
	missVia            string
	format             string
	seed               int64

	server, apiKey string
	serverPID      int
	nodes          []string
	nodePIDs       []int
	postgresPID    int
	databaseURL    string
	baseline       string
	baselinePID    int
	sourceIPs      string
	cpuProfile     string

	notify, backlog bool
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("pushbench "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pushbench <scenario> [flags]   |   pushbench baseline-server [--addr 127.0.0.1:3002]")
	fmt.Fprintln(w, "scenarios:")
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, scenarios[n].doc)
	}
	fmt.Fprintln(w, "run `pushbench <scenario> -h` for the flags")
}

func parseConfig(name string, args []string) (*config, error) {
	sc := scenarios[name]
	c := &config{scenario: name}
	fs := newFlagSet(name)
	fs.StringVar(&c.transport, "transport", "sse", "sse or ws")
	fs.IntVar(&c.n, "n", 1000, "connections (one user each)")
	fs.IntVar(&c.m, "m", 100, "messages: broadcasts (fanout), total messages (unicast), missed messages per client (resume-storm)")
	fs.Float64Var(&c.rate, "rate", sc.defaultRate, "messages per second to publish (0 = as fast as the server answers)")
	fs.IntVar(&c.publishers, "publishers", 16, "concurrent publishing HTTP requests (db-changes: writer connections)")
	fs.IntVar(&c.batch, "batch", 1, "unicast/resume-storm: messages per POST /api/ws/push/batch (1 = single-message endpoint); db-changes: rows per INSERT statement")
	fs.DurationVar(&c.hold, "hold", 5*time.Second, "idle: how long to hold the connections before measuring")
	fs.DurationVar(&c.drain, "drain", 60*time.Second, "longest wait for outstanding deliveries after publishing")
	fs.DurationVar(&c.settle, "settle", time.Second, "pause between phases (lets the server settle before a measurement window)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "hard limit for the whole invocation")
	fs.IntVar(&c.connectConcurrency, "connect-concurrency", 200, "dials in flight")
	fs.IntVar(&c.apiConcurrency, "api-concurrency", 32, "concurrent token requests")
	fs.BoolVar(&c.reconnect, "reconnect", true, "resume (with the last event id) a stream the server ends during the run; ends are counted either way")
	fs.StringVar(&c.missVia, "miss-via", "broadcast", "resume-storm: broadcast (M broadcasts) or unicast (M notifications per user)")
	fs.StringVar(&c.format, "format", "both", "json (stdout), table (stderr) or both")
	fs.Int64Var(&c.seed, "seed", 1, "random seed for unicast targets")
	fs.StringVar(&c.server, "server", "http://127.0.0.1:3001", "pushd base URL (empty: baseline only)")
	fs.StringVar(&c.apiKey, "api-key", os.Getenv("PUSH_API_KEY"), "pushd API key (default $PUSH_API_KEY)")
	fs.IntVar(&c.serverPID, "server-pid", 0, "pushd process id, for RSS and CPU from /proc")
	nodes := fs.String("nodes", "", "pushd nodes of one cluster, comma-separated URLs (instead of --server): subscribers spread round-robin over them, messages published through the first; latency is split by node")
	nodePIDs := fs.String("node-pids", "", "the --nodes' process ids, in the same order: server CPU and RSS are summed over them")
	fs.IntVar(&c.postgresPID, "postgres-pid", 0, "PostgreSQL postmaster process id: its and its children's CPU over the measured window")
	fs.StringVar(&c.databaseURL, "database-url", "", "the nodes' database: statements per second over the measured window (pg_stat_statements when loaded, else transactions); db-changes writes its watched table there")
	fs.StringVar(&c.baseline, "baseline", "none", "none, auto (start `pushbench baseline-server` as a child on a free loopback port) or the URL of a running one")
	fs.IntVar(&c.baselinePID, "baseline-pid", 0, "baseline-server process id when --baseline is a URL")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write pushbench's own CPU profile to this file (is the client the bottleneck?)")
	fs.BoolVar(&c.notify, "notify", true, "db-changes: watch the table with notify => true (false: pushd's short poll finds the changes)")
	fs.BoolVar(&c.backlog, "backlog", false, "db-changes: hold pushd's append lock while committing, then measure the relay draining the backlog")
	fs.StringVar(&c.sourceIPs, "source-ips", "", "spread client sockets over these source addresses, e.g. 127.0.0.1-127.0.0.20")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.nodes = parseList(*nodes)
	pids, err := parsePIDs(*nodePIDs)
	if err != nil {
		return nil, fmt.Errorf("--node-pids: %v", err)
	}
	c.nodePIDs = pids
	switch {
	case c.transport != "sse" && c.transport != "ws":
		return nil, fmt.Errorf("--transport must be sse or ws")
	case c.n < 1 || c.n > 200_000:
		return nil, fmt.Errorf("--n must be in 1..200000")
	case c.m < 0 || c.m > 10_000_000:
		return nil, fmt.Errorf("--m must be in 0..10000000")
	case c.batch < 1 || c.batch > 1000:
		return nil, fmt.Errorf("--batch must be in 1..1000")
	case c.missVia != "broadcast" && c.missVia != "unicast":
		return nil, fmt.Errorf("--miss-via must be broadcast or unicast")
	case c.format != "json" && c.format != "table" && c.format != "both":
		return nil, fmt.Errorf("--format must be json, table or both")
	case len(c.nodePIDs) > 0 && len(c.nodePIDs) != len(c.nodes):
		return nil, fmt.Errorf("--node-pids needs one process id per --nodes URL (%d for %d)", len(c.nodePIDs), len(c.nodes))
	case c.postgresPID < 0:
		return nil, fmt.Errorf("--postgres-pid must be a process id")
	}
	return c, nil
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "baseline-server" {
		if err := runBaselineServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pushbench:", err)
			os.Exit(1)
		}
		return
	}
	if _, ok := scenarios[name]; !ok {
		fmt.Fprintf(os.Stderr, "pushbench: unknown scenario %q\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	cfg, err := parseConfig(name, os.Args[2:])
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(2)
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pushbench:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "pushbench:", err)
			os.Exit(2)
		}
	}
	results, err := runAll(context.Background(), cfg, os.Stdout, os.Stderr)
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(2)
	}
	for _, r := range results {
		if !r.OK && r.Skipped == "" {
			os.Exit(1)
		}
	}
}

// runAll runs cfg's scenario against the baseline (when asked) and then the
// server, writing JSON lines to out and the table to tbl.
func runAll(ctx context.Context, cfg *config, out, tbl io.Writer) ([]*result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	limit := raiseNoFile()
	if need := uint64(cfg.n) + 200; limit > 0 && limit < need {
		fmt.Fprintf(tbl, "pushbench: warning: open-files limit %d < %d needed for --n %d\n", limit, need, cfg.n)
	}
	ips, err := parseSourceIPs(cfg.sourceIPs)
	if err != nil {
		return nil, err
	}
	d := &dialer{sources: ips, timeout: 30 * time.Second}
	sc := scenarios[cfg.scenario]

	var targets []*target
	switch cfg.baseline {
	case "none", "":
	case "auto":
		url, pid, stop, err := startBaselineChild(ctx)
		if err != nil {
			return nil, err
		}
		defer stop()
		t, err := newTarget("baseline", url, "", pid, d)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	default:
		t, err := newTarget("baseline", cfg.baseline, "", cfg.baselinePID, d)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	if len(cfg.nodes) > 0 {
		t, err := newCluster(cfg.nodes, cfg.apiKey, cfg.nodePIDs, d)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	} else if cfg.server != "" {
		t, err := newTarget("pushd", cfg.server, cfg.apiKey, cfg.serverPID, d)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("nothing to run: give --server and/or --baseline")
	}
	var results []*result
	for i, t := range targets {
		if i > 0 {
			settle(ctx, 2*cfg.settle)
		}
		start := time.Now()
		load := loadAvg1()
		var res *result
		// A resume storm in which nothing is missed (-m 0) is a reconnect
		// storm: the baseline can take part, it needs no history.
		if t.name == "baseline" && !sc.baseline && !(cfg.scenario == "resume-storm" && cfg.m == 0) {
			res = &result{Scenario: cfg.scenario, Transport: cfg.transport, Target: t.name, Server: t.base.String(),
				Skipped: "the baseline keeps no history; " + cfg.scenario + " runs against pushd only"}
		} else {
			r := newRun(cfg, t, d)
			res = sc.run(ctx, r)
			if ctx.Err() != nil {
				res.OK = false
				res.Errors = append(res.Errors, "--timeout reached")
			}
		}
		t.poster.closeIdle()
		res.Start = start.UTC().Format(time.RFC3339)
		res.LoadAvg = [2]float64{load, loadAvg1()}
		res.WallSeconds = round(time.Since(start).Seconds(), 2)
		res.ServerPID = t.pid
		if res.Params == nil {
			res.Params = map[string]any{}
		}
		if cfg.sourceIPs != "" {
			res.Params["sourceIps"] = cfg.sourceIPs
		}
		if cfg.format != "table" {
			writeJSON(out, res)
		}
		results = append(results, res)
	}
	if cfg.format != "json" {
		writeTable(tbl, results)
	}
	return results, nil
}

// startBaselineChild runs `pushbench baseline-server` on a free loopback
// port as a separate process, so its RSS and CPU are measured like pushd's.
func startBaselineChild(ctx context.Context) (url string, pid int, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(exe, "baseline-server", "--addr", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop = func() { stopChild(cmd) }
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-lines:
		i := strings.Index(line, "http://")
		if !ok || i < 0 {
			stop()
			return "", 0, nil, fmt.Errorf("baseline-server did not start (%q)", line)
		}
		return line[i:], cmd.Process.Pid, stop, nil
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	stop()
	return "", 0, nil, fmt.Errorf("baseline-server did not start within 10s")
}

// stopChild asks a started child process to stop (SIGTERM) and kills it if
// it has not exited within 5 s.
func stopChild(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
