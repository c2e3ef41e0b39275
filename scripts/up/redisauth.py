"""Redis's password in local mode: generated once, kept in two 0600 files of the run dir.

Without a password, anyone who can reach Redis can enqueue any importable function, which the
worker runs with ``HF_TOKEN`` in its environment. The password is in ``redis.password`` (the
services read it through ``LLF_REDIS_PASSWORD_FILE``) and in ``redis.conf`` (``requirepass``,
the one config file redis-server is started with); never in ``supervisord.conf``, a command
line (``ps``) or ``REDIS_URL``.
"""

from __future__ import annotations

import os
import secrets
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


def ensure_password(run_dir: Path) -> str:
    """The stack's Redis password; created on first use, then kept across ``make up`` runs."""
    path = run_dir / PASSWORD_FILE
    try:
        password = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        password = ""
    if password:
        os.chmod(path, 0o600)
        return password
    run_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(32)  # hex: safe in a URL and in redis.conf without quoting
    _write_private(path, password + "\n")
    return password


def write_conf(run_dir: Path, password: str) -> Path:
    """``redis.conf`` with ``requirepass``; the non-secret options stay on the command line."""
    path = run_dir / CONF_FILE
    header = f"# Written by `make up`: Redis's password (also in {PASSWORD_FILE}).\n"
    _write_private(path, f"{header}requirepass {password}\n")
    return path
