"""What ``make up`` prints: short step lines, warnings, and the demo-model banner."""

from __future__ import annotations

import sys

_COLOR = sys.stdout.isatty()


def _paint(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _COLOR else text


def step(text: str) -> None:
    print(_paint("1;36", "==> ") + text, flush=True)


def info(text: str) -> None:
    print("    " + text, flush=True)


def warn(text: str) -> None:
    print(_paint("1;33", "!!  ") + text, flush=True)


def error(text: str) -> None:
    print(_paint("1;31", "error: ") + text, file=sys.stderr, flush=True)


def banner(lines: list[str]) -> None:
    width = max(len(line) for line in lines) + 4
    bar = "*" * width
    print(_paint("1;33", bar), flush=True)
    for line in lines:
        print(_paint("1;33", f"* {line.ljust(width - 4)} *"), flush=True)
    print(_paint("1;33", bar), flush=True)


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover - unreachable
