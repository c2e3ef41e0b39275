"""Builders for the registry's unit tests: small safetensors files written by hand."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def write_safetensors(path: Path, header: dict[str, Any], data: bytes) -> Path:
    """A safetensors file from a raw header dict (so tests can write broken ones on purpose)."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
