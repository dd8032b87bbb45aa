# Targets mirror CI: fmt, lint (clippy + domain purity), deny, test, run.
CARGO ?= cargo
# The HTTP suites that need PostgreSQL itself (two replicas on one
# database, an outage, the schema check); every other suite of tests/tests
# runs on both stores, found by its file, so a new suite needs no listing.
POSTGRES_ONLY := replicas outage schema
STORE_SUITES := $(foreach t,$(filter-out $(POSTGRES_ONLY),$(sort $(basename $(notdir $(wildcard tests/tests/*.rs))))),--test $(t))
# Crates the pure domain must never depend on (see docs/architecture.md).
IMPURE := (actix[-a-z]*|diesel[-a-z]*|reqwest|tokio|sqlx) v

.PHONY: run build test test-python lint-python fuzz-api fuzz bench bench-http bench-scale bench-ceiling bench-peers soak fmt fmt-check lint clippy purity deny schema-check ci

## Run the server in development mode with the in-memory store.
run:
	ENVIRONMENT=$${ENVIRONMENT:-development} LOG_FORMAT=$${LOG_FORMAT:-text} $(CARGO) run -p orchestrator-server --bin orchestrator -- serve

build:
	$(CARGO) build --workspace --all-targets

## Run every test of the workspace (unit, contract and HTTP suites), then
## the Python SDK's (test-python). Tests that need PostgreSQL use
## DATABASE_URL, else the server on 127.0.0.1:5432, else a throwaway
## cluster that scripts/ensure-postgres starts. The browser test needs
## Chromium and ChromeDriver, the Python tests a virtual environment with
## the SDK: scripts/ensure-browser and scripts/ensure-python install them
## when missing (ORCHESTRATOR_NO_INSTALL=1: only check). The HTTP suite
## runs twice: on PostgreSQL, then on the in-memory store. nextest does
## not run doctests, so they run after it with cargo test --doc.
test:
	@scripts/ensure-browser || exit 1; \
	export PYTHON="$$(scripts/ensure-python)" || exit 1; \
	export DATABASE_URL="$$(scripts/ensure-postgres)" || exit 1; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast && \
		$(CARGO) test --doc --workspace && \
		ORCHESTRATOR_TEST_STORE=memory $(CARGO) nextest run -p orchestrator-tests $(STORE_SUITES) --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast && \
		ORCHESTRATOR_TEST_STORE=memory $(CARGO) test -p orchestrator-tests $(STORE_SUITES) --no-fail-fast; \
	fi && scripts/test-python

## The Python SDK's tests (sdk/python/tests) against the release server,
## on PostgreSQL and on the in-memory store.
test-python:
	scripts/test-python

## Fuzz the HTTP API from its own OpenAPI document (schemathesis, installed
## into target/ on first use), on both stores: zero 5xx, zero answers that
## break the document.
fuzz-api:
	scripts/fuzz-api memory
	scripts/fuzz-api postgres

## Fuzz the request-body parsers with libFuzzer for FUZZ_SECONDS (default
## 60), from the seeds in fuzz/seeds. cargo-fuzz is installed on first use;
## it passes nightly-only flags (-Zsanitizer=address), which
## RUSTC_BOOTSTRAP=1 lets the stable toolchain take.
fuzz:
	@cargo fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	mkdir -p fuzz/corpus/request_body
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run request_body corpus/request_body seeds/request_body -- \
		-max_total_time=$${FUZZ_SECONDS:-60} -max_len=4096

## Print the lifecycle benchmark's figures (see docs/benchmarks.md).
bench:
	@export DATABASE_URL="$$(scripts/ensure-postgres)" || exit 1; \
	$(CARGO) run --release -p orchestrator-bench --bin orchestrator-bench

## The HTTP end-to-end benchmark: the release server driven over HTTP (see docs/benchmarks.md).
bench-http:
	@export DATABASE_URL="$$(scripts/ensure-postgres)" || exit 1; \
	$(CARGO) build --release -p orchestrator-server --bin orchestrator -p orchestrator-bench --bin bench-http && \
	target/release/bench-http

## Every page and API GET at SCALE_TASKS finished tasks (default 1,000,000):
## p50 and max of each, slowest first (see docs/benchmarks.md).
bench-scale:
	@export DATABASE_URL="$$(scripts/ensure-postgres)" || exit 1; \
	$(CARGO) build --release -p orchestrator-server --bin orchestrator -p orchestrator-bench --bin bench-scale && \
	target/release/bench-scale

## The lifecycle's own statements under pgbench, the layout before migration 18 beside
## the shipped one (scripts/storage-ceiling/RESULTS.md): the ceiling W1 is read
## against. CEILING_STEPS picks the runs (default: the two mixed runs);
## it needs the PostgreSQL server on 127.0.0.1 (PGPORT, default 5432).
bench-ceiling:
	$(CARGO) build --release -p orchestrator-server --bin orchestrator && \
	mkdir -p target/storage-ceiling && \
	OUT=target/storage-ceiling/results-$$(date -u +%Y%m%dT%H%M%SZ).tsv scripts/storage-ceiling/run.sh $${CEILING_STEPS:-mixed_a mixed_shipped}

## The same workload on the orchestrator and on graphile-worker, pg-boss and procrastinate (see docs/benchmarks.md).
bench-peers:
	scripts/bench-peers

## The soak test: the release server under steady load for SOAK_MINUTES
## (default 10) on a PostgreSQL cluster of its own with autovacuum on;
## prints RSS, table sizes and rows, and latencies a minute, then start
## against end (see docs/benchmarks.md).
soak:
	$(CARGO) build --release -p orchestrator-server --bin orchestrator -p orchestrator-bench --bin soak && \
	scripts/soak

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint: clippy purity lint-python

## The Python SDK and the Python droplet: ruff (style, imports) and mypy
## --strict (their types; the droplet shows the SDK types a user's code).
lint-python:
	@python="$$(scripts/ensure-python)" || exit 1; venv="$$(dirname "$$python")"; \
	(cd sdk/python && "$$venv/ruff" check src tests scripts && "$$venv/ruff" format --check src tests scripts && \
		"$$venv/mypy" src/orchestrator_sdk scripts/generate.py) && \
	(cd examples/python-droplet && config=../../sdk/python/pyproject.toml && \
		"$$venv/ruff" check --config $$config . && "$$venv/ruff" format --check --config $$config . && \
		"$$venv/mypy" --config-file $$config droplet.py)

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## The domain stays pure: no framework, database, HTTP client or runtime.
purity:
	@found=$$($(CARGO) tree -p orchestrator-domain -e normal --prefix none | grep -Eo '$(IMPURE)' | sort -u); \
	if [ -n "$$found" ]; then echo "orchestrator-domain must stay pure but depends on: $$found"; exit 1; fi; \
	echo "orchestrator-domain is pure"

deny:
	CARGO=$(CARGO) scripts/deny

## schema.rs is what `diesel print-schema` makes of the migrations.
schema-check:
	CARGO=$(CARGO) scripts/check-schema

ci: fmt-check lint schema-check test fuzz-api deny
