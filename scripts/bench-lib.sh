# bench-lib.sh: what the benchmark scripts share: a scratch database
# upsell_bench on the server of DATABASE_URL, and pgbench inserting one event
# row per transaction (16 clients), the raw PostgreSQL figure every Upsell
# figure is set against. Sourced by bench-append.sh and bench-relay.sh, which
# set secs first.

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

for tool in pgbench psql go; do
	if ! command -v "$tool" >/dev/null; then
		echo "bench: $tool is not installed (pgbench and psql come with the PostgreSQL client package, e.g. postgresql-client)" >&2
		exit 1
	fi
done

# The scratch database sits on the same server: replace the URL's path.
base=${DATABASE_URL%%\?*}
query=${DATABASE_URL#"$base"}
if [[ ${base#*://} == */* ]]; then base=${base%/*}; fi
bench_url="$base/upsell_bench$query"

work=$(mktemp -d)
# psql quietly: no "does not exist, skipping" notices.
psql() { PGOPTIONS='-c client_min_messages=warning' command psql -qX -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
	psql "$DATABASE_URL" -c 'DROP DATABASE IF EXISTS upsell_bench WITH (FORCE)' >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# The payload of BenchmarkAppend (eventstore/bench_test.go), and metadata of
# the same shape.
data='{"quote_id":"6f1c2a9e-4b7d-4e21-9a3f-2c8d5e7b1a04","customer_id":"2b8e4f6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","product_id":"backup-m365","term_type":"annual","prior_quantity":682,"new_quantity":700,"prior_unit_price":"3.25","current_unit_price":"3.10","currency":"USD","reason":"seat increase requested by MSP"}'
metadata='{"msp_id":"msp-0042","user_id":"user-0815","correlation_id":"0b7e6d3c-5a1f-4c2e-9d8b-7f6a5e4d3c2b","causation_id":"1c8f7e4d-6b2a-4d3f-8e9c-8a7b6f5e4d3c"}'
cat >"$work/append.sql" <<SQL
INSERT INTO events (event_id, stream_id, stream_type, version, event_type, schema_version, data, metadata)
VALUES (gen_random_uuid(), gen_random_uuid()::text, 'bench', 1, 'SeatsChanged', 1, '$data'::jsonb, '$metadata'::jsonb);
SQL

# Each run starts on an empty table, as BenchmarkAppend does on its freshly
# created test database; the table is migration 001 itself, so the indexes
# match.
fresh_database() {
	psql "$DATABASE_URL" \
		-c 'DROP DATABASE IF EXISTS upsell_bench WITH (FORCE)' \
		-c 'CREATE DATABASE upsell_bench' >/dev/null
	psql "$bench_url" -f migrations/001_events.up.sql >/dev/null
}

run_pgbench() {
	fresh_database
	pgbench -n -c 16 -j 2 -T "$secs" -f "$work/append.sql" "$bench_url" >"$work/pgbench.out" 2>&1 ||
		{ cat "$work/pgbench.out" >&2; return 1; }
	sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out" | head -n 1
}

# median of the arguments, two decimals.
median() {
	printf '%s\n' "$@" | sort -n | awk '{ r[NR] = $1 } END { printf "%.2f", NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }'
}

# pgbench_events URL CLIENTS SECONDS: pgbench's tps inserting one event row
# per transaction into URL's events table, which `upsell migrate` made (every
# column, default, check and index of the real table, the hash column
# included; the hash is a constant, so this is the raw insert, with nothing
# of the append's logic). The same payload as run_pgbench. Used by bench.sh.
pgbench_events() {
	local url=$1 clients=$2 seconds=$3
	cat >"$work/append-hash.sql" <<SQL
INSERT INTO events (event_id, stream_id, stream_type, version, event_type, schema_version, data, metadata, hash)
VALUES (gen_random_uuid(), gen_random_uuid()::text, 'bench', 1, 'SeatsChanged', 1, '$data'::jsonb, '$metadata'::jsonb,
        '\x5b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9fa'::bytea);
SQL
	pgbench -n -c "$clients" -j 2 -T "$seconds" -f "$work/append-hash.sql" "$url" >"$work/pgbench-events.out" 2>&1 ||
		{ cat "$work/pgbench-events.out" >&2; return 1; }
	sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench-events.out" | head -n 1
}
