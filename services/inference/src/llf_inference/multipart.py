"""The few text fields of a multipart upload the gateway routes on, without a form library.

An audio upload is relayed as the bytes it came as; the gateway needs only its ``model``
(and ``stream``) field. Splitting on the boundary is one pass in C over at most 25 MB, and
no part is decoded but the small text fields asked for (file parts are never copied).
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'name="([^"]*)"', re.IGNORECASE)
MAX_FIELD_BYTES = 4096


def form_fields(raw: bytes, content_type: str, names: tuple[str, ...] = ("model", "stream")) -> dict[str, str]:
    """The text fields ``names`` of a ``multipart/form-data`` body (absent or malformed: left out)."""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        return {}
    fields: dict[str, str] = {}
    for part in raw.split(b"--" + match.group(1).encode()):
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep or len(value) > MAX_FIELD_BYTES or b"filename=" in head:
            continue
        name = _NAME.search(head)
        if name is not None and name.group(1).decode(errors="replace") in names:
            fields[name.group(1).decode()] = value.removesuffix(b"\r\n").decode(errors="replace").strip()
    return fields
