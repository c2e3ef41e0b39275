#!/usr/bin/env bash
# The README's test command (`make test`): unit + integration tests, and e2e when a Docker engine is
# reachable (or LLF_E2E=1 forces them), with one coverage report over all services.
#
# Two lanes side by side (LLF_TEST_JOBS, default 2 on a machine with 2+ cores), so that neither core
# idles while the other imports torch or waits on a subprocess:
#   1. the unit tests and the engine-heavy integration suites (gateway, CLI, web, deploy, GPU check);
#   2. the registry, store-integrity and `make up` suites, then the e2e tests (Compose stacks; CI builds
#      their images meanwhile, .ci/run, and they wait for that build).
# Each lane is its own pytest sessions with its own coverage data and temp dir; the data is combined
# at the end. The second lane's output is printed when both have ended. pytest's exit code 5 ("no
# tests selected") is not a failure here. Extra arguments go to every session and make it one lane
# (they may name paths): unit + integration, then e2e.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
export UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}  # as in the Makefile: uv trusts the system CA store
e2e=0
if [[ "${LLF_E2E:-auto}" == 1 ]] || { [[ "${LLF_E2E:-auto}" == auto ]] && docker info >/dev/null 2>&1; }; then
  e2e=1
fi
jobs=${LLF_TEST_JOBS:-$(($(nproc) >= 2 ? 2 : 1))}
[[ $# -eq 0 ]] || jobs=1
second=(tests/integration/models tests/integration/hardening tests/integration/up
  tests/integration/test_harness_hub.py tests/integration/test_harness_redis.py tests/integration/test_harness_tinymodel.py)

# The lock must match every pyproject (a dependency added by hand, not with `uv add`, fails here).
if ! .venv/bin/uv lock --check || ! .venv/bin/uv lock --check --project tools/checkov; then
  echo "make test: uv.lock is out of date with a pyproject.toml: run \`uv lock\` (or add dependencies with \`uv add\`)" >&2
  exit 1
fi

# pytest's exit code, with 5 ("no tests selected") as success.
run_pytest() {
  "$py" -m pytest "$@"
  local rc=$?
  if [[ $rc -eq 5 ]]; then
    echo "no tests selected (pytest exit 5): treated as success"
    rc=0
  fi
  return $rc
}

since() { echo "$(($(date +%s) - t0)) s"; }

# The e2e session of a lane, appending to its coverage data, when e2e tests are on.
run_e2e() {
  [[ $e2e == 1 ]] || { echo "make test: e2e skipped (no Docker engine; LLF_E2E=1 forces it)"; return 0; }
  echo "make test: -m e2e (from $(since))"
  run_pytest -m e2e --cov --cov-append --cov-report= "$@"
  local rc=$?
  echo "make test: e2e exit $rc at $(since)"
  return $rc
}

# Runs "$@" and folds its exit code into rc (the first failure wins).
fold() {
  "$@"
  local status=$?
  [[ $rc -ne 0 ]] || rc=$status
}

rm -f .coverage .coverage.*
t0=$(date +%s)
rc=0
if [[ $jobs -lt 2 ]]; then
  echo "make test: -m 'unit or integration'"
  fold run_pytest -m "unit or integration" --cov --cov-report= "$@"
  fold run_e2e "$@"
else
  ignores=()
  for path in "${second[@]}"; do ignores+=("--ignore=$path"); done
  tmp=$(mktemp -d /tmp/llf-test.XXXX)
  echo "make test: two lanes side by side; the second lane's output follows the first's"
  (  # a subshell: its rc is its own
    export COVERAGE_FILE=$PWD/.coverage.second
    fold run_pytest -m integration --cov --cov-report= --basetemp="$tmp/second" "${second[@]}"
    echo "make test: second lane's integration suites done at $(since) (exit $rc)"
    fold run_e2e --basetemp="$tmp/e2e"
    exit $rc
  ) >"$tmp/second.log" 2>&1 &
  second_pid=$!
  COVERAGE_FILE=$PWD/.coverage.first fold run_pytest -m "unit or integration" --cov --cov-report= \
    --basetemp="$tmp/first" "${ignores[@]}" tests
  echo "make test: first lane done at $(since) (exit $rc); waiting for the second"
  wait "$second_pid"
  second_rc=$?
  cat "$tmp/second.log"
  echo "make test: second lane (${second[*]}, then e2e) done at $(since) (exit $second_rc)"
  [[ $rc -ne 0 ]] || rc=$second_rc
  rm -rf "$tmp"
fi
"$py" -m coverage combine --quiet .coverage.first .coverage.second 2>/dev/null || true
fold "$py" -m coverage report --fail-under="${LLF_COV_MIN:-85}"
"$py" -m coverage xml --quiet || true
echo "make test: done in $(since) (exit $rc)"
exit $rc
