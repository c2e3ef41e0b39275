"""The user's side of ``make up``: which model to serve, the CLI's default model, ``llf`` on PATH.

The CLI reads ``default_model`` from ``$LLF_HOME/config.json``; writing the served model there
makes a plain ``llf chat`` talk to it. A value the user chose (in the file or in
``LLF_DEFAULT_MODEL``) is never overwritten; a value ``make up`` wrote before is ours to update.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.up.state import write_json_atomically


@dataclass(frozen=True)
class ModelChoice:
    model: str
    source: str  # "--model", "LLF_DEFAULT_MODEL", "config file", "built-in default"


def choose_model(
    cli_model: str | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    wrote_before: str | None,
    builtin: str,
) -> ModelChoice:
    """``--model`` > ``LLF_DEFAULT_MODEL`` > the user's own config value > the built-in default.

    A ``default_model`` that ``make up`` itself wrote (e.g. the demo model) does not count as the
    user's choice, so the next ``make up`` tries the real default again.
    """
    if cli_model:
        return ModelChoice(cli_model, "--model")
    if env.get("LLF_DEFAULT_MODEL"):
        return ModelChoice(env["LLF_DEFAULT_MODEL"], "LLF_DEFAULT_MODEL")
    configured = config.get("default_model")
    if isinstance(configured, str) and configured and configured != wrote_before:
        return ModelChoice(configured, "config file")
    return ModelChoice(builtin, "built-in default")


def read_config(path: Path) -> dict[str, Any] | None:
    """The config file as a dict; ``{}`` when missing, ``None`` when unreadable (leave it alone)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class DefaultUpdate:
    wrote: str | None  # the value written (to remember as ours), None when untouched
    note: str | None  # what to tell the user, if anything


def set_cli_default(path: Path, served: str, env: Mapping[str, str], wrote_before: str | None) -> DefaultUpdate:
    """Point the CLI's ``default_model`` at ``served`` unless the user chose one."""
    hint = f"`llf chat -m {served}` talks to the served model"
    if env.get("LLF_DEFAULT_MODEL"):
        if env["LLF_DEFAULT_MODEL"] != served:
            return DefaultUpdate(None, f"LLF_DEFAULT_MODEL={env['LLF_DEFAULT_MODEL']} is set in your shell; {hint}")
        return DefaultUpdate(None, None)
    config = read_config(path)
    if config is None:
        return DefaultUpdate(None, f"{path} is not a JSON object, so it was left alone; {hint}")
    current = config.get("default_model")
    if current == served:
        return DefaultUpdate(wrote_before, None)
    if current is not None and current != wrote_before:
        return DefaultUpdate(None, f"your config {path} sets default_model={current}; {hint}")
    config["default_model"] = served
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    write_json_atomically(path, config, mode=mode)
    return DefaultUpdate(served, f"set default_model={served} in {path}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


SYSTEM_BIN = Path("/usr/local/bin")


def _link(link: Path, target: Path) -> bool:
    """Point ``link`` at ``target`` unless a real file (someone else's ``llf``) is there; False if not."""
    try:
        if link.exists() and not link.is_symlink():
            return False
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        tmp.replace(link)  # atomic: a shell never sees a missing llf
    except OSError:
        return False
    return True


def put_on_path(
    llf: Path,
    env: Mapping[str, str],
    home: Path,
    llf_home: Path,
    hidden: Path | None = None,
    system_bin: Path = SYSTEM_BIN,
) -> str:
    """Make ``llf`` runnable from the user's shell, or say exactly how.

    A symlink in the first of ``~/.local/bin`` (the user's own, created if PATH names it) and
    ``/usr/local/bin`` (when writable: root's default PATH has no ``~/.local/bin``) that is on PATH;
    else the one ``export`` line for a directory of llf's own. ``hidden`` is the venv's bin directory
    that ``make`` puts on its own PATH: the user's shell does not have it, so it is ignored.
    """
    entries = [e for e in env.get("PATH", "").split(os.pathsep) if e and not (hidden and _same_file(Path(e), hidden))]
    found = shutil.which("llf", path=os.pathsep.join(entries))
    if found and _same_file(Path(found), llf):
        return f"`llf` is on your PATH ({found})"
    local_bin = home / ".local" / "bin"
    for directory in (local_bin, system_bin):
        if not any(_same_file(Path(e), directory) for e in entries):
            continue
        if directory == local_bin:
            directory.mkdir(parents=True, exist_ok=True)
        elif not os.access(directory, os.W_OK):
            continue
        if _link(directory / "llf", llf):
            shadow = shutil.which("llf", path=os.pathsep.join(entries))
            if shadow and not _same_file(Path(shadow), llf):
                return f"linked {directory / 'llf'} -> {llf}, but your shell finds {shadow} first"
            return f"linked {directory / 'llf'} -> {llf}"
    own_bin = llf_home / "bin"
    own_bin.mkdir(parents=True, exist_ok=True)
    _link(own_bin / "llf", llf)
    return f'`llf` is not on your PATH; run:  export PATH="{own_bin}:$PATH"'
