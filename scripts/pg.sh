#!/usr/bin/env bash
# pg.sh: find, start or install a PostgreSQL server for this project.
#
#   scripts/pg.sh url      print an admin DATABASE_URL (a role that can CREATE DATABASE)
#   scripts/pg.sh stop     stop the private cluster, if this project started one
#   scripts/pg.sh status   say what is running
#   scripts/pg.sh psql ... run psql (from PATH or the PostgreSQL bin dirs)
#   . scripts/pg.sh        (sourced) export DATABASE_URL
#
# Only the URL goes to stdout; progress goes to stderr, prefixed "pg.sh:".
# Order for `url`: $DATABASE_URL (must answer, no fallback), the local server
# on 127.0.0.1:5432 or /var/run/postgresql, a private cluster in .pgdata/
# (started from the installed binaries), `apt-get install postgresql` when
# there are no binaries, then the private cluster.
#
# Environment:
#   UPSELL_PG_PORT=55432           port of the private cluster (127.0.0.1 only)
#   UPSELL_PG_SKIP_LOCAL=1         testing aid: skip the local server, use the private cluster
#   UPSELL_PG_BINDIR_SEARCH=GLOBS  testing aid: dirs searched for initdb after PATH
#                                  (default /usr/lib/postgresql/*/bin)
#   UPSELL_PG_DRY_INSTALL=1        testing aid: print the apt-get command and exit 1

# Sourced: run ourselves in a child so our `set -e` and helpers stay out of the caller.
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
	_upsell_url="$(bash "${BASH_SOURCE[0]}" url)" || { unset _upsell_url; return 1; }
	export DATABASE_URL="$_upsell_url"
	unset _upsell_url
	return 0
fi

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PORT="${UPSELL_PG_PORT:-55432}"
HASH="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
# Used when the cluster owner cannot reach $ROOT (e.g. a project under /root).
ALT_DATA="/var/tmp/upsell-pg-$HASH"

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:xxxxx@#' <<<"$1"; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "UPSELL_PG_PORT must be a number, got '$PORT'"

# Directory holding initdb and pg_ctl: PATH first, then the search dirs, highest
# version first; a version given as $1 (that of an existing cluster) is preferred.
find_bindir() {
	local p d
	if [ -n "${1:-}" ] && [ -z "${UPSELL_PG_BINDIR_SEARCH:-}" ] && [ -x "/usr/lib/postgresql/$1/bin/pg_ctl" ]; then
		echo "/usr/lib/postgresql/$1/bin"; return 0
	fi
	if p="$(command -v initdb)"; then
		d="$(dirname "$(readlink -f "$p")")"
		[ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
	fi
	# shellcheck disable=SC2086 # the search list is globs, expanded on purpose
	for d in $(printf '%s\n' ${UPSELL_PG_BINDIR_SEARCH:-/usr/lib/postgresql/*/bin} | sort -rV); do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
	done
	return 1
}

find_psql() {
	local d
	command -v psql && return 0
	d="$(find_bindir)" && [ -x "$d/psql" ] && { echo "$d/psql"; return 0; }
	return 1
}

# q URL SQL: run one query, no password prompt (CI has no stdin), short timeout.
q() { PGCONNECT_TIMEOUT=5 "$PSQL" -X -w -At -d "$1" -c "$2" 2>/dev/null; }

# can_create URL: the server answers and the role may CREATE DATABASE.
can_create() {
	[ "$(q "$1" 'select rolcreatedb or rolsuper from pg_roles where rolname = current_user')" = t ]
}

# --- the private cluster -------------------------------------------------

# The data dir of an initialised private cluster, if any.
existing_data() {
	local d
	for d in "$ROOT/.pgdata" "$ALT_DATA"; do
		[ -f "$d/PG_VERSION" ] && { echo "$d"; return 0; }
	done
	return 1
}

# as_owner CMD...: run CMD as $OWNER. initdb and postgres refuse to run as root,
# so root runs them as another user; cd / because that user may not read our cwd.
as_owner() {
	if [ "$(id -u)" -ne 0 ]; then
		(cd / && "$@")
	elif command -v runuser >/dev/null; then
		(cd / && runuser -u "$OWNER" -- "$@")
	else
		(cd / && su "$OWNER" -s /bin/sh -c "$(printf '%q ' "$@")")
	fi
}

# Pick the OS user for a new cluster (root only) and the data dir it can reach.
choose_owner_and_data() {
	OWNER="$(id -un)"
	DATA="$ROOT/.pgdata"
	[ "$(id -u)" -eq 0 ] || return 0
	if id -u postgres >/dev/null 2>&1; then
		OWNER=postgres
	else
		OWNER=upsell-pg
		id -u "$OWNER" >/dev/null 2>&1 ||
			useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$OWNER"
	fi
	if ! as_owner test -x "$ROOT"; then
		DATA="$ALT_DATA"
		log "user $OWNER cannot enter $ROOT; the private cluster lives in $DATA"
	fi
	mkdir -p "$DATA"
	chown "$OWNER" "$DATA"
}

# Start (initialising if needed) the private cluster; print its URL.
private_cluster() {
	local bindir sock out ver="" running_port
	if DATA="$(existing_data)"; then
		OWNER="$(stat -c %U "$DATA")"
		ver="$(cat "$DATA/PG_VERSION")"
	fi
	if ! bindir="$(find_bindir "$ver")"; then
		install_postgresql
		bindir="$(find_bindir "$ver")" || die "apt-get installed postgresql but no initdb/pg_ctl was found"
	fi
	[ -n "$PSQL" ] || PSQL="$bindir/psql"
	if [ -z "$ver" ]; then
		choose_owner_and_data
		log "initialising a private cluster in $DATA ($bindir/initdb, as $OWNER)"
		# --no-locale: the machine's locale may not be generated; C is valid with UTF8.
		out="$(as_owner "$bindir/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-locale 2>&1)" ||
			{ printf '%s\n' "$out" >&2; die "initdb failed"; }
	fi
	if as_owner "$bindir/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
		# Already up: use the port it was started with (line 4 of postmaster.pid).
		running_port="$(sed -n 4p "$DATA/postmaster.pid")"
		log "private cluster in $DATA is running on port $running_port"
		PORT="$running_port"
	else
		sock="$DATA/run"
		as_owner mkdir -p "$sock"
		# A unix socket path is limited to 107 bytes; without one we still have TCP.
		[ $((${#sock} + 18)) -le 107 ] || sock=""
		log "starting the private cluster in $DATA on 127.0.0.1:$PORT (log: $DATA/log)"
		as_owner "$bindir/pg_ctl" -D "$DATA" -l "$DATA/log" -s -w -t 60 \
			-o "-p $PORT -h 127.0.0.1 -k $(printf '%q' "${sock:-}")" start >&2 9>&- ||
			{ tail -n 20 "$DATA/log" >&2 || true; die "the private cluster did not start (see $DATA/log)"; }
	fi
	local url="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"
	can_create "$url" || die "the private cluster started but $url does not answer"
	echo "$url"
}

install_postgresql() {
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	log "no PostgreSQL server binaries found (PATH, ${UPSELL_PG_BINDIR_SEARCH:-/usr/lib/postgresql/*/bin})"
	if [ "${UPSELL_PG_DRY_INSTALL:-}" = 1 ]; then
		log "dry run: would run: ${sudo[*]:+${sudo[*]} }env DEBIAN_FRONTEND=noninteractive apt-get update, then apt-get install -y postgresql"
		exit 1
	fi
	command -v apt-get >/dev/null ||
		die "no apt-get here: install the PostgreSQL server (initdb, pg_ctl) or set DATABASE_URL"
	[ ${#sudo[@]} -eq 0 ] || command -v sudo >/dev/null ||
		die "not root and no sudo: install the Debian package postgresql or set DATABASE_URL"
	log "installing the Debian package postgresql (apt-get)"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
}

# --- commands ------------------------------------------------------------

cmd_url() {
	local err
	PSQL="$(find_psql || true)"
	if [ -n "${DATABASE_URL:-}" ]; then
		if [ -z "$PSQL" ]; then
			log "psql not found: using DATABASE_URL=$(redact "$DATABASE_URL") unchecked"
		elif ! err="$(PGCONNECT_TIMEOUT=5 "$PSQL" -X -w -At -d "$DATABASE_URL" -c 'select 1' 2>&1 >/dev/null)"; then
			die "DATABASE_URL=$(redact "$DATABASE_URL") does not answer: ${err//$'\n'/ } (unset DATABASE_URL to let pg.sh find or start a server)"
		fi
		echo "$DATABASE_URL"
		return 0
	fi
	if [ "${UPSELL_PG_SKIP_LOCAL:-}" = 1 ]; then
		log "UPSELL_PG_SKIP_LOCAL=1: not trying the local server"
	elif [ -z "$PSQL" ]; then
		log "psql not found: cannot check for a local server, going for the private cluster"
	else
		local u me urls
		urls=("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
			"postgres://postgres@/postgres?host=/var/run/postgresql"
			"postgres://root@/postgres?host=/var/run/postgresql")
		# Also a developer's own role (peer auth) when they are not root.
		me="$(id -un)"
		[ "$me" = root ] || [ "$me" = postgres ] || urls+=("postgres://$me@/postgres?host=/var/run/postgresql")
		for u in "${urls[@]}"; do
			if can_create "$u"; then
				log "using the local server: $u"
				echo "$u"
				return 0
			fi
		done
		log "no local server answers as a role that can create databases"
	fi
	# Serialise: `make test` and `make run` at once must not both run initdb.
	# (The server must not inherit fd 9, or it would hold the lock forever.)
	if { exec 9>"${TMPDIR:-/tmp}/upsell-pg-$HASH.lock"; } 2>/dev/null; then
		flock -w 300 9 2>/dev/null || true
	fi
	private_cluster
}

cmd_stop() {
	local bindir
	DATA="$(existing_data)" || { log "no private cluster"; return 0; }
	OWNER="$(stat -c %U "$DATA")"
	bindir="$(find_bindir "$(cat "$DATA/PG_VERSION")")" || die "pg_ctl not found"
	if as_owner "$bindir/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
		as_owner "$bindir/pg_ctl" -D "$DATA" -m fast -s -w stop >&2
		log "stopped the private cluster in $DATA"
	else
		log "the private cluster in $DATA is not running"
	fi
}

cmd_status() {
	local data bindir
	[ -z "${DATABASE_URL:-}" ] || echo "DATABASE_URL=$(redact "$DATABASE_URL")"
	if data="$(existing_data)"; then
		if [ -f "$data/postmaster.pid" ] && kill -0 "$(head -n1 "$data/postmaster.pid")" 2>/dev/null; then
			echo "private cluster: running in $data on 127.0.0.1:$(sed -n 4p "$data/postmaster.pid")"
		else
			echo "private cluster: stopped ($data)"
		fi
	else
		echo "private cluster: none"
	fi
	if bindir="$(find_bindir)"; then echo "server binaries: $bindir"; else echo "server binaries: none"; fi
}

case "${1:-url}" in
url) cmd_url ;;
stop) cmd_stop ;;
status) cmd_status ;;
psql)
	shift
	PSQL="$(find_psql)" || die "psql not found: install postgresql-client"
	exec "$PSQL" "$@"
	;;
*) die "usage: $0 [url|stop|status|psql ARGS...]" ;;
esac
