# switchyard — local stack, checks and builds.
#
#   make run          moto + the local runner on http://127.0.0.1:3000/hooks/{source}
#   make test         IaC lint/scan, fmt, clippy, cargo test, Lambda runtime smoke test
#   make soak         chaos soak: SOAK_EVENTS (10000) events, runner SIGKILLed twice, flaky destination; prints the tally
#   make bench        criterion benches, the DLQ listing bench, bench-pipeline and cost
#   make bench-pipeline  BENCH_N (1000) events through release builds: CPU, AWS calls, write units, logs per event
#   make zip-sizes    each function's bootstrap.zip from the release build (bench-pipeline prints it too)
#   make profile      bench-pipeline on a build with symbols under perf; top frames per function
#   make cost         $ per million delivered events and an idle stage's floor (infra/prices.toml)
#   make fuzz         every cargo-fuzz target for FUZZ_RUNS iterations (nightly; FUZZ_MAX_SECS caps each)
#   make stack-up     moto on ENDPOINT (http://127.0.0.1:4566) with queues, table, secrets (.local/stack.json)
#   make stack-down   stop it
#
# Every target installs what it needs (Python venvs, stamped) so a fresh clone
# only needs Rust, python3 and access to the package registries.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

STAGE ?= dev
ENDPOINT ?= http://127.0.0.1:4566
PY ?= python3

# moto listens on the port of ENDPOINT (no trailing slash there, please).
MOTO_PORT := $(lastword $(subst :, ,$(ENDPOINT)))
WATCH_PORT ?= 9000

VENV := .venv
CHECKOV_VENV := .venv-checkov
LOCAL := .local
STACK_JSON := $(LOCAL)/stack.json
MOTO_PID := $(LOCAL)/moto.pid

# What the binaries get locally instead of a Lambda role: moto takes any keys.
AWS_TEST_ENV := AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
AWS_LOCAL_ENV := AWS_ENDPOINT_URL=$(ENDPOINT) $(AWS_TEST_ENV)
# cargo-lambda's PyPI package puts its binary (and zig) in the venv; `cargo lambda`
# finds a `cargo-lambda` on PATH.
LAMBDA_PATH := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

# Stops the moto this Makefile started (by its recorded pid) and waits until
# the port is free, so a following stack-up can bind it again.
define stop_moto
if [ -f $(MOTO_PID) ]; then \
  pid=$$(cat $(MOTO_PID)); \
  if kill $$pid 2>/dev/null; then \
    for _ in $$(seq 50); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
    echo "moto (pid $$pid) stopped"; \
  fi; \
  rm -f $(MOTO_PID); \
fi
endef

.PHONY: help venv venv-checkov stack-up stack-down run test lint-iac lambda-smoke soak bench bench-dlq bench-pipeline zip-sizes cost profile fuzz build clean-local

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# ------------------------------------------------------------------ tooling

$(VENV)/.stamp: infra/requirements.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r infra/requirements.txt
	touch $@

# checkov pins an older boto3 than moto needs: it lives in its own venv.
$(CHECKOV_VENV)/.stamp: infra/requirements-checkov.txt
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r infra/requirements-checkov.txt
	touch $@

venv: $(VENV)/.stamp
venv-checkov: $(CHECKOV_VENV)/.stamp

# -------------------------------------------------------------- local stack

stack-up: $(VENV)/.stamp
	@mkdir -p $(LOCAL)
	@if [ -f $(MOTO_PID) ] && kill -0 $$(cat $(MOTO_PID)) 2>/dev/null; then \
	  echo "moto already running (pid $$(cat $(MOTO_PID)))"; \
	else \
	  setsid $(VENV)/bin/python infra/moto_server.py -H 127.0.0.1 -p $(MOTO_PORT) > $(LOCAL)/moto.log 2>&1 & \
	  echo $$! > $(MOTO_PID); \
	  echo "moto (pid $$!) on $(ENDPOINT), log in $(LOCAL)/moto.log"; \
	fi
	@$(VENV)/bin/python infra/local_stack.py wait --endpoint $(ENDPOINT) \
	  && kill -0 $$(cat $(MOTO_PID)) 2>/dev/null \
	  || { echo "moto did not come up (port $(MOTO_PORT) taken?):"; tail -n 20 $(LOCAL)/moto.log; $(stop_moto); exit 1; }
	$(VENV)/bin/python infra/local_stack.py deploy --endpoint $(ENDPOINT) --stage $(STAGE) --out $(STACK_JSON) > /dev/null
	@echo "stack switchyard-$(STAGE) described in $(STACK_JSON)"

stack-down:
	@$(stop_moto)

# The runner stays in the foreground; moto is stopped however it ends (Ctrl-C included).
run: stack-up
	@trap '$(stop_moto)' EXIT; \
	$(AWS_LOCAL_ENV) cargo run -p switchyard-local -- serve --stack $(STACK_JSON) --config config/flows.toml

# -------------------------------------------------------------------- checks

# Cheapest first: template checks, formatting, lints, then the test suite
# (whose end-to-end tests start their own moto servers from $(VENV)).
# `cargo test --workspace` in two lanes at once: tests/tests/gate.rs (every test in
# its `slow_lane` module: about five minutes, most of it waiting on a 10/s rate limit
# and a 60-second outage) beside everything else (which skips `slow_lane::`). The
# gate lane's output goes to .local/test-slow-lane.log; its summary is printed after.
test: lint-iac
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace --no-run
	@mkdir -p $(LOCAL)
	@export SWITCHYARD_VENV=$(CURDIR)/$(VENV) $(AWS_TEST_ENV); \
	cargo test --workspace --test gate > $(LOCAL)/test-slow-lane.log 2>&1 & slow=$$!; \
	rc=0; cargo test --workspace -- --skip slow_lane:: || rc=$$?; \
	slow_rc=0; wait $$slow || slow_rc=$$?; \
	echo "== tests/tests/gate.rs (slow lane, $(LOCAL)/test-slow-lane.log):"; \
	grep -E '^test |^test result|panicked' $(LOCAL)/test-slow-lane.log || true; \
	if [ $$slow_rc -ne 0 ]; then tail -n 80 $(LOCAL)/test-slow-lane.log; echo "the gate tests failed"; fi; \
	[ $$rc -eq 0 ] && [ $$slow_rc -eq 0 ]
	$(MAKE) lambda-smoke

lint-iac: $(VENV)/.stamp $(CHECKOV_VENV)/.stamp
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(CHECKOV_VENV)/bin/checkov -f infra/template.yaml --framework cloudformation --skip-download --compact --quiet

# Proves the built intake binary answers through the Lambda Runtime API, with
# the environment it has in AWS (names from the stack, credentials for moto).
# `cargo lambda watch --only-lambda-apis` serves the Runtime API and the invoke
# endpoint; the function is the workspace build of `intake`, started here the
# way Lambda starts a bootstrap. (Letting watch build it would resolve features
# for intake alone and recompile every dependency: ~9 min here against ~30 s
# for a workspace build right after `cargo test`.)
SMOKE_TIMEOUT ?= 60
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

lambda-smoke: $(VENV)/.stamp
	cargo build --workspace --bins
	@$(MAKE) stack-up
	@trap 'kill $${fn:-} 2>/dev/null || true; if [ -n "$${watch:-}" ]; then kill -- -$$watch 2>/dev/null || true; fi; $(stop_moto)' EXIT; \
	$(VENV)/bin/python infra/local_stack.py env --stack $(STACK_JSON) > $(LOCAL)/lambda.env; \
	$(LAMBDA_PATH) setsid cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port $(WATCH_PORT) \
	  > $(LOCAL)/watch.log 2>&1 & watch=$$!; \
	for _ in $$(seq 100); do \
	  (exec 3<>/dev/tcp/127.0.0.1/$(WATCH_PORT)) 2>/dev/null && break; \
	  kill -0 $$watch 2>/dev/null || { cat $(LOCAL)/watch.log; exit 1; }; \
	  sleep 0.1; \
	done; \
	(set -a; . $(LOCAL)/lambda.env; \
	  AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:$(WATCH_PORT)/.rt/intake AWS_LAMBDA_FUNCTION_NAME=intake \
	  AWS_LAMBDA_FUNCTION_VERSION='$$LATEST' AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
	  exec $(TARGET_DIR)/debug/intake) > $(LOCAL)/intake.log 2>&1 & fn=$$!; \
	echo "Runtime API on 127.0.0.1:$(WATCH_PORT) (log $(LOCAL)/watch.log), intake pid $$fn (log $(LOCAL)/intake.log)"; \
	response=$$($(LAMBDA_PATH) timeout $(SMOKE_TIMEOUT) cargo lambda invoke intake \
	  --invoke-address 127.0.0.1 --invoke-port $(WATCH_PORT) --data-file events/intake/unknown-source.json) \
	  || { echo "lambda-smoke: no answer from intake"; tail -n 20 $(LOCAL)/intake.log; exit 1; }; \
	echo "intake answered: $$response"; \
	$(VENV)/bin/python -c 'import json, sys; sys.exit(json.loads(sys.argv[1]).get("statusCode") != 404)' "$$response" \
	  || { echo "lambda-smoke: expected statusCode 404 for an unknown source"; exit 1; }; \
	echo "lambda-smoke: ok"

bench: bench-dlq bench-pipeline cost
	cargo bench -p switchyard-common

# What one delivered event costs (README, "Cost of an event"): BENCH_N signed events
# through the release binaries of the three functions under the project's Lambda
# Runtime API emulator, with a counting proxy in front of a moto of its own; once at
# each batch size of BENCH_BATCHES. Figures printed and written to
# .local/bench/pipeline-b<batch>.json for `make cost`. The bench harness itself is a
# debug build (its CPU is not counted); the functions are release builds.
BENCH_N ?= 1000
BENCH_BATCHES ?= 10 1
FUNCTIONS := -p switchyard-intake -p switchyard-mapper -p switchyard-dispatcher

bench-pipeline: $(VENV)/.stamp
	cargo build --release $(FUNCTIONS) --bins
	cargo build -p switchyard-e2e --bin pipeline-bench
	@$(MAKE) zip-sizes
	for b in $(BENCH_BATCHES); do \
	  BENCH_N=$(BENCH_N) BENCH_BATCH=$$b BENCH_BIN_DIR=$(TARGET_DIR)/release SWITCHYARD_VENV=$(CURDIR)/$(VENV) \
	    $(AWS_TEST_ENV) $(TARGET_DIR)/debug/pipeline-bench || exit 1; \
	done

# Each function's deployment package as Lambda gets it (infra/zip_sizes.py), in .local/bench/.
zip-sizes: $(VENV)/.stamp
	@$(VENV)/bin/python infra/zip_sizes.py $(TARGET_DIR)/release $(LOCAL)/bench intake mapper dispatcher

# Where the functions' CPU goes: bench-pipeline on the `profiling` build (release with
# symbols) with `perf record` on each function, then each one's top frames (self time).
PROFILE_N ?= 1000

profile: $(VENV)/.stamp
	cargo build --profile profiling $(FUNCTIONS) --bins
	cargo build -p switchyard-e2e --bin pipeline-bench
	BENCH_N=$(PROFILE_N) BENCH_BATCH=10 BENCH_PERF=1 BENCH_OUT=$(LOCAL)/bench/profile-b10.json \
	  BENCH_BIN_DIR=$(TARGET_DIR)/profiling SWITCHYARD_VENV=$(CURDIR)/$(VENV) $(AWS_TEST_ENV) $(TARGET_DIR)/debug/pipeline-bench
	for f in intake mapper dispatcher; do \
	  echo "== $$f: top frames by self time"; \
	  perf report -i $(LOCAL)/bench/$$f.perf.data --no-children --sort dso,symbol --stdio \
	    > $(LOCAL)/bench/$$f.perf.txt 2>/dev/null || exit 1; \
	  grep -E '^ +[0-9.]+%' $(LOCAL)/bench/$$f.perf.txt | cut -c1-110 | sed -n 1,25p; \
	done

# $ per million delivered events by line item, and an idle stage's monthly floor,
# from the figures of `make bench-pipeline` and the dated prices in infra/prices.toml.
cost: $(VENV)/.stamp
	@ls .local/bench/pipeline-b*.json >/dev/null 2>&1 || $(MAKE) bench-pipeline
	$(VENV)/bin/python infra/cost.py

# `switchyard-ops dlq list --flow F --reason TEXT` over 10,000 parked deliveries
# (DLQ_BENCH_N), from the ledger's parked index and with --scan; checks the DLQ is
# unchanged afterwards. Its own moto server; a debug build (bound by the endpoint).
DLQ_BENCH_N ?= 10000

bench-dlq: $(VENV)/.stamp
	cargo build -p switchyard-e2e --bins
	DLQ_BENCH_N=$(DLQ_BENCH_N) SWITCHYARD_VENV=$(CURDIR)/$(VENV) $(AWS_TEST_ENV) $(TARGET_DIR)/debug/dlq-bench

# The chaos soak (README, "Chaos soak"): its own moto, the local runner as a process
# it kills with SIGKILL, its own flaky destination; exits non-zero unless every event
# is accounted for. A debug build: the soak is bound by the local AWS endpoint, and
# the debug binaries come almost free after `make test`. Settings: SOAK_* variables.
soak: $(VENV)/.stamp
	cargo build -p switchyard-e2e --bins
	SWITCHYARD_VENV=$(CURDIR)/$(VENV) $(AWS_TEST_ENV) $(TARGET_DIR)/debug/soak

# Nightly + cargo-fuzz (installed by the script if missing). Prints iterations,
# execs/s and crashes per target; a crash lands in fuzz/artifacts/<target>/ and is
# replayed by `make test` once committed. FUZZ_MAX_SECS=0 means no time cap.
FUZZ_RUNS ?= 1000000
FUZZ_MAX_SECS ?= 0

fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_MAX_SECS=$(FUZZ_MAX_SECS) fuzz/run.sh

# Zips for the host architecture (target/lambda/<name>/bootstrap.zip). For AWS
# the functions are arm64: build on a machine with the aarch64-unknown-linux-gnu
# rustup target and add --arm64 (or let `sam build` do it from infra/template.yaml).
build: $(VENV)/.stamp
	$(LAMBDA_PATH) cargo lambda build --release --compiler cargo --output-format zip \
	  --bin intake --bin mapper --bin dispatcher --bin rotator --bin poller --bin reconciler

clean-local: stack-down
	rm -rf $(LOCAL)
