# llf router image: vllm-router (PyPI `vllm-router`, a Rust load balancer for vLLM with a Python
# launcher) in front of engine-only inference containers: Kubernetes (deploy/k8s) and Compose.
# Entrypoint `vllm-router`; the default arguments listen on 0.0.0.0:8000 (Kubernetes passes its own).
# Its version and dependencies come from uv.lock (the `router` group, which `make dev` installs too).
# Build context: the repo root. Build args: BASE_IMAGE, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL.
# BuildKit secret `pip_ca`: CA bundle of a TLS-intercepting proxy (optional).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/router
COPY deploy/pip.sh deploy/lockpin.py deploy/lockreqs.sh /build/
COPY uv.lock pyproject.toml /build/
RUN --mount=type=secret,id=pip_ca \
    cd /build && ./lockreqs.sh router.txt --only-group router \
    && ./pip.sh /opt/router install --no-deps -r router.txt \
    && /opt/router/bin/python -m pip check

FROM ${BASE_IMAGE} AS router
ENV PATH=/opt/router/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/llf
RUN groupadd --system --gid 10001 llf \
    && useradd --system --uid 10001 --gid llf --home-dir /home/llf --create-home --shell /usr/sbin/nologin llf
COPY --from=build /opt/router /opt/router
COPY deploy/healthcheck.py /usr/local/lib/llf/healthcheck.py
USER llf
WORKDIR /home/llf
EXPOSE 8000 29000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "/usr/local/lib/llf/healthcheck.py", "http", "http://127.0.0.1:8000/liveness"]
ENTRYPOINT ["vllm-router"]
CMD ["--host=0.0.0.0", "--port=8000"]
