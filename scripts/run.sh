#!/usr/bin/env bash
# run.sh: what `make run` runs: find/start PostgreSQL, make sure the service
# database `upsell` exists, build bin/upsell, then migrate, import the demo
# fixture and serve the API until Ctrl-C.
#
#   UPSELL_FIXTURE=path   the file to import (default fixtures/import-example.json)
#   UPSELL_ADDR=host:port where to serve (default 127.0.0.1:8080)
#   UPSELL_DEMO=1         run the seed story (upsell demo) instead of serving
set -euo pipefail

# Resolve a relative UPSELL_FIXTURE against the caller's directory, before cd.
fixture="${UPSELL_FIXTURE:-}"
[ -z "$fixture" ] || [[ "$fixture" == /* ]] || fixture="$PWD/$fixture"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fixture="${fixture:-$PWD/fixtures/import-example.json}"
[ -f "$fixture" ] || { echo "run.sh: fixture $fixture not found (set UPSELL_FIXTURE)" >&2; exit 1; }

step() { printf '==> %s\n' "$*"; }

admin="$(bash scripts/pg.sh url)"

# The service URL: the admin URL with its database part replaced by /upsell,
# keeping the query (sslmode, host=/socket/dir). URL form only, not key=value.
case "$admin" in
postgres://* | postgresql://*) ;;
*) echo "run.sh: DATABASE_URL must be a postgres:// URL" >&2; exit 1 ;;
esac
base="${admin%%\?*}"
query="${admin#"$base"}"
rest="${base#*://}"
DATABASE_URL="${base%%://*}://${rest%%/*}/upsell$query"
export DATABASE_URL

if [ "$(bash scripts/pg.sh psql -X -w -At -d "$admin" -c "select 1 from pg_database where datname = 'upsell'")" != 1 ]; then
	step "create database upsell"
	bash scripts/pg.sh psql -X -w -q -d "$admin" -c 'create database upsell'
fi

step "go build -o bin/upsell ./cmd/upsell"
go build -o bin/upsell ./cmd/upsell

step "upsell migrate"
bin/upsell migrate
step "upsell import $fixture"
bin/upsell import "$fixture"
if [ "${UPSELL_DEMO:-}" = 1 ]; then
	step "upsell demo"
	exec bin/upsell demo
fi

addr="${UPSELL_ADDR:-127.0.0.1:8080}"
key="$(grep -o '"api_key" *: *"[^"]*"' "$fixture" | head -n 1 | sed 's/.*: *"\(.*\)"/\1/')"
cat <<EOT

Demo API key (the fixture's first user): ${key:-see $fixture}
Try:
  curl -s -H 'Authorization: Bearer ${key}' 'http://$addr/v1/customers?q=contoso'
The README walks through the whole change order with curl.

EOT
step "upsell serve --addr $addr"
exec bin/upsell serve --addr "$addr"
