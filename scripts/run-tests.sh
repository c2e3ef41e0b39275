#!/usr/bin/env bash
# The README's test command (`make test`): unit + integration tests, then e2e when a Docker engine is
# reachable (or LLF_E2E=1 forces them), with one coverage report over all services.
# Two pytest sessions, so that the integration suite's session engines are stopped before the e2e
# stacks start (memory) and the e2e tests may wait for images that CI builds meanwhile (.ci/run).
# pytest's exit code 5 ("no tests selected") is not a failure here. Extra arguments go to both sessions.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
export UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}  # as in the Makefile: uv trusts the system CA store
e2e=0
if [[ "${LLF_E2E:-auto}" == 1 ]] || { [[ "${LLF_E2E:-auto}" == auto ]] && docker info >/dev/null 2>&1; }; then
  e2e=1
fi
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

rm -f .coverage .coverage.*
report=(--cov-report=term --cov-report=xml --cov-fail-under="${LLF_COV_MIN:-85}")
t0=$(date +%s)
if [[ $e2e == 1 ]]; then
  echo "make test: -m 'unit or integration', then -m e2e"
  run_pytest -m "unit or integration" --cov --cov-report= "$@"
  rc=$?
  echo "make test: unit + integration took $(($(date +%s) - t0)) s (exit $rc)"
  t1=$(date +%s)
  run_pytest -m e2e --cov --cov-append "${report[@]}" "$@"
  rc_e2e=$?
  echo "make test: e2e took $(($(date +%s) - t1)) s (exit $rc_e2e)"
  [[ $rc -ne 0 ]] || rc=$rc_e2e
else
  echo "make test: -m 'unit or integration' (no Docker engine: e2e skipped)"
  run_pytest -m "unit or integration" --cov "${report[@]}" "$@"
  rc=$?
fi
exit $rc
