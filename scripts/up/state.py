"""What the last ``make up`` did, kept in ``$LLF_HOME/run/up.json``.

``make down`` and ``make logs`` need to know which mode to act on without detecting it again
(Docker may have come up since), and ``make up`` needs to tell the values it wrote itself (the
CLI's default model, the Redis port it chose) from values the user set.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_FILE = "up.json"


def write_json_atomically(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def update(run_dir: Path, **values: Any) -> dict[str, Any]:
    data = load(run_dir)
    data.update(values)
    write_json_atomically(run_dir / STATE_FILE, data)
    return data
