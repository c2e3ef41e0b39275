# Redis for machines that cannot pull the official `redis:7` image: the base image + Debian's
# redis-server (7.0 on bookworm). Same command line, data dir (/data) and user as the official image,
# so docker-compose.yml runs either; pick it with deploy/compose.redis-local.yml or LLF_REDIS_IMAGE.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["redis-cli", "ping"]
CMD ["redis-server", "--dir", "/data", "--protected-mode", "no"]
