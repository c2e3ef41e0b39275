"""Print the version ``uv.lock`` pins for one package: ``python3 deploy/lockpin.py uv``.

uv installs everything from the lock, but uv itself has to come first, from pip: ``make dev`` and the
image builds ask this script which uv to install, so the uv that syncs is the one the lock names
(the ``dev`` group holds it, and a sync keeps it). Standard library only (``tomllib``, Python 3.11+).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "uv.lock"


def locked_version(name: str, lock: Path = LOCK) -> str:
    """The one version of ``name`` in the lock; an error when it is absent or locked twice."""
    with lock.open("rb") as fh:
        packages = tomllib.load(fh).get("package", [])
    versions = sorted({str(p["version"]) for p in packages if p.get("name") == name and "version" in p})
    if len(versions) != 1:
        raise LookupError(f"{lock} pins {name} {len(versions)} times ({', '.join(versions) or 'never'})")
    return versions[0]


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: lockpin.py PACKAGE [LOCKFILE]", file=sys.stderr)
        return 2
    try:
        print(locked_version(argv[0], Path(argv[1]) if len(argv) == 2 else LOCK))
    except (OSError, LookupError, tomllib.TOMLDecodeError) as exc:
        print(f"lockpin: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
