# llf model registry image: the API (`llf-models`, port 8001) and the RQ worker (`llf-models-worker`)
# run from this one image with different commands (see docker-compose.yml).
# Targets: `models` (default in Compose) and `dashboard` (rq-dashboard, Compose profile `debug`).
# Build context: the repo root.  Build args: BASE_IMAGE, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL;
# BuildKit secret `pip_ca` (CA bundle of a TLS-intercepting proxy; optional, never stored).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: venv with deps, then our code
FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/llf
COPY deploy/pip.sh deploy/lockpin.py deploy/lockreqs.sh /build/
COPY uv.lock pyproject.toml /build/
COPY services/common/pyproject.toml /build/services/common/
COPY services/models/pyproject.toml /build/services/models/
# Third-party dependencies only, pinned and hashed by uv.lock (the same lock as `make dev`): this
# layer is rebuilt when the lock or a pyproject changes, not when code does.
RUN --mount=type=secret,id=pip_ca \
    cd /build && ./lockreqs.sh requirements.txt --package llf-models \
    && ./lockreqs.sh build.txt --only-group build \
    && ./pip.sh /opt/llf install --no-deps -r build.txt -r requirements.txt
COPY services/common /build/services/common
COPY services/models /build/services/models
RUN /build/pip.sh /opt/llf install --no-deps --no-build-isolation /build/services/common /build/services/models \
    && /opt/llf/bin/python -m pip check

# ---------------------------------------------------------------- models: API and worker
FROM ${BASE_IMAGE} AS models
ENV PATH=/opt/llf/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/llf \
    LLF_HOME=/data \
    LLF_MODELS_DIR=/data/models \
    LLF_LOG_FORMAT=json \
    LLF_MODELS_HOST=0.0.0.0 \
    LLF_MODELS_PORT=8001
# A fixed uid so the model store volume has the same owner in every llf container.
RUN groupadd --system --gid 10001 llf \
    && useradd --system --uid 10001 --gid llf --home-dir /home/llf --create-home --shell /usr/sbin/nologin llf \
    && mkdir -p /data/models \
    && chown -R llf:llf /data
COPY --from=build /opt/llf /opt/llf
COPY deploy/healthcheck.py /usr/local/lib/llf/healthcheck.py
USER llf
WORKDIR /home/llf
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/llf/healthcheck.py", "http", "http://127.0.0.1:8001/healthz"]
CMD ["llf-models"]

# ---------------------------------------------------------------- dashboard: rq-dashboard on the same rq
FROM build AS dashboard-build
# rq-dashboard from the lock's `dashboard` group, on the same (locked) rq as the workers.
RUN --mount=type=secret,id=pip_ca \
    cd /build && ./lockreqs.sh dashboard.txt --only-group dashboard \
    && ./pip.sh /opt/llf install --no-deps -r dashboard.txt && /opt/llf/bin/python -m pip check

FROM models AS dashboard
COPY --from=dashboard-build /opt/llf /opt/llf
EXPOSE 9181
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "/usr/local/lib/llf/healthcheck.py", "http", "http://127.0.0.1:9181/"]
CMD ["sh", "-c", "exec rq-dashboard --bind 0.0.0.0 --port 9181 --redis-url \"$REDIS_URL\""]

# The default target is the registry image.
FROM models
