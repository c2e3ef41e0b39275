# llf CLI image: entrypoint `llf`, e.g. `docker compose run --rm cli chat "hi"`.
# Build context: the repo root. Build args: BASE_IMAGE, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL;
# BuildKit secret `pip_ca` (optional CA bundle, never stored).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/llf
COPY deploy/pip.sh deploy/lockpin.py deploy/lockreqs.sh /build/
COPY uv.lock pyproject.toml /build/
COPY services/common/pyproject.toml /build/services/common/
COPY services/cli/pyproject.toml /build/services/cli/
# Third-party dependencies from uv.lock (pinned, hashed) before the sources (see models.Dockerfile).
RUN --mount=type=secret,id=pip_ca \
    cd /build && ./lockreqs.sh requirements.txt --package llf-cli \
    && ./lockreqs.sh build.txt --only-group build \
    && ./pip.sh /opt/llf install --no-deps -r build.txt -r requirements.txt
COPY services/common /build/services/common
COPY services/cli /build/services/cli
RUN /build/pip.sh /opt/llf install --no-deps --no-build-isolation /build/services/common /build/services/cli \
    && /opt/llf/bin/python -m pip check

FROM ${BASE_IMAGE} AS cli
ENV PATH=/opt/llf/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/llf \
    LLF_HOME=/home/llf/.llf
RUN groupadd --system --gid 10001 llf \
    && useradd --system --uid 10001 --gid llf --home-dir /home/llf --create-home --shell /usr/sbin/nologin llf
COPY --from=build /opt/llf /opt/llf
USER llf
WORKDIR /home/llf
# A one-shot command, not a server: nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["llf"]
CMD ["--help"]
