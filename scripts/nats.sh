#!/usr/bin/env bash
# nats.sh: find, start or install a NATS server with JetStream for the
# relay's NATS transport and its tests.
#
#   scripts/nats.sh url     print a NATS URL (nats://HOST:PORT) with JetStream
#   scripts/nats.sh stop    stop the private server, if this project started one
#
# Only the URL goes to stdout; progress goes to stderr, prefixed "nats.sh:".
# Order for `url`: $NATS_URL (must answer, no fallback), the local server on
# 127.0.0.1:4222, a private `nats-server -js` on 127.0.0.1:$UPSELL_NATS_PORT
# (default 54222) storing in .natsdata/, `apt-get install nats-server` when
# the binary is missing, then the private server.
#
# Environment:
#   UPSELL_NATS_PORT=54222       port of the private server (127.0.0.1 only)
#   UPSELL_NATS_SKIP_LOCAL=1     testing aid: skip 127.0.0.1:4222, use the private server
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PORT="${UPSELL_NATS_PORT:-54222}"
DATA="$ROOT/.natsdata"

log() { printf 'nats.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] || die "UPSELL_NATS_PORT must be a number, got '$PORT'"

# answers HOST PORT: a NATS server greets with INFO {...}, with "jetstream":true
# when JetStream is on.
answers() {
	local info
	info="$(timeout 3 bash -c 'exec 3<>/dev/tcp/$0/$1 && IFS= read -r -t 2 line <&3 && printf "%s" "$line"' "$1" "$2" 2>/dev/null)" || return 1
	[[ "$info" == INFO* ]] || return 1
	if [[ "$info" != *'"jetstream":true'* ]]; then
		log "the NATS server on $1:$2 has no JetStream (start it with -js)"
		return 1
	fi
}

install_nats() {
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	command -v apt-get >/dev/null || die "no nats-server and no apt-get: install nats-server or set NATS_URL"
	[ ${#sudo[@]} -eq 0 ] || command -v sudo >/dev/null || die "not root and no sudo: install the Debian package nats-server or set NATS_URL"
	log "installing the Debian package nats-server (apt-get)"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server >&2
}

cmd_url() {
	if [ -n "${NATS_URL:-}" ]; then
		local hp="${NATS_URL#*://}"
		hp="${hp##*@}"
		answers "${hp%%:*}" "${hp##*:}" || die "NATS_URL=$NATS_URL does not answer with JetStream (unset it to let nats.sh find or start a server)"
		echo "$NATS_URL"
		return 0
	fi
	if [ "${UPSELL_NATS_SKIP_LOCAL:-}" != 1 ] && answers 127.0.0.1 4222; then
		log "using the local server: nats://127.0.0.1:4222"
		echo "nats://127.0.0.1:4222"
		return 0
	fi
	if answers 127.0.0.1 "$PORT"; then
		log "using the private server on 127.0.0.1:$PORT"
		echo "nats://127.0.0.1:$PORT"
		return 0
	fi
	local bin
	bin="$(command -v nats-server || true)"
	[ -n "$bin" ] || [ ! -x /usr/sbin/nats-server ] || bin=/usr/sbin/nats-server
	if [ -z "$bin" ]; then
		install_nats
		bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
		[ -x "$bin" ] || die "nats-server still not found after installing"
	fi
	mkdir -p "$DATA"
	log "starting a private nats-server -js on 127.0.0.1:$PORT (data in $DATA, log in $DATA/server.log)"
	# setsid and no inherited fds: the server outlives this script and make.
	setsid "$bin" -js -a 127.0.0.1 -p "$PORT" -sd "$DATA" -P "$DATA/server.pid" \
		</dev/null >>"$DATA/server.log" 2>&1 9>&- &
	for _ in $(seq 1 50); do
		if answers 127.0.0.1 "$PORT"; then
			echo "nats://127.0.0.1:$PORT"
			return 0
		fi
		sleep 0.2
	done
	die "the private nats-server did not answer within 10 s; see $DATA/server.log"
}

cmd_stop() {
	if [ -f "$DATA/server.pid" ] && kill "$(cat "$DATA/server.pid")" 2>/dev/null; then
		log "stopped the private nats-server"
	else
		log "no private nats-server running"
	fi
}

case "${1:-}" in
url) cmd_url ;;
stop) cmd_stop ;;
*) die "usage: scripts/nats.sh url|stop" ;;
esac
