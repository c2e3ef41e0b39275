#!/usr/bin/env bash
# The README's test command (`make test`): unit + integration tests, then e2e when a Docker engine is
# reachable (or LLF_E2E=1 forces them), with one coverage report over all services.
#
# Unit + integration run as two pytest sessions side by side (LLF_TEST_JOBS, default 2 on a machine
# with 2+ cores): the engine-heavy suites in one, the registry/store/deploy suites (whose tests mostly
# wait on subprocesses, Redis and the hub stand-in) in the other, so neither core idles while the
# other imports torch. Each session has its own coverage data and temp dir; the two are combined.
# e2e comes after them in a session of its own, so that the integration suite's engines are stopped
# before the e2e stacks start (memory) and the e2e tests may wait for images that CI builds meanwhile
# (.ci/run). pytest's exit code 5 ("no tests selected") is not a failure here. Extra arguments go to
# every session and make the unit + integration part one session (they may name paths).
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
# The second session's suites: registry, store integrity, deploy manifests, `make up`, the harness.
second=(tests/integration/models tests/integration/hardening tests/integration/deploy tests/integration/up
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

# Unit + integration; leaves the coverage data in .coverage.
unit_and_integration() {
  if [[ $jobs -lt 2 ]]; then
    echo "make test: -m 'unit or integration'"
    run_pytest -m "unit or integration" --cov --cov-report= "$@"
    return
  fi
  local ignores=() path tmp rc_first rc_second pid
  for path in "${second[@]}"; do ignores+=("--ignore=$path"); done
  tmp=$(mktemp -d /tmp/llf-test.XXXX)
  echo "make test: -m 'unit or integration' in two sessions side by side; the second's output follows the first's"
  COVERAGE_FILE=$PWD/.coverage.second run_pytest -m integration --cov --cov-report= --basetemp="$tmp/second" \
    "${second[@]}" >"$tmp/second.log" 2>&1 &
  pid=$!
  COVERAGE_FILE=$PWD/.coverage.first run_pytest -m "unit or integration" --cov --cov-report= --basetemp="$tmp/first" \
    "${ignores[@]}" tests
  rc_first=$?
  echo "make test: first session (exit $rc_first) done after $(($(date +%s) - t0)) s; the second's output:"
  wait "$pid"
  rc_second=$?
  cat "$tmp/second.log"
  echo "make test: second session (${second[*]}) exit $rc_second"
  rm -rf "$tmp"
  "$py" -m coverage combine .coverage.first .coverage.second >/dev/null
  [[ $rc_first -ne 0 ]] || return $rc_second
  return $rc_first
}

rm -f .coverage .coverage.*
t0=$(date +%s)
unit_and_integration "$@"
rc=$?
echo "make test: unit + integration took $(($(date +%s) - t0)) s (exit $rc)"
report=(--cov-report=term --cov-report=xml --cov-fail-under="${LLF_COV_MIN:-85}")
if [[ $e2e == 1 ]]; then
  t1=$(date +%s)
  echo "make test: -m e2e"
  run_pytest -m e2e --cov --cov-append "${report[@]}" "$@"
  rc_e2e=$?
  echo "make test: e2e took $(($(date +%s) - t1)) s (exit $rc_e2e)"
  [[ $rc -ne 0 ]] || rc=$rc_e2e
else
  echo "make test: e2e skipped (no Docker engine; LLF_E2E=1 forces it)"
  "$py" -m coverage report --fail-under="${LLF_COV_MIN:-85}" && "$py" -m coverage xml -q
  rc_cov=$?
  [[ $rc -ne 0 ]] || rc=$rc_cov
fi
exit $rc
