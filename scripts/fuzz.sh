#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME (default 3s) on top of its seed corpus
# (testdata/fuzz). A crasher is written to testdata/fuzz/<Target>/ by go
# test; commit it as a regular test case once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-3s}
targets=(
  "./api/ FuzzRESTBodies"
  "./api/ FuzzBatchBodies"
  "./api/ FuzzPushKinds"
  "./api/ FuzzParseForwardedFor"
  "./api/ FuzzDecodeFlat"
  "./ws/ FuzzClientFrame"
  "./ws/ FuzzAuthFrame"
  "./auth/ FuzzVerify"
  "./auth/ FuzzSubscriberClaims"
  "./stream/ FuzzParseID"
)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for entry in "${targets[@]}"; do
  read -r pkg name <<<"$entry"
  echo "fuzz: $name ($pkg, $t)"
  if ! go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$t" >"$log" 2>&1; then
    grep -v -E ' (INFO|WARN) ' "$log" | tail -40
    exit 1
  fi
done
