"""Redis's password in local mode: generated once, kept in two 0600 files of the run dir.

Without a password, anyone who can reach Redis can enqueue any importable function, which the
worker runs with ``HF_TOKEN`` in its environment. The password is ``LLF_REDIS_PASSWORD`` when
set, else generated once. In local mode it is in ``redis.password`` (the services read it
through ``LLF_REDIS_PASSWORD_FILE``) and in ``redis.conf`` (``requirepass``, the one config
file redis-server is started with); never in ``supervisord.conf``, a command line (``ps``) or
``REDIS_URL``. Compose gets it as ``LLF_REDIS_PASSWORD`` in ``docker compose``'s environment.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

PASSWORD_FILE = "redis.password"
CONF_FILE = "redis.conf"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only, replacing the file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def ensure_password(run_dir: Path, given: str | None = None) -> str:
    """The stack's Redis password: ``given`` (``LLF_REDIS_PASSWORD``), else the one in the run dir,
    else a new one; either way it is (then) in the run dir's 0600 file, for every mode.
    """
    path = run_dir / PASSWORD_FILE
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    password = (given or "").strip() or kept or secrets.token_hex(32)  # hex: URL- and conf-safe
    if password != kept:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, password + "\n")
    else:
        os.chmod(path, 0o600)
    return password


def with_password(environ: Mapping[str, str], run_dir: Path) -> dict[str, str]:
    """``environ`` with ``LLF_REDIS_PASSWORD`` set: Compose interpolates it (``docker-compose.yml``
    refuses to start Redis without one), local mode writes it into ``redis.conf``.
    """
    return {**environ, "LLF_REDIS_PASSWORD": ensure_password(run_dir, environ.get("LLF_REDIS_PASSWORD"))}


def write_conf(run_dir: Path, password: str) -> Path:
    """``redis.conf`` with ``requirepass``; the non-secret options stay on the command line."""
    path = run_dir / CONF_FILE
    header = f"# Written by `make up`: Redis's password (also in {PASSWORD_FILE}).\n"
    _write_private(path, f"{header}requirepass {password}\n")
    return path
