#!/usr/bin/env bash
# vulncheck.sh: govulncheck over the module; fails when our code reaches a
# known vulnerability (of a dependency or of the Go standard library).
#
#   scripts/vulncheck.sh              check ./...
#   scripts/vulncheck.sh ./handlers/  check these packages
#
# The vulnerability database is https://vuln.go.dev when it answers; else a
# local copy built from the module golang.org/x/vulndb (its data/osv/ holds
# every report as an OSV file), which the Go module proxy serves, into
# .cache/vulncheck/ (gitignored). VULNCHECK_DB overrides the choice: "local"
# for the local copy, or a database URL (https://... or file:///...).
#
# Exit status: 0 no reachable vulnerability; 1 some (govulncheck lists them
# with a call path from our code); 2 the check could not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GOVULNCHECK_VERSION=v1.9.0
# The local database: bump to a newer pseudo-version of golang.org/x/vulndb
# for newer reports (`go list -m -versions` lists none for it; take the
# latest from the proxy's @latest, or from the vulndb repository's log).
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
REMOTE_DB=https://vuln.go.dev
CACHE="$PWD/.cache/vulncheck"

say() { printf 'vulncheck: %s\n' "$*"; }
fail() {
	printf 'vulncheck: %s\n' "$*" >&2
	exit 2
}

# In a folder of its own: `go mod download` and `go run pkg@version` must
# not see (nor touch) this module's go.mod and go.sum.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# --- govulncheck -------------------------------------------------------
# Built by the Go that builds the project (GOTOOLCHAIN included): a
# govulncheck built by an older Go cannot load code of a newer one.
goversion="$(go env GOVERSION)"
gvc_dir="$CACHE/govulncheck@$GOVULNCHECK_VERSION-$goversion"
gvc="$gvc_dir/govulncheck"
if [ ! -x "$gvc" ]; then
	say "installing golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION with $goversion"
	mkdir -p "$gvc_dir"
	(cd "$scratch" && GOBIN="$gvc_dir" GOTOOLCHAIN="$goversion" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION") ||
		fail "could not install govulncheck $GOVULNCHECK_VERSION from the Go module proxy"
fi

# --- the database ------------------------------------------------------

# remote_modified prints the modified time of the database at $1, or fails
# when it does not answer within 10 s.
remote_modified() {
	command -v curl >/dev/null || return 1
	curl -fsS --max-time 10 "$1/index/db.json.gz" 2>/dev/null | gzip -dc 2>/dev/null |
		sed -n 's/.*"modified" *: *"\([^"]*\)".*/\1/p' | grep .
}

# local_db builds (once) the database of golang.org/x/vulndb@VULNDB_VERSION
# with x/vulndb's own indexdb, in the layout govulncheck reads from a
# file:// URL: index/db.json, index/modules.json and ID/<GO-ID>.json.
local_db() {
	local db="$CACHE/vulndb@$VULNDB_VERSION"
	if [ -f "$db/index/modules.json" ] && [ -f "$db/index/db.json" ] && [ -d "$db/ID" ]; then
		printf '%s\n' "$db"
		return
	fi
	say "building the local database from golang.org/x/vulndb@$VULNDB_VERSION (once; the first time takes a few minutes)" >&2
	local meta src info stamp
	meta="$(cd "$scratch" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")" ||
		fail "could not download golang.org/x/vulndb@$VULNDB_VERSION from the Go module proxy"
	src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$meta")"
	info="$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p' <<<"$meta")"
	[ -d "$src/data/osv" ] || fail "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv/ (at $src)"
	# The OSV files of the repository carry no dates (the published
	# database gets them at deploy time): the database is as of the
	# vulndb commit, which the module version's time is.
	stamp="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")"
	[ -n "$stamp" ] || fail "no commit time for golang.org/x/vulndb@$VULNDB_VERSION in $info"
	mkdir -p "$CACHE"
	local tmp
	tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
	if ! (cd "$scratch" && go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$tmp/db") >&2; then
		rm -rf "$tmp"
		fail "could not build the database with golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION"
	fi
	printf '{"modified":"%s"}' "$stamp" >"$tmp/db/index/db.json"
	gzip -n -c "$tmp/db/index/db.json" >"$tmp/db/index/db.json.gz"
	local n
	n="$(find "$tmp/db/ID" -name 'GO-*.json' | wc -l)"
	if [ "$n" -lt 1000 ] || [ ! -s "$tmp/db/index/modules.json" ]; then
		rm -rf "$tmp"
		fail "the database built from golang.org/x/vulndb@$VULNDB_VERSION looks wrong ($n reports)"
	fi
	rm -rf "$db"
	mv "$tmp/db" "$db"
	rmdir "$tmp"
	printf '%s\n' "$db"
}

db="${VULNCHECK_DB:-}"
case "$db" in
"")
	if modified="$(remote_modified "$REMOTE_DB")"; then
		db="$REMOTE_DB"
		say "database: $db (modified $modified)"
	else
		say "$REMOTE_DB does not answer: using a local copy of golang.org/x/vulndb@$VULNDB_VERSION"
		db=""
	fi
	;;
local) db="" ;;
file://*)
	modified="$(sed -n 's/.*"modified" *: *"\([^"]*\)".*/\1/p' "${db#file://}/index/db.json" 2>/dev/null || true)"
	say "database: $db (modified ${modified:-unknown})"
	;;
*)
	modified="$(remote_modified "$db")" || fail "the database $db does not answer"
	say "database: $db (modified $modified)"
	;;
esac
if [ -z "$db" ]; then
	dir="$(local_db)"
	db="file://$dir"
	modified="$(sed -n 's/.*"modified" *: *"\([^"]*\)".*/\1/p' "$dir/index/db.json")"
	say "database: $db (golang.org/x/vulndb@$VULNDB_VERSION, as of $modified; $(find "$dir/ID" -name 'GO-*.json' | wc -l) reports)"
fi

# --- the check ---------------------------------------------------------
[ $# -gt 0 ] || set -- ./...
say "govulncheck $GOVULNCHECK_VERSION, $goversion, on $*"
out="$scratch/govulncheck.txt"
set +e
"$gvc" -db "$db" -show version "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
case "$rc" in
0)
	say "OK: no known vulnerability is reachable from our code (database $db, modified $modified)"
	;;
3)
	n="$(sed -n 's/^Your code is affected by \([0-9]*\) vulnerabilit.*/\1/p' "$out")"
	std="$(grep -c '^  Standard library$' "$out" || true)"
	{
		say "FAILED: our code reaches ${n:-some} known vulnerabilit$([ "${n:-2}" = 1 ] && echo y || echo ies) (${std:-0} of them in the Go standard library), listed above with a call path each."
		say "Fix: upgrade each module to its 'Fixed in' version (go get MODULE@VERSION), or for the standard library the Go toolchain."
		say "(database $db, modified $modified)"
	} >&2
	exit 1
	;;
*)
	fail "govulncheck could not check the code (exit $rc; its output is above)"
	;;
esac
