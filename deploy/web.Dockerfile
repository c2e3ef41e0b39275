# llf web pages image (`llf-web`, port 8080): chat, models and status pages in front of the gateway
# and the registry; every asset is in the package (no CDN), so the page works offline.
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
COPY services/web/pyproject.toml /build/services/web/
# Third-party dependencies only, pinned and hashed by uv.lock (the same lock as `make dev`).
RUN --mount=type=secret,id=pip_ca \
    cd /build && ./lockreqs.sh requirements.txt --package llf-web \
    && ./lockreqs.sh build.txt --only-group build \
    && ./pip.sh /opt/llf install --no-deps -r build.txt -r requirements.txt
COPY services/common /build/services/common
COPY services/web /build/services/web
RUN /build/pip.sh /opt/llf install --no-deps --no-build-isolation /build/services/common /build/services/web \
    && /opt/llf/bin/python -m pip check

# ---------------------------------------------------------------- web
FROM ${BASE_IMAGE} AS web
ENV PATH=/opt/llf/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/llf \
    LLF_HOME=/home/llf \
    LLF_LOG_FORMAT=json \
    LLF_WEB_HOST=0.0.0.0 \
    LLF_WEB_PORT=8080
RUN groupadd --system --gid 10001 llf \
    && useradd --system --uid 10001 --gid llf --home-dir /home/llf --create-home --shell /usr/sbin/nologin llf
COPY --from=build /opt/llf /opt/llf
COPY deploy/healthcheck.py /usr/local/lib/llf/healthcheck.py
USER llf
WORKDIR /home/llf
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/llf/healthcheck.py", "http", "http://127.0.0.1:8080/healthz"]
CMD ["llf-web"]
