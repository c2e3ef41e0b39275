#!/bin/sh
# Inside an image build: `lockreqs.sh OUT UV-EXPORT-ARGS...` writes the pins of uv.lock that one image
# needs (`--package llf-models`, `--only-group build` ...) as a hashed requirements file. Our own
# packages are left out: they are installed from source in a later layer, with --no-deps, so this
# layer (and the pip install of OUT) is rebuilt only when the lock or a pyproject changes.
# uv itself comes from pip (the version uv.lock pins) into /opt/uv, which no runtime image copies;
# `uv export --frozen` reads the lock only, it asks no index. Expects /build to hold pip.sh,
# lockpin.py, uv.lock, the root pyproject.toml and the pyproject.toml of the services to export.
set -eu
out=$1
shift
if [ ! -x /opt/uv/bin/uv ]; then
  python3 -m venv /opt/uv
  /build/pip.sh /opt/uv install -q "uv==$(python3 /build/lockpin.py uv /build/uv.lock)"
fi
/opt/uv/bin/uv export --quiet --frozen --no-dev --no-emit-workspace --project /build -o "$out" "$@"
