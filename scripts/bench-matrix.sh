#!/usr/bin/env bash
# A short pushbench matrix for `make bench`: pushd (memory store, and
# PostgreSQL when PUSH_BENCH_DATABASE_URL is set) against the baseline server
# started by pushbench in the same run. Loopback only, bounded in time.
# Usage: scripts/bench-matrix.sh BIN_DIR   (BIN_DIR holds pushd and pushbench)
set -euo pipefail
bin=${1:-bin}
out=${PUSH_BENCH_OUT:-$bin/bench}
mkdir -p "$out"
port=${PUSH_BENCH_PORT:-39180}
key=bench-key
secret=bench-secret-0123456789abcdef
pid=

start() { # start pushd with extra args; sets pid
  "$bin/pushd" --addr "127.0.0.1:$port" --api-key $key --jwt-secret $secret --log-level warn --demo-user "" "$@" >"$out/pushd.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  echo "pushd did not start"; cat "$out/pushd.log"; exit 1
}
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; pid=; }
trap stop EXIT

run() { # name, scenario flags...; a fresh pushd per run, so no backlog leaks between runs
  local name=$1; shift
  echo "== $name: pushbench $*"
  "$bin/pushbench" "$@" --server "http://127.0.0.1:$port" --api-key $key --server-pid "$pid" \
    --format both >>"$out/results.jsonl" 2> >(tee "$out/$name.txt" >&2)
}

: >"$out/results.jsonl"
for tr in sse ws; do
  start; run "idle-$tr" idle -n 2000 --transport $tr --hold 5s --baseline auto; stop
  start; run "fanout-$tr" fanout -n 2000 -m 50 --rate 10 --transport $tr --baseline auto; stop
done
start; run unicast-single unicast -n 2000 -m 5000 --publishers 16 --baseline auto; stop
start; run unicast-batch unicast -n 2000 -m 5000 --batch 100 --publishers 8 --baseline auto; stop
start; run resume-storm resume-storm -n 2000 -m 50 --connect-concurrency 500; stop
if [ -n "${PUSH_BENCH_DATABASE_URL:-}" ]; then
  start --database-url "$PUSH_BENCH_DATABASE_URL"
  run pg-unicast-batch unicast -n 2000 -m 20000 --batch 500 --publishers 4
  run pg-unicast-single unicast -n 2000 -m 5000 --publishers 16
  stop
  start --database-url "$PUSH_BENCH_DATABASE_URL"
  run pg-resume-storm resume-storm -n 2000 -m 100 --connect-concurrency 500
  stop
fi
echo "results: $out/results.jsonl (one JSON line per run); tables: $out/*.txt"
