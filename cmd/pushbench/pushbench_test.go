package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	pushdBin      string // built in TestMain; empty when the build failed
	pushdBuildErr string
)

func TestMain(m *testing.M) {
	// startBaselineChild re-executes the test binary as the baseline server.
	if len(os.Args) > 1 && os.Args[1] == "baseline-server" {
		if err := runBaselineServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "pushbench-test")
	if err != nil {
		panic(err)
	}
	if !testing.Short() {
		bin := filepath.Join(dir, "pushd")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/pushd/pushd/cmd/pushd").CombinedOutput()
		if err == nil {
			pushdBin = bin
		} else {
			pushdBuildErr = strings.TrimSpace(string(out))
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func smallConfig(scenario, transport string) *config {
	return &config{
		scenario: scenario, transport: transport, n: 20, m: 50, rate: 0, publishers: 4, batch: 1,
		hold: 200 * time.Millisecond, drain: 10 * time.Second, settle: 50 * time.Millisecond,
		timeout: 30 * time.Second, connectConcurrency: 20, apiConcurrency: 8, reconnect: true,
		missVia: "broadcast", format: "json", seed: 1, baseline: "none",
	}
}

// runAndCheck runs cfg and checks every JSON line: it parses, the run is
// ok, nothing is missing or duplicated, and everything expected arrived.
func runAndCheck(t *testing.T, cfg *config) []*result {
	t.Helper()
	var out, tbl bytes.Buffer
	results, err := runAll(context.Background(), cfg, &out, &tbl)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(results) {
		t.Fatalf("%d JSON lines for %d results:\n%s", len(lines), len(results), out.String())
	}
	for _, line := range lines {
		var res result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			t.Fatalf("JSON line does not parse: %v\n%s", err, line)
		}
		if res.Skipped != "" {
			continue
		}
		if !res.OK || res.Missing != 0 || res.Duplicates != 0 || res.Delivered != res.Expected || res.Connections != cfg.n {
			t.Errorf("%s %s/%s against %s: ok=%v connections=%d missing=%d duplicates=%d delivered=%d expected=%d errors=%v",
				res.Target, res.Scenario, res.Transport, res.Server, res.OK, res.Connections, res.Missing, res.Duplicates, res.Delivered, res.Expected, res.Errors)
		}
		if res.Scenario != cfg.scenario && res.Transport != cfg.transport {
			t.Errorf("result is for %s/%s", res.Scenario, res.Transport)
		}
	}
	cfg.format = "table"
	writeTable(io.Discard, results)
	return results
}

type variant struct {
	name, scenario string
	batch          int
	missVia        string
	m              int // messages; 0 = smallConfig's
}

var baselineVariants = []variant{
	{"idle", "idle", 1, "", 0},
	{"fanout", "fanout", 1, "", 0},
	{"unicast", "unicast", 1, "", 0},
	{"unicast-batch", "unicast", 10, "", 0},
	// Answers over 2 KiB come chunked: the poster must read the trailer,
	// and a test that counts duplicates catches a POST sent twice.
	{"unicast-batch-chunked", "unicast", 500, "", 1500},
}

func TestScenariosAgainstBaseline(t *testing.T) {
	srv := httptest.NewServer(newBaselineServer().handler())
	defer srv.Close()
	for _, v := range baselineVariants {
		for _, tr := range []string{"sse", "ws"} {
			t.Run(v.name+"/"+tr, func(t *testing.T) {
				cfg := smallConfig(v.scenario, tr)
				cfg.baseline, cfg.server, cfg.batch = srv.URL, "", v.batch
				if v.m > 0 {
					cfg.m = v.m
				}
				if v.scenario == "idle" {
					cfg.baselinePID = os.Getpid()
				}
				res := runAndCheck(t, cfg)
				if v.scenario == "idle" && res[0].ServerRSSKiB == 0 {
					t.Errorf("idle: no server RSS read from /proc/%d", os.Getpid())
				}
			})
		}
	}
}

// TestReconnectStormAgainstBaseline: a resume storm that misses nothing
// (-m 0) runs against the baseline too and reports the reconnect time (the
// CPU per connect of 20 connections is below /proc's tick).
func TestReconnectStormAgainstBaseline(t *testing.T) {
	srv := httptest.NewServer(newBaselineServer().handler())
	defer srv.Close()
	cfg := smallConfig("resume-storm", "sse")
	cfg.baseline, cfg.server, cfg.m, cfg.baselinePID = srv.URL, "", 0, os.Getpid()
	res := runAndCheck(t, cfg)
	if res[0].Skipped != "" || res[0].ReconnectSecs <= 0 {
		t.Fatalf("reconnect storm against the baseline: skipped %q, reconnect %vs", res[0].Skipped, res[0].ReconnectSecs)
	}
}

// TestBaselineAuto covers --baseline auto: the baseline runs as a child
// process whose RSS and CPU come from /proc.
func TestBaselineAuto(t *testing.T) {
	cfg := smallConfig("fanout", "sse")
	cfg.baseline, cfg.server = "auto", ""
	res := runAndCheck(t, cfg)
	if res[0].ServerPID == 0 || res[0].ServerPID == os.Getpid() || res[0].ServerRSSKiB == 0 {
		t.Errorf("baseline child not measured: pid %d rss %d", res[0].ServerPID, res[0].ServerRSSKiB)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startPushd runs the pushd binary built in TestMain on a free loopback port.
func startPushd(t *testing.T) (url string, pid int) {
	t.Helper()
	if pushdBin == "" {
		if testing.Short() {
			t.Skip("-short: pushd not built")
		}
		t.Skipf("pushd does not build (the server is not this package's): %s", firstLine(pushdBuildErr))
	}
	addr := freePort(t)
	cmd := exec.Command(pushdBin, "--addr", addr, "--api-key", "pushbench-test-key", "--jwt-secret", "pushbench-test-secret-0123456789")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopChild(cmd)
		if t.Failed() {
			t.Logf("pushd output:\n%s", logs.String())
		}
	})
	url = "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, cmd.Process.Pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushd did not answer /healthz within 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func TestScenariosAgainstPushd(t *testing.T) {
	url, pid := startPushd(t)
	variants := append(append([]variant{}, baselineVariants...),
		variant{"resume-storm", "resume-storm", 1, "broadcast", 0},
		variant{"resume-storm-unicast", "resume-storm", 25, "unicast", 0},
	)
	for _, v := range variants {
		for _, tr := range []string{"sse", "ws"} {
			t.Run(v.name+"/"+tr, func(t *testing.T) {
				cfg := smallConfig(v.scenario, tr)
				cfg.server, cfg.apiKey, cfg.serverPID, cfg.batch = url, "pushbench-test-key", pid, v.batch
				if v.m > 0 {
					cfg.m = v.m
				}
				if v.missVia != "" {
					cfg.missVia = v.missVia
				}
				res := runAndCheck(t, cfg)
				if res[0].ServerRSSKiB == 0 && v.scenario != "unicast" {
					t.Errorf("no server RSS read from /proc/%d", pid)
				}
				if res[0].Resets != 0 {
					t.Errorf("%d reset events", res[0].Resets)
				}
			})
		}
	}
}

func TestSSEParser(t *testing.T) {
	stream := "retry: 3000\n:" + strings.Repeat(" ", 5000) + "\n\n" +
		"event: connected\ndata: {\"type\":\"connected\"}\n\n" +
		"id: 7\r\nevent: notification\r\ndata: a\r\ndata: b\r\n\r\n" +
		": comment\n\nid:8\ndata:x\n\n"
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		// chunked, split at awkward places
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for len(stream) > 0 {
			n := min(len(stream), 777)
			fmt.Fprintf(c, "%x\r\n%s\r\n", n, stream[:n])
			stream = stream[n:]
		}
		io.WriteString(c, "0\r\n\r\n")
	}()
	u, _ := parseURL("http://" + ln.Addr().String())
	c, err := dialSSE(context.Background(), &dialer{timeout: time.Second}, u, "tok", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []string{"connected||{\"type\":\"connected\"}", "notification|7|a\nb", "message|8|x"}
	for _, w := range want {
		typ, id, data, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(typ) + "|" + string(id) + "|" + string(data); got != w {
			t.Errorf("got %q, want %q", got, w)
		}
	}
	if _, _, _, err := c.next(); err == nil {
		t.Error("no error at end of stream")
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.9, 900}, {0.99, 990}, {1, 1000}} {
		if got := h.quantile(c.q); got < c.want*0.98 || got > c.want*1.02 {
			t.Errorf("q%.2f = %.1f ms, want about %.0f", c.q, got, c.want)
		}
	}
}

func TestSourceIPsAndLoopback(t *testing.T) {
	ips, err := parseSourceIPs("127.0.0.1-127.0.0.20")
	if err != nil || len(ips) != 20 || ips[19].String() != "127.0.0.20" {
		t.Fatalf("parseSourceIPs: %v %v", ips, err)
	}
	for _, bad := range []string{"10.0.0.1", "127.0.0.5-127.0.0.1", "::1", "x"} {
		if _, err := parseSourceIPs(bad); err == nil {
			t.Errorf("parseSourceIPs(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"10.1.2.3:80", "example.com:80", "[2001:db8::1]:80"} {
		if checkLoopback(bad) == nil {
			t.Errorf("checkLoopback(%q) accepted", bad)
		}
	}
	// A dial from a non-default loopback source address works.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) }))
	defer srv.Close()
	d := &dialer{sources: ips[4:5], timeout: time.Second}
	c, err := d.DialContext(context.Background(), "tcp4", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.5" {
		t.Errorf("local address %s, want 127.0.0.5", got)
	}
	c.Close()
}

func TestReadProc(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil || s.RSSKiB <= 0 || s.Threads <= 0 {
		t.Fatalf("readProc(self) = %+v, %v", s, err)
	}
}
