# The two commands of README.md are `make run` and `make test`; each installs what it needs first.
SHELL := bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
PROFILE ?= local
GATEWAY_PORT ?= 8080
export PROFILE GATEWAY_PORT

.PHONY: help setup run test unit e2e lint fmt schemas footprint runtime clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## install everything missing: Python env, Dapr runtime (built from Go modules), Redis, JWT key
	@bash tools/bootstrap.sh
	@$(PY) -m devstack setup

run: setup ## start the whole platform (PROFILE=local, GATEWAY_PORT=8080); Ctrl-C stops it all
	@$(PY) -m devstack run

test: setup lint ## lint, unit tests (no servers), then end-to-end tests on the real platform
	@$(PY) -m pytest contracts apps tests

unit: setup ## unit tests only: no servers
	@$(PY) -m pytest contracts apps

e2e: setup ## end-to-end tests only: start the real platform, drive it through the gateway
	@$(PY) -m pytest tests

lint: ## ruff (format and lint), mypy --strict, and the JSON Schema snapshot of the contracts
	@.venv/bin/ruff format --check .
	@.venv/bin/ruff check .
	@.venv/bin/mypy
	@$(PY) -m contracts.export --check

fmt: ## format and fix what ruff can
	@.venv/bin/ruff format .
	@.venv/bin/ruff check --fix .

schemas: ## regenerate contracts/schemas after a reviewed contract change
	@$(PY) -m contracts.export

footprint: setup ## benchmark: start the platform, print and write (reports/) each process's resident memory
	@$(PY) -m devstack footprint

runtime: ## (re)build the Dapr runtime into .runtime/.dapr/bin
	@bash deploy/runtime/build.sh

clean: ## remove run data and logs (keeps the built runtime and the Python env)
	rm -rf .run .dapr
