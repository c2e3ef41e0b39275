#!/usr/bin/env bash
# The README's test command (`make test`): unit + integration tests with one coverage report over all
# services; e2e too when a Docker engine is reachable (or LLF_E2E=1 forces them).
# pytest's exit code 5 ("no tests selected") is not a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
export UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}  # as in the Makefile: uv trusts the system CA store
markers="unit or integration"
if [[ "${LLF_E2E:-auto}" == 1 ]] || { [[ "${LLF_E2E:-auto}" == auto ]] && docker info >/dev/null 2>&1; }; then
  markers="$markers or e2e"
fi
# The lock must match every pyproject (a dependency added by hand, not with `uv add`, fails here).
if ! .venv/bin/uv lock --check || ! .venv/bin/uv lock --check --project tools/checkov; then
  echo "make test: uv.lock is out of date with a pyproject.toml: run \`uv lock\` (or add dependencies with \`uv add\`)" >&2
  exit 1
fi
echo "make test: -m '$markers'"
rm -f .coverage .coverage.*
"$py" -m pytest -m "$markers" \
  --cov --cov-report=term --cov-report=xml --cov-fail-under="${LLF_COV_MIN:-85}" "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "no tests selected (pytest exit 5): treated as success"
  rc=0
fi
exit $rc
