"""``keep_alive``: how long an idle model stays loaded, as Ollama spells it.

A duration string (``"5m"``, ``"1h30m"``, ``"90s"``, ``"500ms"``), a number of seconds
(``300``, ``"300"``), ``0`` (unload as soon as the request is done) or any negative value
(``-1``: never unload by time; only when room is needed). The per-request field is an llf
extension, so it is removed from the body before the engine sees it: vLLM would reject or
ignore an unknown field, and the gateway must not forward what only it understands.
"""

from __future__ import annotations

import enum
import json
import math
import re
from typing import Any, Final

from llf_common.errors import BadRequest

KeepAlive = float | None
"""Seconds an idle model stays loaded; ``None``: until its room is needed."""


class Unset(enum.Enum):
    """The request said nothing about ``keep_alive`` (distinct from ``None`` = forever)."""

    UNSET = 0


UNSET: Final = Unset.UNSET

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_HINT = 'a duration like "5m" or "1h30m", a number of seconds, 0 (unload after this request) or -1 (never unload)'


class InvalidKeepAlive(BadRequest):
    code = "invalid_request_error"


def parse_keep_alive(value: Any) -> KeepAlive:
    """Seconds (``>= 0``) or ``None`` (never); ``InvalidKeepAlive`` names what is accepted."""
    if isinstance(value, bool) or value is None:
        raise InvalidKeepAlive(f"keep_alive must be {_HINT}, not {json.dumps(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise InvalidKeepAlive(f"keep_alive must be {_HINT}, not a {type(value).__name__}")
    if not math.isfinite(seconds):
        raise InvalidKeepAlive(f"keep_alive must be {_HINT}")
    return None if seconds < 0 else seconds


def _parse_text(text: str) -> float:
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text)
    try:
        return sign * float(body)  # "300", "-1"
    except ValueError:
        pass
    total, position = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise InvalidKeepAlive(f"keep_alive must be {_HINT}, not {text!r}")
    return sign * total


def strip_keep_alive(raw: bytes, body: dict[str, Any]) -> tuple[bytes, KeepAlive | Unset]:
    """The bytes to send to the engine and the request's ``keep_alive`` (``UNSET`` if absent).

    A body without the field is returned as the very same bytes (no re-encoding on the hot
    path); one with it is re-encoded without it.
    """
    if "keep_alive" not in body:
        return raw, UNSET
    keep_alive = parse_keep_alive(body["keep_alive"])
    rest = {key: value for key, value in body.items() if key != "keep_alive"}
    return json.dumps(rest, ensure_ascii=False, separators=(",", ":")).encode(), keep_alive


def describe(keep_alive: KeepAlive) -> str:
    """``keep_alive`` as a person reads it in logs and messages."""
    if keep_alive is None:
        return "until its room is needed"
    return f"{keep_alive:g} s idle"
