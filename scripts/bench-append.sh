#!/usr/bin/env bash
# bench-append.sh: how close eventstore.Append comes to raw PostgreSQL.
#
# pgbench inserts one event row per transaction, the floor for an append;
# BenchmarkAppend appends one event per call through the store (version check
# included). Both use 16 clients and the same ~300-byte payload, and run
# alternately so that noise from other work on the server shows in the pairs.
#
# Usage: scripts/bench-append.sh [seconds per run, default 20]
# Environment: DATABASE_URL (a server's maintenance database, default
# postgres://postgres@127.0.0.1:5432/postgres), ROUNDS (pairs, default 2).
# The target is eventstore at 70% or more of pgbench.
set -euo pipefail

secs=${1:-20}
rounds=${ROUNDS:-2}
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

run_go() {
	go test -run '^$' -bench '^BenchmarkAppend$' -benchtime "${secs}s" -count 1 ./eventstore >"$work/go.out" 2>&1 ||
		{ cat "$work/go.out" >&2; return 1; }
	sed -n 's/.* \([0-9.]*\) appends\/s.*/\1/p' "$work/go.out" | tail -n 1
}

go test -c -o /dev/null ./eventstore # compile first, so no build lands in a measured run

printf '%-6s %14s %18s %7s\n' pair 'pgbench tps' 'eventstore app/s' ratio
ratios=()
for i in $(seq 1 "$rounds"); do
	tps=$(run_pgbench)
	aps=$(run_go)
	if [[ -z $tps || -z $aps ]]; then
		echo "bench-append: could not read a figure (pgbench: '$tps', go: '$aps')" >&2
		exit 1
	fi
	ratio=$(awk -v a="$aps" -v t="$tps" 'BEGIN { printf "%.2f", a / t }')
	ratios+=("$ratio")
	printf '%-6s %14.0f %18.0f %7s\n' "$i" "$tps" "$aps" "$ratio"
done
median=$(median "${ratios[@]}")
verdict=$(awk -v m="$median" 'BEGIN { print (m >= 0.70 ? "meets" : "is below") }')
echo "median ratio $median $verdict the 0.70 target"
