#!/usr/bin/env bash
# walkthrough.sh: the seed story of the README over HTTP with curl, against
# a running `make run` (UPSELL_URL, default http://127.0.0.1:8080) on the
# demo data. Prints each command and its answer; the README's walk-through
# is its output. Needs only bash, curl and sed.
set -euo pipefail
quote=""
base="${UPSELL_URL:-http://127.0.0.1:8080}"
key="${UPSELL_KEY:-nw-alex-5f2c9e1d7a}"
customer="${UPSELL_CUSTOMER:-cust-contoso}"

# show METHOD PATH [BODY]: print the curl command, run it, print the answer.
show() {
	local method="$1" path="$2" body="${3:-}"
	local shown="curl -s -H \"Authorization: Bearer \$KEY\""
	[ "$method" = GET ] || shown="curl -s -X $method -H \"Authorization: Bearer \$KEY\""
	local args=(-s -X "$method" -H "Authorization: Bearer $key")
	if [ -n "$body" ]; then
		shown+=" -H 'Content-Type: application/json' -d '$body'"
		args+=(-H 'Content-Type: application/json' -d "$body")
	fi
	local shown_path="$path"
	[ -z "${quote:-}" ] || shown_path="${path//$quote/\$QUOTE}"
	printf '\n$ %s %s\n' "$shown" "\"\$BASE${shown_path}\""
	answer="$(curl "${args[@]}" "$base$path")"
	printf '%s\n' "$answer"
}

printf '$ KEY=%s BASE=%s\n' "$key" "$base"
show GET "/v1/customers?q=contoso"
show GET "/v1/customers/$customer"
show POST "/v1/customers/$customer/change-quotes"
quote="$(printf '%s' "$answer" | sed -n 's/.*"quote_id":"\([^"]*\)".*/\1/p')"
[ -n "$quote" ] || { echo "walkthrough.sh: no quote was opened" >&2; exit 1; }
printf '\n$ QUOTE=%s\n' "$quote"
show PUT "/v1/change-quotes/$quote/seats" '{"product_code":"EMAIL-SEC","total_seats":700}'
show GET "/v1/change-quotes/$quote/preview"
show POST "/v1/change-quotes/$quote/save"
show POST "/v1/change-quotes/$quote/review"
show POST "/v1/change-quotes/$quote/acknowledgements" '{"msa_governs_order":true,"authorized_to_order":true}'
show POST "/v1/change-quotes/$quote/submit"
show GET "/v1/customers/$customer"
show POST "/v1/change-quotes/$quote/save"
