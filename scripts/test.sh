#!/usr/bin/env bash
# test.sh: what `make test` and CI run: find/start PostgreSQL and NATS
# (scripts/pg.sh, scripts/nats.sh), then gofmt, go vet, staticcheck, the
# race-enabled tests and govulncheck (scripts/vulncheck.sh, over ./...).
#
#   scripts/test.sh                        everything, tests over ./...
#   scripts/test.sh -run Foo ./eventstore/ extra args go to `go test`
#   scripts/test.sh --lint                 gofmt, vet and staticcheck only (no database, no govulncheck)
#
# Give packages along with flags: without a package argument ./... is added.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STATICCHECK_VERSION=v0.8.2

step() { printf '==> %s\n' "$*"; }

lint_only=""
if [ "${1:-}" = --lint ]; then
	lint_only=1
	shift
fi

if [ -z "$lint_only" ]; then
	# Not `export X="$(...)"`: that would hide a failure of pg.sh from set -e.
	DATABASE_URL="$(bash scripts/pg.sh url)"
	export DATABASE_URL
	step "PostgreSQL: $(sed -E 's#(://[^:/@]*):[^@/]*@#\1:xxxxx@#' <<<"$DATABASE_URL")"
	# The relay's NATS JetStream transport is tested against a real server.
	NATS_URL="$(bash scripts/nats.sh url)"
	export NATS_URL
	step "NATS: $NATS_URL"
fi

step "gofmt -l"
# Tracked and new (not ignored) files; outside git, every .go file but .pgdata.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.go')
else
	mapfile -t files < <(find . -path ./.pgdata -prune -o -name '*.go' -print)
fi
present=()
for f in "${files[@]}"; do
	[ -f "$f" ] && present+=("$f") # skip tracked files deleted in the work tree
done
# gofmt with no file arguments would read stdin, hence the guard.
if [ ${#present[@]} -gt 0 ]; then
	unformatted="$(gofmt -l "${present[@]}")"
	if [ -n "$unformatted" ]; then
		printf '%s\n' "$unformatted"
		echo "test.sh: the files above need gofmt -w" >&2
		exit 1
	fi
fi

step "go vet ./..."
go vet ./...

step "staticcheck ./..."
sc="$(command -v staticcheck || true)"
if [ -z "$sc" ]; then
	gobin="$(go env GOBIN)"
	gopath="$(go env GOPATH)"
	gobin="${gobin:-${gopath%%:*}/bin}"
	if [ ! -x "$gobin/staticcheck" ]; then
		echo "test.sh: installing staticcheck $STATICCHECK_VERSION" >&2
		go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	fi
	sc="$gobin/staticcheck"
fi
"$sc" ./...

[ -z "$lint_only" ] || exit 0

# No package among the arguments (e.g. just `-run Foo`): test everything.
args=("$@")
has_pkg=""
for a in "${args[@]}"; do
	case "$a" in ./* | ../* | . | github.com/*) has_pkg=1 ;; esac
done
[ -n "$has_pkg" ] || args+=(./...)

step "go test -race -count=1 ${args[*]}"
go test -race -count=1 "${args[@]}"

# Reachable known vulnerabilities fail, but those accepted (for now) in
# scripts/vulncheck-accepted.txt, which are printed as WARNINGs.
step "govulncheck (scripts/vulncheck.sh)"
bash scripts/vulncheck.sh
