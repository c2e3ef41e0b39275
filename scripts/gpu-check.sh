#!/usr/bin/env bash
# Check a GPU workstation's multi-model serving end to end: one PASS/FAIL/SKIP line per behaviour
# (NVML inventory, two models at once, tensor parallel, a replica per GPU, the fit refusal, load on
# demand, keep_alive unload, sleep/wake with wake vs cold-start figures). Exit code != 0 on a FAIL.
#   scripts/gpu-check.sh                      # real GPUs: starts its own gateway (vLLM from .venv-engine)
#   scripts/gpu-check.sh --models A,B         # two verified models of the registry (LLF_MODELS_URL)
#   scripts/gpu-check.sh --url http://127.0.0.1:8000   # a running gateway, as configured
#   scripts/gpu-check.sh --fake [24,24,48,80] # fake NVML inventory + fake engine (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m scripts.gpucheck "$@"
