# Set-up and checks; the scripts do the work (see scripts/*.sh).
# `make test ARGS='-run X ./eventstore/'` passes ARGS to go test.
# Scripts are run with bash so that lost executable bits do not matter.

ARGS ?=

.PHONY: run demo test build lint bench bench-relay bench-all pg-url pg-stop nats-url nats-stop clean

run:
	bash scripts/run.sh

demo:
	UPSELL_DEMO=1 bash scripts/run.sh

test:
	bash scripts/test.sh $(ARGS)

build:
	go build -o bin/upsell ./cmd/upsell

lint:
	bash scripts/test.sh --lint

# The benchmark gets the same server as the tests.
bench:
	url="$$(bash scripts/pg.sh url)" && DATABASE_URL="$$url" bash scripts/bench-append.sh $(ARGS)

bench-relay:
	url="$$(bash scripts/pg.sh url)" && DATABASE_URL="$$url" bash scripts/bench-relay.sh $(ARGS)

# Issue 5's figures in one run (scripts/bench.sh; EVENTS=100000 for a quick one).
bench-all:
	url="$$(bash scripts/pg.sh url)" && DATABASE_URL="$$url" bash scripts/bench.sh

pg-url:
	@bash scripts/pg.sh url

pg-stop:
	bash scripts/pg.sh stop

nats-url:
	@bash scripts/nats.sh url

nats-stop:
	bash scripts/nats.sh stop

clean:
	rm -rf bin/
