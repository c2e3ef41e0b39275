#!/usr/bin/env bash
# The images of the Compose stack on this machine: pulled when a registry answers, built here when
# none does. The one code path of CI (scripts/ci-docker.sh, after it has started a Docker engine) and
# of `make up` in Compose mode (scripts/up/compose.py). Each stage prints its duration; a second run
# only checks the layer cache.
#
#   1. base image  python:3.11-slim-bookworm when present or pullable; else llf/base:bookworm, built
#                  with debootstrap from this machine's Debian mirror (kept once built;
#                  LLF_REBUILD_BASE=1 rebuilds it; LLF_BASE_IMAGE=IMAGE uses that image instead)
#   2. redis       redis:7 when present or pullable; else llf/redis:7 (base image + Debian redis-server)
#   3. build env   deploy/buildenv.py --stage-wheels: local base/redis images, pip indexes, CA bundle,
#                  the CPU torch wheel from pip's find-links
#   4. images      docker compose build: models + worker, web, inference (--target cpu|gpu); with --all also
#                  cli, dashboard and router (the Compose fleet profile's vllm-router): what the e2e
#                  tests run. `make images` runs it with --all.
#
# Usage: docker-images.sh [--target cpu|gpu] [--all]
# Exit 3 when the base image can be neither pulled nor built here (the last stderr line says why:
# `make up` then runs local mode); any other failure exits 1 with the log's tail.
# Environment: LLF_DOCKER_LOG_DIR (default /tmp/llf-docker-images), LLF_PULL_TIMEOUT (s, default 120).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
target=cpu
all=0
while (($#)); do
  case $1 in
    --target) target=$2; shift 2 ;;
    --all) all=1; shift ;;
    *) echo "usage: $0 [--target cpu|gpu] [--all]" >&2; exit 2 ;;
  esac
done
[[ $target == cpu || $target == gpu ]] || { echo "docker-images: --target is cpu or gpu, not $target" >&2; exit 2; }
logs=${LLF_DOCKER_LOG_DIR:-/tmp/llf-docker-images}
public_base=python:3.11-slim-bookworm
local_base=llf/base:bookworm
mkdir -p "$logs"

t_all=$(date +%s)
current=start
stage_start=$t_all
stage() {
  local now
  now=$(date +%s)
  [[ $current == start ]] || echo "docker-images: ${current}: $((now - stage_start)) s"
  current=$1
  stage_start=$now
  echo "docker-images: == ${current}"
}
fail() {
  echo "docker-images: FAILED in stage '${current}': $*" >&2
  exit 1
}
# The one line `make up` shows before it falls back to local mode.
cannot() {
  echo "docker-images: cannot $*" >&2
  exit 3
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

# Present, or pulled now; false (quickly, when no registry resolves) otherwise.
have_or_pull() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  timeout "${LLF_PULL_TIMEOUT:-120}" docker pull -q "$1" >"$logs/pull-${1//[:\/]/_}.log" 2>&1
}

stage "base image"
if [[ -n ${LLF_BASE_IMAGE:-} ]]; then
  docker image inspect "$LLF_BASE_IMAGE" >/dev/null 2>&1 || have_or_pull "$LLF_BASE_IMAGE" \
    || cannot "use LLF_BASE_IMAGE=$LLF_BASE_IMAGE: not present and not pullable"
  echo "LLF_BASE_IMAGE=$LLF_BASE_IMAGE"
elif docker image inspect "$local_base" >/dev/null 2>&1 && [[ ${LLF_REBUILD_BASE:-0} != 1 ]]; then
  echo "$local_base present"
elif [[ ${LLF_REBUILD_BASE:-0} != 1 ]] && have_or_pull "$public_base"; then
  echo "$public_base present"
else
  # No registry: a Debian bookworm root file system from the Debian mirror apt uses, as an image.
  [[ $(id -u) == 0 ]] || cannot "pull $public_base, and building $local_base with debootstrap needs root"
  if ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || cannot "pull $public_base, and debootstrap (to build $local_base) is not installed"
    apt-get update -qq >"$logs/apt-update.log" 2>&1 || true
    apt-get install -y -qq --no-install-recommends debootstrap ca-certificates >"$logs/apt-debootstrap.log" 2>&1 \
      || cannot "pull $public_base, and apt-get cannot install debootstrap (log: $logs/apt-debootstrap.log)"
  fi
  mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n 1 || true)
  if [[ -z $mirror ]]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  rootfs=$(mktemp -d /tmp/llf-rootfs.XXXXXX)
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" ${mirror:+"$mirror"} >"$logs/debootstrap.log" 2>&1; then
    rm -rf "$rootfs"
    cannot "pull $public_base, and debootstrap failed to build $local_base (log: $logs/debootstrap.log)"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$local_base" >/dev/null
  rm -rf "$rootfs"
  echo "$local_base built"
fi

stage "build environment"
# Derived from this machine (local base/redis images, pip's indexes and CA bundle, the torch wheel).
build_env=$(python3 deploy/buildenv.py --stage-wheels --export)
eval "$build_env"
env | grep -E '^(LLF_|PIP_INDEX|PIP_EXTRA)' | sort || true

compose=(docker compose -f docker-compose.yml -f "deploy/compose.$target.yml" --progress plain)
if [[ $all == 1 ]]; then
  compose+=(-f deploy/compose.fleet.yml --profile cli --profile debug --profile fleet)
fi

stage "image: redis"
if docker image inspect llf/redis:7 >/dev/null 2>&1; then
  echo "llf/redis:7 present"
elif have_or_pull redis:7; then
  echo "redis:7 present"
else
  LLF_REDIS_IMAGE=llf/redis:7 quiet build-redis "${compose[@]}" -f deploy/compose.redis-local.yml build redis
fi

services=(models worker web)
((all)) && services+=(cli dashboard router)
stage "images: ${services[*]}"
quiet build-models "${compose[@]}" build "${services[@]}"

stage "image: inference ($target)"
quiet build-inference "${compose[@]}" build inference

stage "done"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^llf/' | sort
echo "docker-images: total $(($(date +%s) - t_all)) s"
