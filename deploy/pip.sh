#!/bin/sh
# pip inside an image build: `pip.sh VENV pip-args...`.
# Index settings come in as build args (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL: empty = pip's default);
# the CA bundle of a TLS-intercepting proxy comes in as the BuildKit secret `pip_ca`, so it is used
# by this one command and never lands in a layer.
set -eu
venv=$1
shift
[ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL
[ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL
if [ -s /run/secrets/pip_ca ]; then
  export PIP_CERT=/run/secrets/pip_ca
fi
exec "$venv/bin/python" -m pip --no-cache-dir --disable-pip-version-check "$@"
