#!/usr/bin/env bash
# vulncheck.sh: govulncheck over the module; fails when our code reaches a
# known vulnerability (of a dependency or of the Go standard library) that
# scripts/vulncheck-accepted.txt does not accept.
#
#   scripts/vulncheck.sh              check ./...
#   scripts/vulncheck.sh ./handlers/  check these packages
#
# The vulnerability database is https://vuln.go.dev when it answers; else a
# local copy built from the module golang.org/x/vulndb (its data/osv/ holds
# every report as an OSV file), which the Go module proxy serves, into
# .cache/vulncheck/ (gitignored) by internal/tools/vulncheck (a second, not
# the minutes of x/vulndb's own cmd/indexdb). VULNCHECK_DB overrides the
# choice: "local" for the local copy, or a database URL (https://... or
# file:///...).
#
# The accepted list (scripts/vulncheck-accepted.txt: ID, reason, review-by
# date) is for standard-library findings whose fix needs a Go release this
# machine cannot get. Every accepted finding still reachable is printed as
# a WARNING with its reason on every run; an entry no longer found gives a
# WARNING to remove it. A failing finding is shown with up to 5 call
# paths; VULNCHECK_VERBOSE=1 adds govulncheck's own report (every call
# path). Its JSON output is kept in .cache/vulncheck/govulncheck.json.
#
# Exit status: 0 no reachable vulnerability but accepted ones; 1 some not
# accepted, or an accepted entry past its review date; 2 the check could
# not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GOVULNCHECK_VERSION=v1.9.0
# The local database: bump to a newer pseudo-version of golang.org/x/vulndb
# for newer reports (`go list -m -versions` lists none for it; take the
# latest from the proxy's @latest, or from the vulndb repository's log).
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
REMOTE_DB=https://vuln.go.dev
CACHE="$PWD/.cache/vulncheck"
ACCEPTED=scripts/vulncheck-accepted.txt

say() { printf 'vulncheck: %s\n' "$*"; }
fail() {
	printf 'vulncheck: %s\n' "$*" >&2
	exit 2
}

# In a folder of its own: `go mod download` and `go install pkg@version` must
# not see (nor touch) this module's go.mod and go.sum.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# --- our helper (internal/tools/vulncheck: database index and gate) -----
tool="$scratch/vulncheck"
go build -o "$tool" ./internal/tools/vulncheck ||
	fail "could not build internal/tools/vulncheck"

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
# in the layout govulncheck reads from a file:// URL (index/db.json,
# index/modules.json and ID/<GO-ID>.json), with internal/tools/vulncheck;
# its modules.json is byte for byte what x/vulndb's cmd/indexdb writes.
local_db() {
	local db="$CACHE/vulndb@$VULNDB_VERSION"
	if [ -f "$db/index/modules.json" ] && [ -f "$db/index/db.json" ] && [ -d "$db/ID" ]; then
		printf '%s\n' "$db"
		return
	fi
	say "building the local database from golang.org/x/vulndb@$VULNDB_VERSION" >&2
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
	if ! "$tool" index -osv "$src/data/osv" -out "$tmp/db" -modified "$stamp" >/dev/null; then
		rm -rf "$tmp"
		fail "could not build the database of golang.org/x/vulndb@$VULNDB_VERSION"
	fi
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
partial=()
if [ $# -eq 0 ]; then
	set -- ./...
elif [ "$*" != ./... ]; then
	partial=(-partial) # an accepted entry not seen may be reachable from other packages
fi
say "govulncheck $GOVULNCHECK_VERSION, $goversion, on $*"
mkdir -p "$CACHE"
json="$CACHE/govulncheck.json"
rm -f "$json"
# -json: findings with their call paths, for the gate; govulncheck exits 0
# with findings in this mode, non-zero only when it could not check.
if ! "$gvc" -db "$db" -json "$@" >"$scratch/govulncheck.json" 2>"$scratch/stderr"; then
	cat "$scratch/stderr" >&2
	fail "govulncheck could not check the code (its output is above)"
fi
mv "$scratch/govulncheck.json" "$json"

# report prints govulncheck's own text report of the JSON output (no new
# analysis: -mode convert); hundreds of lines, every call path.
report() {
	say "govulncheck's report (VULNCHECK_VERBOSE):"
	# Exit status 3 means vulnerabilities found; only an error matters.
	"$gvc" -mode convert -show version <"$json" || [ $? -eq 3 ] ||
		say "(govulncheck -mode convert failed: $json has the JSON output)"
}

set +e
"$tool" gate -accepted "$ACCEPTED" "${partial[@]}" "$json" >"$scratch/gate.txt"
rc=$?
set -e
case "$rc" in
0)
	[ -z "${VULNCHECK_VERBOSE:-}" ] || report
	cat "$scratch/gate.txt"
	say "(database $db, modified $modified)"
	;;
1)
	[ -z "${VULNCHECK_VERBOSE:-}" ] || report
	{
		cat "$scratch/gate.txt"
		say "Fix: a module by go get MODULE@FIXED, the standard library by a newer Go; $ACCEPTED may accept only standard-library findings whose fix needs a Go release this machine cannot get."
		say "(database $db, modified $modified; every call path: VULNCHECK_VERBOSE=1, or $gvc -mode convert -show traces <$json)"
	} >&2
	exit 1
	;;
*)
	cat "$scratch/gate.txt"
	fail "could not judge govulncheck's output against $ACCEPTED (exit $rc; $json has the output)"
	;;
esac
