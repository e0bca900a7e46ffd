#!/usr/bin/env bash
# The cluster figures of the README ("Running several nodes"): pushd nodes
# on a PostgreSQL of their own — a throwaway cluster with pg_stat_statements,
# so its CPU and statements are the nodes' alone — a fresh database per run.
# Loopback only, bounded in time.
# Usage: scripts/cluster-bench.sh BIN_DIR [latency|fanout|idle|scale|all]
#   (PUSH_BENCH_NODE_GOMAXPROCS=N runs each node with GOMAXPROCS=N)
#   latency  3 nodes, 1 000 msgs/s published on node 1, subscribers on all
#            three: p50/p99 by delivering node (node 1 = the single-node path)
#   fanout   200 broadcasts (10/s) to 3 x 5 000 SSE, then to 15 000 on one
#            node, and again 80 at 4/s: server CPU per 1000 deliveries,
#            summed over the nodes
#   idle     15 000 idle SSE on 3 nodes, then on 1: server CPU per second
#   scale    5 000 msgs/s with 1, 2 and 3 nodes: PostgreSQL CPU, statements/s
set -euo pipefail
bin=${1:-bin}
what=${2:-all}
out=${PUSH_BENCH_OUT:-$bin/cluster-bench}
mkdir -p "$out"
key=bench-key
secret=bench-secret-0123456789abcdef
base=${PUSH_BENCH_PORT:-39200}
pgport=${PUSH_BENCH_PG_PORT:-55441}

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgdir=$(mktemp -d /tmp/pushd-cluster-bench.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pgdir"; as_pg=(runuser -u postgres --); fi
pids=()
stop_nodes() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done; pids=(); }
cleanup() {
  stop_nodes
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
trap cleanup EXIT
"${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
  -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements -c max_connections=200" start >/dev/null
pgpid=$(head -1 "$pgdir/data/postmaster.pid")
admin="postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable"
db=
n_db=0
fresh_db() { # sets db to the URL of a new, empty database
  n_db=$((n_db + 1))
  psql -q "$admin" -c "CREATE DATABASE bench_$n_db" >/dev/null
  db="postgres://postgres@127.0.0.1:$pgport/bench_$n_db?sslmode=disable"
}

urls=
pidlist=
start_nodes() { # count: starts that many nodes on $db; sets urls and pidlist
  urls=
  pidlist=
  for i in $(seq "$1"); do
    port=$((base + i))
    env ${PUSH_BENCH_NODE_GOMAXPROCS:+GOMAXPROCS=$PUSH_BENCH_NODE_GOMAXPROCS} "$bin/pushd" --addr "127.0.0.1:$port" --api-key $key --jwt-secret $secret --log-level warn --demo-user "" \
      --database-url "$db" >"$out/node$i.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "node $i did not start"; cat "$out/node$i.log"; exit 1; }
    urls+="${urls:+,}http://127.0.0.1:$port"
    pidlist+="${pidlist:+,}$!"
  done
}

run() { # name, scenario flags...
  local name=$1; shift
  echo "== $name ($(cut -d' ' -f1-3 /proc/loadavg)): pushbench $*"
  "$bin/pushbench" "$@" --nodes "$urls" --node-pids "$pidlist" --api-key $key \
    --postgres-pid "$pgpid" --database-url "$db" --format both >>"$out/results.jsonl" 2> >(tee "$out/$name.txt" >&2)
}

: >"$out/results.jsonl"
if [ "$what" = latency ] || [ "$what" = all ]; then
  fresh_db; start_nodes 3
  run latency-3 unicast -n 300 -m 20000 --rate 1000 --publishers 16
  stop_nodes
fi
if [ "$what" = fanout ] || [ "$what" = all ]; then
  # At 10 broadcasts/s one node with 15 000 falls behind and coalesces
  # (several messages per write); at 4/s nothing queues on either side.
  for rate in 10 4; do
    m=$((rate * 20))
    fresh_db; start_nodes 3
    run "fanout-3x5000-$rate" fanout -n 15000 -m $m --rate $rate --connect-concurrency 500
    stop_nodes
    fresh_db; start_nodes 1
    run "fanout-1x15000-$rate" fanout -n 15000 -m $m --rate $rate --connect-concurrency 500
    stop_nodes
  done
fi
if [ "$what" = idle ] || [ "$what" = all ]; then
  # What a node costs while nothing is published: heartbeats, cursor
  # flushes, tail poll, registry refresh.
  for k in 3 1; do
    fresh_db; start_nodes "$k"
    run "idle-$k" idle -n 15000 --hold 10s --connect-concurrency 500
    stop_nodes
  done
fi
if [ "$what" = scale ] || [ "$what" = all ]; then
  for k in 1 2 3; do
    fresh_db; start_nodes "$k"
    run "scale-$k" unicast -n 1000 -m 50000 --rate 5000 --batch 50 --publishers 4
    stop_nodes
  done
fi
echo "results: $out/results.jsonl (one JSON line per run); tables: $out/*.txt"
