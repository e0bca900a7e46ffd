package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgWindow measures PostgreSQL over a phase: the CPU of the postmaster
// (--postgres-pid) and its children, and the statements run in the
// database of --database-url.
type pgWindow struct {
	pid     int
	conn    *pgx.Conn
	kind    string // what queries counts: "statements" or "transactions"
	start   time.Time
	cpu     time.Duration
	queries int64
}

func startPG(r *run) *pgWindow {
	w := &pgWindow{pid: r.cfg.postgresPID, start: time.Now()}
	if r.cfg.databaseURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, r.cfg.databaseURL)
		if err != nil {
			r.noteErr("postgres stats", err)
		} else {
			w.conn = conn
			// pg_stat_statements counts statements; without it (not in
			// shared_preload_libraries) fall back to transactions.
			if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err == nil {
				if _, err := conn.Exec(ctx, `SELECT count(*) FROM pg_stat_statements`); err == nil {
					w.kind = "statements"
				}
			}
			if w.kind == "" {
				w.kind = "transactions"
			}
			w.queries, err = w.count(ctx)
			if err != nil {
				r.noteErr("postgres stats", err)
			}
		}
	}
	w.cpu = pgCPU(w.pid)
	w.start = time.Now()
	return w
}

func (w *pgWindow) count(ctx context.Context) (int64, error) {
	var n int64
	q := `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`
	if w.kind == "statements" {
		q = `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`
	}
	err := w.conn.QueryRow(ctx, q).Scan(&n)
	return n, err
}

func (w *pgWindow) finish(res *result) {
	if w == nil {
		return
	}
	took := time.Since(w.start)
	if w.pid > 0 {
		cpu := pgCPU(w.pid) - w.cpu
		res.PostgresCPUms = round(float64(cpu)/1e6, 1)
		res.PostgresCPUPct = round(100*float64(cpu)/float64(took), 1)
	}
	if w.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Statistics reach the views when a backend goes idle; give the
		// last ones a moment.
		time.Sleep(600 * time.Millisecond)
		if n, err := w.count(ctx); err == nil {
			res.PostgresQPS = round(float64(n-w.queries)/took.Seconds(), 1)
			res.PostgresQPSKind = w.kind
		}
		_ = w.conn.Close(ctx)
	}
}

// pgCPU is the CPU time of process pid and its children (a postmaster's
// backends and workers). A backend that exited meanwhile is not counted:
// pushd keeps its connections, so few do.
func pgCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	var total time.Duration
	if s, err := readProc(pid); err == nil {
		total += s.CPU
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(string(f[1])); ppid != pid {
			continue
		}
		ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
		st, _ := strconv.ParseInt(string(f[12]), 10, 64)
		total += time.Duration(ut+st) * time.Second / clockTicks
	}
	return total
}

// parseList splits a comma-separated flag value.
func parseList(s string) []string {
	var out []string
	for _, f := range bytes.Split([]byte(s), []byte(",")) {
		if v := string(bytes.TrimSpace(f)); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, v := range parseList(s) {
		pid, err := strconv.Atoi(v)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("bad process id %q", v)
		}
		out = append(out, pid)
	}
	return out, nil
}
