# The two commands of README.md are `make run` and `make test`; each installs what it needs first.
SHELL := bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
# The component profile (a folder under components/); PROFILES: those `make conformance` runs (default: all).
PROFILE ?= local
PROFILES ?=
GATEWAY_PORT ?= 8080
export PROFILE PROFILES GATEWAY_PORT

.PHONY: help python-env setup run test unit e2e conformance lint fmt schemas generate rotate-keys footprint bench bench-saga bench-ingest bench-kit bench-login-burst bench-mtls bench-tracing audit runtime logs trace \
	clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

python-env:
	@bash tools/bootstrap.sh

setup: python-env ## install what PROFILE lacks: Python env, Dapr runtime (built from Go modules), servers, secrets
	@$(PY) -m devstack setup

run: python-env ## start the whole platform (PROFILE=local|kafka|nats|rabbitmq, GATEWAY_PORT=8080); Ctrl-C stops it
	@$(PY) -m devstack run

test: setup lint ## lint, unit tests (no servers), then end-to-end tests on the real platform (PROFILE)
	@$(PY) -m pytest kit apps tests

unit: setup ## unit tests only: no servers
	@$(PY) -m pytest kit apps tests/contracts tests/devstack

e2e: setup ## end-to-end tests only: start the real platform, drive it through the gateway
	@$(PY) -m pytest tests/e2e

conformance: python-env ## the end-to-end suite on every profile (or PROFILES="kafka nats"), then a matrix (reports/)
	@$(PY) -m devstack conformance

lint: ## ruff (format and lint) and mypy --strict
	@.venv/bin/ruff format --check .
	@.venv/bin/ruff check .
	@.venv/bin/mypy

fmt: ## format and fix what ruff can
	@.venv/bin/ruff format .
	@.venv/bin/ruff check --fix .

schemas: ## regenerate contracts/schemas after a reviewed contract change
	@$(PY) -m contracts.export

generate: python-env ## write dapr.yaml and each app's Dapr Configuration from deploy/catalogue.yaml
	@$(PY) -m devstack generate

rotate-keys: python-env ## JWT signing keys: previous <- current <- next <- new (tokens stay valid); restart users after
	@$(PY) -m devstack rotate-keys

footprint: python-env ## benchmark: start the platform, print and write (reports/) each process's resident memory
	@$(PY) -m devstack footprint

bench: python-env ## benchmark: the seed's load table per service, beside the floor; writes reports/bench-PROFILE.md + plots
	@$(PY) -m devstack bench

bench-saga: python-env ## benchmark: order sagas/s and p50/p99 202→completed at 1, 10, 50 clients (reports/)
	@$(PY) -m devstack bench-saga

bench-ingest: python-env ## benchmark: telemetry events/s accepted through the gateway with bulk publish (reports/)
	@$(PY) -m devstack bench-ingest

bench-kit: python-env ## benchmark: the kit's sidecar client and server stack, per library (reports/bench-kit.md)
	@$(PY) -m devstack bench-kit

bench-login-burst: python-env ## benchmark: bystanders' latency while one account's password is guessed in a tight loop (ATTACKERS=1)
	@$(PY) -m devstack bench-login-burst

bench-tracing: python-env ## benchmark: sign-in and order sagas with every trace recorded and with none, in one run (reports/)
	@$(PY) -m devstack bench-tracing

bench-mtls: python-env ## benchmark: a call through two sidecars with mTLS on and off: latency and memory (reports/)
	@$(PY) -m devstack bench-mtls

# make takes `make logs --trace X` for its own flags, hence variables. The environment is readied on stderr so that
# `make logs JSON=1 | jq` reads only log lines.
logs: ## every app's, sidecar's and server's log by time (TRACE= REQUEST= SERVICE="orders redis" LEVEL=warning SINCE=10m FOLLOW=1 JSON=1 ALL_RUNS=1)
	@bash tools/bootstrap.sh >&2
	@$(PY) -m devstack logs $(if $(TRACE),--trace '$(TRACE)') $(if $(REQUEST),--request '$(REQUEST)') \
		$(if $(SERVICE),--service $(SERVICE)) $(if $(LEVEL),--level '$(LEVEL)') $(if $(SINCE),--since '$(SINCE)') \
		$(if $(FOLLOW),--follow) $(if $(JSON),--json) $(if $(ALL_RUNS),--all-runs)

trace: python-env ## one trace from the running Zipkin as a tree of its spans (ID=<trace id>, as `make logs` shows it)
	@$(PY) -m devstack trace '$(ID)'

audit: python-env ## pip-audit on uv.lock and govulncheck on the runtime build (needs the advisory databases online)
	@bash tools/audit.sh

runtime: ## (re)build the Dapr runtime into .runtime/.dapr/bin
	@bash deploy/runtime/build.sh

clean: ## remove run data and logs (keeps the built runtime and the Python env)
	@# PostgreSQL's data may live outside the repository when its user cannot enter .run/ (see devstack/postgres.py).
	if [ -L .run/postgres ]; then rm -rf "$$(readlink -f .run/postgres)"; fi
	rm -rf .run .dapr
