"""What a request is routed on: its session, else its user, else the start of its prompt.

Turn n of a chat resends turns 1..n-1, so anything that stays the same from turn to turn
names the conversation: the client's ``X-Session-ID`` header (``llf chat`` sends one per
conversation), else OpenAI's ``user`` field, else a hash of the prompt's beginning — the
messages up to and including the first user message (system prompt + opening question), or
the first ``PREFIX_CHARS`` characters of a text prompt or a Responses ``input``. Requests
without any of these (embeddings of a list, token ids, …) have no key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

PREFIX_CHARS = 256
"""Characters of a text prompt that name its conversation (a turn appends, it never rewrites)."""

MAX_KEY_CHARS = 256
"""Longer header or ``user`` values are hashed (the key is kept in memory per ring walk only)."""


def routing_key(body: dict[str, Any], session: str | None = None) -> str | None:
    """The key the affinity policy hashes for a request, or ``None`` if there is nothing to key on."""
    if session:
        return "session:" + _bounded(session)
    user = body.get("user")
    if isinstance(user, str) and user:
        return "user:" + _bounded(user)
    prefix = prompt_prefix(body)
    if prefix is None:
        return None
    return "prefix:" + hashlib.blake2b(prefix.encode(), digest_size=16).hexdigest()


def prompt_prefix(body: dict[str, Any]) -> str | None:
    """The part of the prompt that stays the same for the whole conversation."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        head: list[Any] = []
        for message in messages:
            head.append(message)
            if isinstance(message, dict) and message.get("role") == "user":
                break
        return json.dumps(head, sort_keys=True, ensure_ascii=False)
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str) and value:
            return value[:PREFIX_CHARS]
        if isinstance(value, list) and value and field == "input" and all(isinstance(v, dict) for v in value):
            return prompt_prefix({"messages": value})  # Responses API: a list of message items
    return None


def _bounded(value: str) -> str:
    if len(value) <= MAX_KEY_CHARS:
        return value
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()
