"""Print the third-party requirements of llf packages, one per line, from their pyproject.toml.

Image builds install these first, in their own layer, and our sources after with ``--no-deps``:
editing a module then rebuilds only the last, small layer, while a dependency change still
rebuilds from the pyproject files (the single source of truth). ``llf-*`` requirements are
resolved to the listed packages' own dependencies (with their extras), not installed from an index.

Usage: ``python requirements.py services/common services/models`` (directories with pyproject.toml).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def _project(directory: Path) -> dict[str, Any]:
    with (directory / "pyproject.toml").open("rb") as fh:
        project: dict[str, Any] = tomllib.load(fh)["project"]
    return project


def requirements(directories: list[Path]) -> list[str]:
    """Third-party requirements of the given packages, own packages' extras included, deduplicated."""
    projects = {str(p["name"]): p for p in map(_project, directories)}
    wanted: list[str] = []
    extras: dict[str, set[str]] = {name: set() for name in projects}
    for project in projects.values():
        for requirement in project.get("dependencies", []):
            match = _NAME.match(requirement)
            if match and match.group(1) in projects:
                chosen = (x.strip() for x in (match.group(2) or "").split(","))
                extras[match.group(1)].update(x for x in chosen if x)
            elif requirement not in wanted:
                wanted.append(requirement)
    for name, chosen_extras in extras.items():
        optional: dict[str, list[str]] = projects[name].get("optional-dependencies", {})
        for extra in sorted(chosen_extras):
            wanted.extend(r for r in optional.get(extra, []) if r not in wanted)
    return wanted


if __name__ == "__main__":
    print("\n".join(requirements([Path(arg) for arg in sys.argv[1:]])))
