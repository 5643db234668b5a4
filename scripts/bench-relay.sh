#!/usr/bin/env bash
# bench-relay.sh: how fast the relay publishes the log, set against raw
# PostgreSQL.
#
# pgbench inserts one event row per transaction with 16 clients (the rate at
# which raw PostgreSQL can take events in); BenchmarkRelaySQL and
# BenchmarkRelayNATS (relay/bench_test.go) drain a backlog of EVENTS events
# from an empty checkpoint into the SQL topic upsell_events and into NATS
# JetStream. A relay at or above the insert rate never falls behind the
# writers. They run alternately, so noise from other work shows in the rows.
#
# Usage: scripts/bench-relay.sh [pgbench seconds per run, default 15]
# Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
# NATS_URL (default: scripts/nats.sh finds or starts one), ROUNDS (default 3),
# EVENTS (backlog per relay run, default 50000).
set -euo pipefail

secs=${1:-15}
rounds=${ROUNDS:-3}
events=${EVENTS:-50000}
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

NATS_URL=${NATS_URL:-$(bash scripts/nats.sh url)}
export NATS_URL

run_relay() { # SQL|NATS
	go test -run '^$' -bench "^BenchmarkRelay$1\$" -benchtime "${events}x" -count 1 ./relay >"$work/relay.out" 2>&1 ||
		{ cat "$work/relay.out" >&2; return 1; }
	sed -n 's/.* \([0-9.]*\) events\/s.*/\1/p' "$work/relay.out" | tail -n 1
}

go test -c -o /dev/null ./relay # compile first, so no build lands in a measured run

printf '%-6s %14s %14s %7s %14s %7s\n' round 'pgbench tps' 'relay SQL ev/s' ratio 'relay NATS ev/s' ratio
sql_ratios=()
nats_ratios=()
for i in $(seq 1 "$rounds"); do
	tps=$(run_pgbench)
	sql=$(run_relay SQL)
	nats=$(run_relay NATS)
	if [[ -z $tps || -z $sql || -z $nats ]]; then
		echo "bench-relay: could not read a figure (pgbench: '$tps', SQL: '$sql', NATS: '$nats')" >&2
		exit 1
	fi
	rs=$(awk -v a="$sql" -v t="$tps" 'BEGIN { printf "%.2f", a / t }')
	rn=$(awk -v a="$nats" -v t="$tps" 'BEGIN { printf "%.2f", a / t }')
	sql_ratios+=("$rs")
	nats_ratios+=("$rn")
	printf '%-6s %14.0f %14.0f %7s %14.0f %7s\n' "$i" "$tps" "$sql" "$rs" "$nats" "$rn"
done
echo "median ratio to the pgbench insert rate: SQL topic $(median "${sql_ratios[@]}"), NATS JetStream $(median "${nats_ratios[@]}")"
