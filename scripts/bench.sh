#!/usr/bin/env bash
# bench.sh: issue 5's figures, in one run on one machine, each set against
# what PostgreSQL itself does in the same run:
#
#  1. a log of EVENTS events in a scratch database (CUSTOMERS customers
#     onboarded, then change quotes, appended one command at a time through
#     eventstore.Append and interleaved as many users make them:
#     upsell-bench seedlog), then
#     - the raw ordered scan: COPY (SELECT * FROM events ORDER BY
#       transaction_id, position) TO STDOUT, discarded: the baseline of
#     - `upsell rebuild` (every read model), timed from outside, and under a
#       CPU profile when below target;
#     - `upsell relay` draining the whole log into the SQL topic from an
#       empty checkpoint;
#  2. ROUNDS rounds of
#     - pgbench: one single-row insert per transaction into a table shaped
#       like events (the migrated table itself), CLIENTS clients: the
#       baseline of
#     - HTTP commands on an empty database: `upsell serve` driven by
#       `upsell loadgen --commands-only` (each request appends one event)
#       with CLIENTS users as fast as it answers, then likewise under a
#       CPU profile of the server with the database's wait events sampled
#       (a run of its own: the observers cost CPU that pgbench's run does
#       not pay), then at half the first round's throughput (--rate) for
#       the latency; the server's peak RSS (VmHWM);
#     - the same on the big log's database: a command must cost the same
#       beside 100,000 customers and 1,000,000 events.
#     The rounds alternate the three so that noise from other work on the
#     machine shows in them; the table gives their medians.
#
# It prints every figure and ratio, then a summary table, and writes the
# table with the method into docs/performance.md, section "Issue 5 targets
# (scripts/bench.sh)", between its markers (notes after the end marker are
# kept). Artefacts (loadgen reports, logs, CPU profiles and their tops) stay
# in OUT.
#
# Usage: scripts/bench.sh            (make bench-all)
# Environment:
#   DATABASE_URL   a server's maintenance database (default
#                  postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable);
#                  the scratch databases upsell_benchall_{pgbench,empty,big}
#                  are made on that server and dropped at the end (KEEP=1
#                  keeps them)
#   EVENTS=1000000 CUSTOMERS=100000   the big log (a full run needs >= 1000000)
#   ROUNDS=2       rounds of pgbench / HTTP empty / HTTP big
#   DURATION=20    seconds per loadgen run; PGBENCH_SECS=20; PROFILE_SECS=10
#                  seconds of the profiled loadgen run
#   CLIENTS=16     pgbench clients and loadgen users
#   WORKERS=8      seedlog's concurrent appenders
#   INTERLEAVE=64  quotes each of them has in progress (1: each quote appended
#                  whole, its events together: a log that flatters a rebuild)
#   SERVE_POOL=N   run upsell serve with pgxpool's pool_max_conns=N (default:
#                  the service's own default), to see what the pool size does
#   QUIET=1.5 QUIET_WAIT=90   before each step, wait up to QUIET_WAIT seconds
#                  while more than QUIET other tasks are runnable (a shared
#                  machine's bursts of other work)
#   WRITE_DOC=auto write docs/performance.md: auto = only when EVENTS >= 1000000
#   OUT=DIR        where the artefacts go (default a new /tmp/upsell-bench.*)
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
CUSTOMERS=${CUSTOMERS:-100000}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-20}
PGBENCH_SECS=${PGBENCH_SECS:-20}
PROFILE_SECS=${PROFILE_SECS:-10}
CLIENTS=${CLIENTS:-16}
WORKERS=${WORKERS:-8}
INTERLEAVE=${INTERLEAVE:-64}
LOADGEN_CUSTOMERS=${LOADGEN_CUSTOMERS:-1000}
SERVE_POOL=${SERVE_POOL:-}
QUIET=${QUIET:-1.5}
QUIET_WAIT=${QUIET_WAIT:-90}
WRITE_DOC=${WRITE_DOC:-auto}
KEEP=${KEEP:-0}
if ! [[ $QUIET =~ ^[0-9]+(\.[0-9]+)?$ && $QUIET_WAIT =~ ^[0-9]+$ ]]; then
	echo "bench: QUIET must be a number and QUIET_WAIT a whole number of seconds" >&2
	exit 2
fi
for v in EVENTS CUSTOMERS ROUNDS DURATION PGBENCH_SECS PROFILE_SECS CLIENTS WORKERS INTERLEAVE LOADGEN_CUSTOMERS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
		echo "bench: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
if [[ -n $SERVE_POOL && ! $SERVE_POOL =~ ^[1-9][0-9]*$ ]]; then
	echo "bench: SERVE_POOL must be a positive integer, not '$SERVE_POOL'" >&2
	exit 2
fi
if ((DURATION < 8 || PGBENCH_SECS < 8 || PROFILE_SECS < 5)); then
	echo "bench: DURATION and PGBENCH_SECS must be at least 8 (seconds), PROFILE_SECS at least 5" >&2
	exit 2
fi
if [[ $WRITE_DOC == auto ]]; then
	WRITE_DOC=$((EVENTS >= 1000000 ? 1 : 0))
fi

# Local connections without TLS, as `make bench-all` (scripts/pg.sh) gives.
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
for tool in curl jq awk; do
	command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

OUT=${OUT:-$(mktemp -d /tmp/upsell-bench.XXXXXX)}
mkdir -p "$OUT"
dbs=(upsell_benchall_pgbench upsell_benchall_empty upsell_benchall_big)
pids=() # processes this script started and has not stopped yet

# Not bench-lib's cleanup: that drops upsell_bench, which a bench-append.sh
# running beside this one may be using.
bench_cleanup() {
	local pid db
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP != 1 ]]; then
		for db in "${dbs[@]}"; do
			psql "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
		done
	fi
	rm -rf "$work"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }
# The machine is shared: each step says, as it starts (when this script's
# own work is idle), how many tasks are runnable, averaged over a second:
# other work competing for the CPUs. The document keeps them.
others=()
runnable() {
	local i n=0
	for i in 1 2 3 4 5; do
		n=$((n + $(awk '/^procs_running/ { print $2 - 1 }' /proc/stat)))
		sleep 0.2
	done
	calc '%.1f' "$n / 5"
}
step() {
	local r waited=0
	r=$(runnable)
	# Let a burst of other work pass before measuring, for a while.
	while awk -v r="$r" -v q="$QUIET" 'BEGIN { exit !(r > q) }' && ((waited < QUIET_WAIT)); do
		((waited > 0)) || say "(step $1: other work is running, $r runnable tasks: waiting up to ${QUIET_WAIT}s for at most $QUIET)"
		sleep 4
		waited=$((waited + 5))
		r=$(runnable)
	done
	others+=("${1%.} $r")
	printf '\n== %s %s (other runnable tasks: %s)\n' "$1" "$2" "$r" >&2
}
# now: seconds since the epoch, microseconds, without forking.
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
db_url() { printf '%s/%s%s' "$base" "$1" "$query"; }
sql() { psql "$1" -Atc "$2"; } # URL QUERY
forget_pid() {
	local keep=() p
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}
# median of the arguments (numbers), as given to printf's format $1.
median_of() {
	local fmt=$1
	shift
	printf '%s\n' "$@" | sort -g | awk -v fmt="$fmt" '{ r[NR] = $1 } END { printf fmt, NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }'
}

fresh_db() { # NAME: create it empty and migrate it
	psql "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
	DATABASE_URL=$(db_url "$1") bin/upsell migrate >/dev/null
}

# sample_waits DBNAME FILE SECONDS [PID]: what the database's sessions are
# doing, sampled every 0.25 s (pg_stat_activity: state and wait event) for
# SECONDS or until process PID ends, counted into FILE.
sample_waits() {
	local end=$((SECONDS + $3)) pid=${4:-}
	while ((SECONDS < end)) && { [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null; }; do
		psql "$DATABASE_URL" -Atc "SELECT state || ' ' || coalesce(wait_event_type || ':' || wait_event, 'on CPU')
FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid() AND state <> 'idle'" 2>/dev/null || true
		sleep 0.25
	done | sort | uniq -c | sort -rn >"$2"
}

# top_cum PROFILE BINARY OUT: the profile's cumulative top, kept to the
# service's own functions and the few library ones that say where the time
# goes (JSON, pgx's queries, system calls, the garbage collector).
top_cum() {
	go tool pprof -top -cum -nodecount=400 "$2" "$1" 2>/dev/null |
		awk 'NR <= 6 || /upsell-dev\/upsell|encoding\/json\.(Unmarshal|Marshal)$|pgx\/v5\.\(\*Conn\)\.(Query|SendBatch)$|Syscall6$|gcBgMarkWorker$|runtime\.mallocgc$/' |
		sed 's/\[go\.shape.*$/[...]/' | head -n 40 >"$3" || true
}

step 0. "build"
go build -o bin/upsell ./cmd/upsell
go build -o "$work/upsell-bench" ./cmd/upsell-bench
ub=$work/upsell-bench

pg_version=$(sql "$DATABASE_URL" "SELECT current_setting('server_version')")
sync_commit=$(sql "$DATABASE_URL" "SELECT current_setting('synchronous_commit')")
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
ncpu=$(nproc)
mem_gb=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
say "server: PostgreSQL $pg_version (synchronous_commit $sync_commit); machine: $ncpu x $cpu_model, ${mem_gb} GB"
say "artefacts: $OUT"

# 1. The big log -------------------------------------------------------------
step 1. "seed a log of $EVENTS events ($CUSTOMERS customers onboarded, then change quotes)"
fresh_db upsell_benchall_big
big=$(db_url upsell_benchall_big)
t0=$(now)
DATABASE_URL=$big "$ub" seedlog --events "$EVENTS" --customers "$CUSTOMERS" --workers "$WORKERS" --interleave "$INTERLEAVE" |
	tee "$OUT/seedlog.out" >&2
seed_secs=$(calc '%.1f' "$(now) - $t0")
# As autovacuum would leave an old log: visibility map and hint bits set,
# statistics current.
psql "$big" -c 'VACUUM (ANALYZE) events' >/dev/null
n_events=$(sql "$big" 'SELECT count(*) FROM events')
n_customers=$(sql "$big" "SELECT count(*) FROM events WHERE event_type = 'CustomerOnboarded'")
log_mb=$(sql "$big" "SELECT round(pg_total_relation_size('events') / 1048576.0)")
say "  $n_events events, $n_customers customers, events table $log_mb MB with its indexes, seeded in ${seed_secs}s"

step 1a. "raw ordered scan: COPY (SELECT * FROM events ORDER BY transaction_id, position) TO STDOUT"
scan_best=
for i in 1 2; do
	t0=$(now)
	psql "$big" -c 'COPY (SELECT * FROM events ORDER BY transaction_id, position) TO STDOUT' >/dev/null
	s=$(calc '%.2f' "$(now) - $t0")
	say "  run $i: ${s}s, $(calc '%.0f' "$n_events / $s") events/s"
	if [[ -z $scan_best ]] || awk -v a="$s" -v b="$scan_best" 'BEGIN { exit !(a < b) }'; then scan_best=$s; fi
done
scan_eps=$(calc '%.0f' "$n_events / $scan_best")

step 1b. "upsell rebuild (every read model)"
t0=$(now)
# The client's own CPU time, each line stamped as it comes, and the
# database's side sampled meanwhile.
(
	DATABASE_URL=$big /usr/bin/time -f '%e %U %S' -o "$OUT/rebuild.time" bin/upsell rebuild 2>&1 |
		while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done >"$OUT/rebuild.log"
	now >"$work/rebuild.end"
) &
rebuild_pid=$!
pids+=("$rebuild_pid")
sample_waits upsell_benchall_big "$OUT/waits-rebuild.txt" 7200 "$rebuild_pid"
if ! wait "$rebuild_pid"; then
	say "bench: upsell rebuild failed:"
	tail -n 5 "$OUT/rebuild.log" >&2
	exit 1
fi
forget_pid "$rebuild_pid"
rebuild_secs=$(calc '%.2f' "$(cat "$work/rebuild.end") - $t0")
rebuild_eps=$(calc '%.0f' "$n_events / $rebuild_secs")
ratio_rebuild=$(calc '%.2f' "$rebuild_eps / $scan_eps")
read -r _ rb_user rb_sys <"$OUT/rebuild.time"
rebuild_cpu=$(calc '%.0f' "100 * ($rb_user + $rb_sys) / $rebuild_secs")
say "  $n_events events in ${rebuild_secs}s: $rebuild_eps events/s (every projection at once); the rebuild process used ${rebuild_cpu}% of a CPU"
say "  rebuild : raw scan = $rebuild_eps : $scan_eps = $ratio_rebuild"
say "  the database's active sessions meanwhile (samples: state, wait event):"
head -n 6 "$OUT/waits-rebuild.txt" | sed 's/^/    /' >&2
if awk -v e="$rebuild_eps" -v r="$ratio_rebuild" 'BEGIN { exit !(e < 100000 || r < 0.2) }'; then
	say "  below target: rebuilding again under a CPU profile (upsell-bench rebuild-profile)"
	if DATABASE_URL=$big "$ub" rebuild-profile --cpuprofile "$OUT/rebuild.cpu.pprof" >"$OUT/rebuild-profile.out" 2>&1; then
		sed 's/^/    /' "$OUT/rebuild-profile.out" >&2
		top_cum "$OUT/rebuild.cpu.pprof" "$ub" "$OUT/rebuild.top.txt"
	else
		say "bench: the profiled rebuild failed: $(tail -n 1 "$OUT/rebuild-profile.out")"
	fi
fi

step 1c. "upsell relay: the whole log into the SQL topic, from an empty checkpoint"
relay_done_sql="SELECT coalesce((SELECT (c.transaction_id, c.position) >= (h.transaction_id, h.position)
FROM projection_checkpoints c,
     (SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1) h
WHERE c.name = 'relay.postgres'), false)"
t0=$(now)
DATABASE_URL=$big bin/upsell relay --publish postgres >"$OUT/relay.out" 2>"$OUT/relay.log" &
relay_pid=$!
pids+=("$relay_pid")
until [[ $(sql "$big" "$relay_done_sql") == t ]]; do
	if ! kill -0 "$relay_pid" 2>/dev/null; then
		say "bench: upsell relay ended early:"
		tail -n 20 "$OUT/relay.log" >&2
		exit 1
	fi
	sleep 0.2
done
relay_secs=$(calc '%.2f' "$(now) - $t0")
kill -TERM "$relay_pid" 2>/dev/null || true
wait "$relay_pid" 2>/dev/null || true
forget_pid "$relay_pid"
published=$(sql "$big" 'SELECT count(*) FROM watermill_upsell_events')
relay_eps=$(calc '%.0f' "$n_events / $relay_secs")
say "  $published messages for $n_events events in ${relay_secs}s: $relay_eps events/s"

# 2. pgbench and HTTP commands, in rounds -----------------------------------
# start_serve LABEL URL: upsell serve on a free port, with pprof; sets
# serve_pid, serve_url and pprof_url once /healthz answers.
start_serve() {
	local port pport i url=$2
	port=$("$ub" freeport)
	pport=$("$ub" freeport)
	if [[ -n $SERVE_POOL ]]; then
		if [[ $url == *\?* ]]; then url="$url&pool_max_conns=$SERVE_POOL"; else url="$url?pool_max_conns=$SERVE_POOL"; fi
	fi
	DATABASE_URL=$url bin/upsell serve --addr "127.0.0.1:$port" --pprof "127.0.0.1:$pport" \
		>"$OUT/serve-$1.out" 2>"$OUT/serve-$1.log" &
	serve_pid=$!
	pids+=("$serve_pid")
	serve_url=http://127.0.0.1:$port
	pprof_url=http://127.0.0.1:$pport
	for i in $(seq 1 300); do
		if curl -fsS -o /dev/null "$serve_url/healthz" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$serve_pid" 2>/dev/null; then
			say "bench: upsell serve ended early:"
			tail -n 20 "$OUT/serve-$1.log" >&2
			return 1
		fi
		sleep 0.1
	done
	say "bench: upsell serve does not answer on $serve_url/healthz"
	return 1
}

stop_serve() {
	kill -TERM "$serve_pid" 2>/dev/null || true
	wait "$serve_pid" 2>/dev/null || true
	forget_pid "$serve_pid"
}

# vmhwm_mb PID: the process's peak resident set (VmHWM), in MB.
vmhwm_mb() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# CPU time, to say what one operation costs whatever else runs: cpu_snapshot
# DBNAME NAME=PID... prints "key ticks" for each named process and for each
# session of the database (pg:PID), in clock ticks (user + system).
clk_tck=$(getconf CLK_TCK)
cpu_snapshot() {
	local db=$1 kv p
	shift
	for kv in "$@"; do
		awk -v k="${kv%%=*}" '{ print k, $14 + $15 }' "/proc/${kv#*=}/stat" 2>/dev/null || true
	done
	for p in $(sql "$DATABASE_URL" "SELECT pid FROM pg_stat_activity WHERE datname = '$db'"); do
		awk -v k="pg:$p" '{ print k, $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true
	done
	# Every CPU's busy time: user, nice, system, irq, softirq, steal.
	awk '$1 == "cpu" { print "=all", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
# cpu_others BEFORE AFTER SECONDS: how many CPUs, on average, other work
# kept busy: all the machine's busy time but that of the measured processes.
cpu_others() {
	awk -v secs="$3" -v tck="$clk_tck" '
		NR == FNR { b[$1] = $2; next }
		$1 == "=all" { all = $2 - b[$1]; next }
		{ mine += $2 - ($1 in b ? b[$1] : 0) }
		END { o = (all - mine) / tck / secs; printf "%.2f", (o > 0 ? o : 0) }' "$1" "$2"
}
# cpu_ms BEFORE AFTER PREFIX SECONDS RATE: the CPU milliseconds per operation
# of the keys starting with PREFIX (those of AFTER; one new since BEFORE
# counts from 0), over SECONDS at RATE operations a second.
cpu_ms() {
	awk -v pre="$3" -v secs="$4" -v rate="$5" -v tck="$clk_tck" '
		NR == FNR { b[$1] = $2; next }
		index($1, pre) == 1 { d += $2 - ($1 in b ? b[$1] : 0) }
		END { printf "%.3f", (rate > 0 ? 1000 * d / tck / secs / rate : 0) }' "$1" "$2"
}
# cpu_window DBNAME SECONDS OUT NAME=PID...: two snapshots SECONDS apart;
# sets window_secs.
cpu_window() {
	local db=$1 secs=$2 out=$3 t1
	shift 3
	cpu_snapshot "$db" "$@" >"$out.before"
	t1=$(now)
	sleep "$secs"
	cpu_snapshot "$db" "$@" >"$out.after"
	window_secs=$(calc '%.3f' "$(now) - $t1")
}

# loadgen LABEL DBURL ARGS...: one commands-only run against serve_url,
# report in $OUT/loadgen-LABEL.json. A run with failed requests is reported
# and the bench goes on (the failures are in the table).
loadgen() {
	local label=$1 url=$2 rc=0
	shift 2
	DATABASE_URL=$url bin/upsell loadgen --target "$serve_url" --users "$CLIENTS" --customers "$LOADGEN_CUSTOMERS" \
		--commands-only --json --progress 5s "$@" >"$OUT/loadgen-$label.json" 2>"$OUT/loadgen-$label.log" || rc=$?
	if [[ ! -s $OUT/loadgen-$label.json ]]; then
		say "bench: loadgen $label gave no report (exit $rc):"
		tail -n 20 "$OUT/loadgen-$label.log" >&2
		return 1
	fi
	if ((rc != 0)); then
		say "bench: loadgen $label: $(jq -r '"\(.total.errors) of \(.total.requests) requests failed; the first: \(.first_error)"' "$OUT/loadgen-$label.json")"
	fi
}
lg() { jq -r "$2" "$OUT/loadgen-$1.json"; } # LABEL FILTER
# measured_loadgen LABEL DBURL DBNAME ARGS...: loadgen, with the CPU time of
# serve, loadgen and the database's sessions read over its middle (from 2 s
# in, DURATION - 4 s) into $work/cpu-LABEL.{before,after}.
measured_loadgen() {
	local label=$1 url=$2 db=$3 lg_pid
	shift 3
	loadgen "$label" "$url" "$@" &
	lg_pid=$!
	sleep 2
	# bin/upsell loadgen is the loadgen function's child.
	cpu_window "$db" $((DURATION - 4)) "$work/cpu-$label" serve="$serve_pid" loadgen="$(pgrep -P "$lg_pid" -f 'upsell loadgen' | head -n 1)"
	wait "$lg_pid"
}
lg_line() { lg "$1" '"\(.total.requests) requests, \(.total.throughput_per_second)/s, p50 \(.total.latency_ms.p50) ms, p99 \(.total.latency_ms.p99) ms, \(.total.refused) refused, \(.total.errors) errors"'; }

declare -A fig # figures by name_round, e.g. tp_empty_1
# http_block KIND ROUND DBNAME: a warm-up (importing loadgen's data the
# first time), DURATION s as fast as the server answers, PROFILE_SECS s
# likewise with a CPU profile of the server taken and the database's
# sessions sampled (apart, so that the observers' own cost, which pgbench's
# run does not bear, stays out of the measured throughput), then DURATION s
# at $rate (set from the first block: half its throughput).
http_block() {
	local kind=$1 r=$2 db=$3 label=$1-$2 url prof_secs=$((PROFILE_SECS - 3)) curl_pid waits_pid import=()
	url=$(db_url "$db")
	((r == 1)) || import=(--skip-import)
	start_serve "$label" "$url"
	if ((r == 1)); then
		say "upsell serve (pid $serve_pid) on $serve_url; loadgen warm-up, 5s, importing loadgen's $LOADGEN_CUSTOMERS customers"
	else
		say "upsell serve (pid $serve_pid) on $serve_url; loadgen warm-up, 5s"
	fi
	loadgen "$label-warmup" "$url" --duration 5s "${import[@]}"
	measured_loadgen "$label-max" "$url" "$db" --skip-import --duration "${DURATION}s"
	fig[oth_max_${kind}_$r]=$(cpu_others "$work/cpu-$label-max.before" "$work/cpu-$label-max.after" "$window_secs")
	(sleep 2 && curl -fsS -o "$OUT/serve-$label.cpu.pprof" "$pprof_url/debug/pprof/profile?seconds=$prof_secs") &
	curl_pid=$!
	(sleep 2 && sample_waits "$db" "$OUT/waits-$label.txt" "$prof_secs") &
	waits_pid=$!
	loadgen "$label-prof" "$url" --skip-import --duration "${PROFILE_SECS}s"
	wait "$curl_pid" || say "bench: no CPU profile of the server ($label)"
	wait "$waits_pid" || true
	fig[tp_prof_${kind}_$r]=$(lg "$label-prof" .total.throughput_per_second)
	fig[tp_${kind}_$r]=$(lg "$label-max" .total.throughput_per_second)
	fig[p99max_${kind}_$r]=$(lg "$label-max" .total.latency_ms.p99)
	say "  ${DURATION}s as fast as it answers: $(lg_line "$label-max")"
	say "  then ${PROFILE_SECS}s under the CPU profiler and the wait sampler: $(lg "$label-prof" .total.throughput_per_second)/s"
	local tp=${fig[tp_${kind}_$r]}
	local w=$work/cpu-$label-max
	fig[cpu_serve_${kind}_$r]=$(cpu_ms "$w.before" "$w.after" serve "$window_secs" "$tp")
	fig[cpu_pg_${kind}_$r]=$(cpu_ms "$w.before" "$w.after" pg: "$window_secs" "$tp")
	fig[cpu_lg_${kind}_$r]=$(cpu_ms "$w.before" "$w.after" loadgen "$window_secs" "$tp")
	say "  CPU per command: upsell serve ${fig[cpu_serve_${kind}_$r]} ms, PostgreSQL (its sessions) ${fig[cpu_pg_${kind}_$r]} ms, loadgen ${fig[cpu_lg_${kind}_$r]} ms"
	if [[ -z ${rate:-} ]]; then
		rate=$(calc '%.0f' "${fig[tp_${kind}_$r]} / 2")
	fi
	measured_loadgen "$label-rate" "$url" "$db" --skip-import --duration "${DURATION}s" --rate "$rate"
	fig[oth_rate_${kind}_$r]=$(cpu_others "$work/cpu-$label-rate.before" "$work/cpu-$label-rate.after" "$window_secs")
	say "  ${DURATION}s at $rate requests/s:      $(lg_line "$label-rate")"
	say "  other work kept ${fig[oth_max_${kind}_$r]} and ${fig[oth_rate_${kind}_$r]} CPUs busy during the two runs"
	fig[p50_${kind}_$r]=$(lg "$label-rate" .total.latency_ms.p50)
	fig[p99_${kind}_$r]=$(lg "$label-rate" .total.latency_ms.p99)
	fig[err_${kind}_$r]=$(($(lg "$label-rate" .total.errors) + $(lg "$label-max" .total.errors) + $(lg "$label-prof" .total.errors)))
	fig[hwm_${kind}_$r]=$(vmhwm_mb "$serve_pid")
	say "  peak RSS (VmHWM) $(printf '%s' "${fig[hwm_${kind}_$r]}") MB; the database's active sessions while loaded (samples: state, wait event):"
	head -n 5 "$OUT/waits-$label.txt" | sed 's/^/    /' >&2
	stop_serve
	if [[ -s $OUT/serve-$label.cpu.pprof ]]; then
		top_cum "$OUT/serve-$label.cpu.pprof" bin/upsell "$OUT/serve-$label.top.txt"
	fi
}

rate=
fresh_db upsell_benchall_empty
for r in $(seq 1 "$ROUNDS"); do
	step "2.${r}a" "pgbench: one single-row insert per transaction into events, $CLIENTS clients, ${PGBENCH_SECS}s"
	fresh_db upsell_benchall_pgbench
	pgbench_events "$(db_url upsell_benchall_pgbench)" "$CLIENTS" "$PGBENCH_SECS" >"$work/pgbench.tps" &
	pgb_pid=$!
	sleep 2
	cpu_window upsell_benchall_pgbench $((PGBENCH_SECS - 4)) "$work/cpu-pgbench-$r" pgbench="$(pgrep -P "$pgb_pid" -x pgbench | head -n 1)"
	wait "$pgb_pid"
	fig[pg_$r]=$(cat "$work/pgbench.tps")
	cp "$work/pgbench-events.out" "$OUT/pgbench-$r.out"
	fig[cpu_pg_pgbench_$r]=$(cpu_ms "$work/cpu-pgbench-$r.before" "$work/cpu-pgbench-$r.after" pg: "$window_secs" "${fig[pg_$r]}")
	fig[cpu_client_pgbench_$r]=$(cpu_ms "$work/cpu-pgbench-$r.before" "$work/cpu-pgbench-$r.after" pgbench "$window_secs" "${fig[pg_$r]}")
	fig[oth_pgbench_$r]=$(cpu_others "$work/cpu-pgbench-$r.before" "$work/cpu-pgbench-$r.after" "$window_secs")
	psql "$DATABASE_URL" -c "DROP DATABASE IF EXISTS upsell_benchall_pgbench WITH (FORCE)" >/dev/null
	say "  pgbench: ${fig[pg_$r]} tps; CPU per insert: PostgreSQL (its sessions) ${fig[cpu_pg_pgbench_$r]} ms, pgbench ${fig[cpu_client_pgbench_$r]} ms; other work kept ${fig[oth_pgbench_$r]} CPUs busy"
	step "2.${r}b" "HTTP commands on an empty database (loadgen's data only)"
	http_block empty "$r" upsell_benchall_empty
	fig[ratio_http_$r]=$(calc '%.3f' "${fig[tp_empty_$r]} / ${fig[pg_$r]}")
	say "  commands/s : pgbench tps = ${fig[tp_empty_$r]} : ${fig[pg_$r]} = ${fig[ratio_http_$r]}"
	step "2.${r}c" "HTTP commands beside $n_customers customers and $n_events events"
	http_block big "$r" upsell_benchall_big
	fig[ratio_flat_$r]=$(calc '%.3f' "${fig[tp_big_$r]} / ${fig[tp_empty_$r]}")
	fig[ratio_flat_p50_$r]=$(calc '%.3f' "${fig[p50_big_$r]} / ${fig[p50_empty_$r]}")
	say "  big : empty = commands/s ${fig[ratio_flat_$r]}, p50 at $rate requests/s ${fig[ratio_flat_p50_$r]}"
done

# Medians over the rounds, and each round's values for the details.
med() { # FORMAT NAME: the median of fig[NAME_1..ROUNDS]
	local v=() r
	for r in $(seq 1 "$ROUNDS"); do v+=("${fig[${2}_$r]}"); done
	median_of "$1" "${v[@]}"
}
each() { # FORMAT NAME: the rounds' values, "a / b / c"
	local out=() r
	for r in $(seq 1 "$ROUNDS"); do out+=("$(calc "$1" "${fig[${2}_$r]}")"); done
	local IFS=/
	printf '%s' "${out[*]}" | sed 's#/# / #g'
}
pg_tps=$(med '%.0f' pg)
tp_empty=$(med '%.0f' tp_empty)
tp_big=$(med '%.0f' tp_big)
ratio_http=$(med '%.2f' ratio_http)
ratio_flat=$(med '%.2f' ratio_flat)
ratio_flat_p50=$(med '%.2f' ratio_flat_p50)
p50_empty=$(med '%.2f' p50_empty)
p50_big=$(med '%.2f' p50_big)
p99_empty=$(med '%.1f' p99_empty)
p99_big=$(med '%.1f' p99_big)
hwm=0
errors=0
for k in "${!fig[@]}"; do
	case $k in
	hwm_*) hwm=$(awk -v a="$hwm" -v b="${fig[$k]}" 'BEGIN { print (b > a ? b : a) }') ;;
	err_*) errors=$((errors + ${fig[$k]})) ;;
	esac
done
ratio_relay=$(calc '%.2f' "$relay_eps / $pg_tps")

# Summary ------------------------------------------------------------------
met() { awk "BEGIN { print (($1) ? \"yes\" : \"**no**\") }"; }
rows=(
	"pgbench, 1-row insert per transaction, $CLIENTS clients|$pg_tps tps|||baseline|"
	"HTTP commands/s, $CLIENTS users, empty database|$tp_empty|$pg_tps tps|$ratio_http|≥ 0.5x pgbench|$(met "$ratio_http >= 0.5")"
	"command p99 at half that ($rate req/s), empty database|$p99_empty ms|||≤ 25 ms|$(met "$p99_empty <= 25")"
	"raw ordered scan (COPY ... ORDER BY transaction_id, position)|$scan_eps events/s|||baseline|"
	"upsell rebuild, every read model, $n_events events|$rebuild_eps events/s|$scan_eps events/s|$ratio_rebuild|≥ 100000 events/s|$(met "$rebuild_eps >= 100000")"
	"upsell rebuild against the raw scan|$ratio_rebuild|||≥ 0.2x scan|$(met "$ratio_rebuild >= 0.2")"
	"upsell relay to the SQL topic, $n_events events|$relay_eps events/s|$pg_tps tps|$ratio_relay|≥ 10000 events/s|$(met "$relay_eps >= 10000")"
	"upsell serve peak RSS (VmHWM), under the loads above|$hwm MB|||≤ 150 MB|$(met "$hwm <= 150")"
	"HTTP commands/s, $CLIENTS users, big database|$tp_big|$tp_empty (empty)|$ratio_flat|flat: ≥ 0.85x empty|$(met "$ratio_flat >= 0.85")"
	"command p50 at $rate req/s, big database|$p50_big ms|$p50_empty ms (empty)|$ratio_flat_p50|flat: ≤ 1.25x empty|$(met "$ratio_flat_p50 <= 1.25")"
	"command p99 at $rate req/s, big database|$p99_big ms|$p99_empty ms (empty)||≤ 25 ms|$(met "$p99_big <= 25")"
)
table() {
	printf '| figure | value | baseline | ratio | target | met |\n| --- | ---: | ---: | ---: | --- | --- |\n'
	local r
	for r in "${rows[@]}"; do printf '| %s |\n' "${r//|/ | }"; done
}
details() {
	local c_serve c_pg c_lg c_pgpg c_pgcl
	c_serve=$(med '%.3f' cpu_serve_empty)
	c_pg=$(med '%.3f' cpu_pg_empty)
	c_lg=$(med '%.3f' cpu_lg_empty)
	c_pgpg=$(med '%.3f' cpu_pg_pgbench)
	c_pgcl=$(med '%.3f' cpu_client_pgbench)
	cat <<EOF
Rounds (one value per round; the table gives medians): pgbench $(each '%.0f' pg)
tps; commands/s empty $(each '%.0f' tp_empty), big $(each '%.0f' tp_big) (under the
profiler: empty $(each '%.0f' tp_prof_empty), big $(each '%.0f' tp_prof_big)); p99 at
full throughput empty $(each '%.1f' p99max_empty) ms, big $(each '%.1f' p99max_big) ms;
at $rate req/s p50 empty $(each '%.2f' p50_empty) ms, big $(each '%.2f' p50_big) ms,
p99 empty $(each '%.1f' p99_empty) ms, big $(each '%.1f' p99_big) ms; peak RSS empty
$(each '%.1f' hwm_empty) MB, big $(each '%.1f' hwm_big) MB; failed requests: $errors. The
log was seeded in ${seed_secs} s. The rebuild took $rebuild_secs s
(every projection at once, each on connections of its own), its process using ${rebuild_cpu}% of one
CPU, the rest being PostgreSQL and the round trips.

CPU time per operation at full throughput (read from /proc over the middle
$((PGBENCH_SECS - 4)) s of each pgbench run and $((DURATION - 4)) s of each loadgen run; medians):
pgbench's raw insert costs PostgreSQL $c_pgpg ms and pgbench $c_pgcl ms; an HTTP
command costs upsell serve $c_serve ms, PostgreSQL (the service's sessions)
$c_pg ms and loadgen $c_lg ms on the empty database, and
$(med '%.3f' cpu_serve_big), $(med '%.3f' cpu_pg_big) and $(med '%.3f' cpu_lg_big) ms on the big one. With $ncpu CPUs shared by all
three, the CPU allows at most $(calc '%.0f' "1000 * $ncpu / ($c_serve + $c_pg + $c_lg)") commands/s, and $(calc '%.0f' "1000 * $ncpu / ($c_pgpg + $c_pgcl)") inserts/s to
pgbench.

Other work on the machine: CPUs it kept busy, on average, during each
measured window (the machine's busy time but that of pgbench, loadgen,
upsell serve and their database sessions; PostgreSQL's background writers
count as other work): pgbench $(each '%.2f' oth_pgbench); empty database, full
throughput $(each '%.2f' oth_max_empty), at $rate req/s $(each '%.2f' oth_rate_empty); big database
$(each '%.2f' oth_max_big) and $(each '%.2f' oth_rate_big). Runnable tasks of other work as each step
started (averaged over a second): $(IFS=,; printf '%s' "${others[*]}" | sed 's/,/, /g').
EOF
}

step 3. "summary"
table
echo
details
echo "Artefacts: $OUT"

# The document ---------------------------------------------------------------
if [[ $WRITE_DOC != 1 ]]; then
	say "docs/performance.md not written (a quick run: EVENTS < 1000000; WRITE_DOC=1 forces it)"
	exit 0
fi
doc=docs/performance.md
heading="## Issue 5 targets (scripts/bench.sh)"
begin="<!-- bench.sh:begin (written by scripts/bench.sh; edit below the end marker) -->"
end="<!-- bench.sh:end -->"
leads() {
	local f
	for f in empty-1 rebuild; do
		[[ -s $OUT/waits-$f.txt ]] || continue
		printf '\nThe database sessions during %s, sampled every 0.25 s (count, state, wait event):\n\n```\n' "$f"
		head -n 8 "$OUT/waits-$f.txt"
		printf '```\n'
	done
	for f in serve-empty-1 rebuild; do
		[[ -s $OUT/$f.top.txt ]] || continue
		printf '\nCPU profile of %s (`go tool pprof -top -cum`, the service'"'"'s own functions and a few telling library ones):\n\n```\n' "$f"
		cut -c1-160 "$OUT/$f.top.txt"
		printf '```\n'
	done
}
{
	echo "$begin"
	cat <<EOF

Measured $(date -u +%Y-%m-%d) on $ncpu × $cpu_model, ${mem_gb} GB, PostgreSQL
$pg_version (\`synchronous_commit\` $sync_commit), shared with other work;
the load generator, pgbench and the server all ran on the same machine.${SERVE_POOL:+ upsell serve ran with pool_max_conns=$SERVE_POOL.}

$(table)

$(details)

Method (\`make bench-all\`, or \`scripts/bench.sh\`; knobs EVENTS,
CUSTOMERS, ROUNDS, DURATION, PROFILE_SECS, CLIENTS, INTERLEAVE, SERVE_POOL):

- **Big log**: \`upsell-bench seedlog\` (cmd/upsell-bench,
  internal/benchtools): loadgen's generator for $CUSTOMERS customers of
  one MSP (seed 2), onboarded as the importer does, then change quotes
  decided by the domain (open, 1-12 seat raises, a product added to one in
  three, half saved and left, half reviewed, acknowledged and submitted,
  which amends the customer), until $n_events events; appended through
  \`eventstore.Append\` one command at a time as the service appends them,
  $WORKERS workers each with $INTERLEAVE quotes in progress and one command
  of each per transaction, so that a quote's events lie far apart in the
  log as when many users work at once; then \`VACUUM (ANALYZE) events\`.
  The events table with its indexes: $log_mb MB.
- **Raw ordered scan**: \`psql -c "COPY (SELECT * FROM events ORDER BY
  transaction_id, position) TO STDOUT" > /dev/null\`, the better of two.
- **Rebuild**: \`upsell rebuild\` (every read model at once, each reading
  its stream type's events) timed from outside: events in the log ÷ wall
  time.
- **Relay**: \`upsell relay --publish postgres\` from an empty checkpoint,
  timed until its checkpoint reaches the log's head: events ÷ wall time.
- **pgbench**, in each round: \`pgbench -n -c $CLIENTS -j 2 -T $PGBENCH_SECS\`,
  one \`INSERT\` of one event row per transaction (bench-lib.sh's
  ~300-byte payload, a constant hash) into a freshly migrated database: the
  real \`events\` table, its columns, checks and indexes.
- **HTTP commands**, in each round: \`upsell serve\` on the database
  (its default pool unless SERVE_POOL says otherwise), \`upsell loadgen
  --commands-only --users $CLIENTS\` (open a quote, then raise seats on it;
  each request appends one event and writes the quote's read model in the
  same transaction) after a 5 s warm-up: $DURATION s as fast as the server
  answers (the throughput above), then $PROFILE_SECS s likewise under
  a CPU profile of the server (\`--pprof\`) with the database's sessions
  sampled every 0.25 s by psql (a run of its own: the observers cost CPU
  that pgbench's run does not pay; its throughput is in the rounds'
  figures), then $DURATION s at \`--rate\` $rate, half the first round's
  throughput (loadgen's pacer does not catch up, and latency is timed from
  the send). First on a database with loadgen's data only (1000 customers),
  then on the big log's database (the same data beside the $n_customers
  customers and $n_events events). RSS is \`VmHWM\` of each serve process
  after its two runs.
$(leads)

$end
EOF
} >"$work/section.md"
if ! grep -qxF "$heading" "$doc"; then
	printf '\n%s\n\n%s\n%s\n' "$heading" "$begin" "$end" >>"$doc"
fi
awk -v heading="$heading" -v begin="$begin" -v end="$end" -v section="$work/section.md" '
	$0 == heading { inside = 1 }
	inside && $0 == begin { while ((getline l < section) > 0) print l; skipping = 1; next }
	skipping { if ($0 == end) { skipping = 0; inside = 0 }; next }
	{ print }
' "$doc" >"$work/performance.md"
cat "$work/performance.md" >"$doc"
say "wrote the section \"${heading#\#\# }\" of $doc"
