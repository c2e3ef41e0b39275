"""Reject bad OpenAI requests at the gateway, before they cost an engine anything.

The body is parsed once (the gateway must read ``model`` and ``stream`` anyway) and checked
with plain code, not a schema: only the fields whose wrong values could crash or stall an
engine, or that OpenAI clients commonly get wrong, are checked; everything else is the
engine's business and the original bytes are forwarded unchanged.

Every rejection is a 400 ``invalid_request_error`` naming the parameter, as OpenAI and vLLM
answer: malformed JSON, a body that is not an object, ``NaN``/``Infinity`` anywhere, wrong
types, empty ``messages``/``prompt``, negative or out-of-range sampling parameters, and
``max_tokens`` beyond the serving replica's context length.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llf_common.errors import BadRequest


class InvalidRequest(BadRequest):
    code = "invalid_request_error"


def _reject_constant(name: str) -> float:
    raise InvalidRequest(f"request body is not valid JSON: {name} is not a number in JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; ``InvalidRequest`` for anything else."""
    if not raw:
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {type(body).__name__}")
    return body


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# name -> (integer only?, lowest, highest, lowest inclusive?)
_RANGES: dict[str, tuple[bool, float, float, bool]] = {
    "temperature": (False, 0.0, math.inf, True),
    "top_p": (False, 0.0, 1.0, False),
    "min_p": (False, 0.0, 1.0, True),
    "top_k": (True, -1, math.inf, True),
    "presence_penalty": (False, -2.0, 2.0, True),
    "frequency_penalty": (False, -2.0, 2.0, True),
    "repetition_penalty": (False, 0.0, math.inf, False),
    "n": (True, 1, 128, True),
    "best_of": (True, 1, 128, True),
    "top_logprobs": (True, 0, 20, True),
    "seed": (True, -math.inf, math.inf, True),
    "min_tokens": (True, 0, math.inf, True),
}


def check_model(body: dict[str, Any]) -> None:
    """The one check of the endpoints relayed as they are (embeddings, rerank, …): a usable ``model``."""
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidRequest("'model' must be a non-empty string")


def check_common(body: dict[str, Any]) -> None:
    """Checks shared by chat and text completions (types and ranges, no context length)."""
    check_model(body)
    if "stream" in body and not isinstance(body["stream"], bool | None):
        raise InvalidRequest("'stream' must be true or false")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not _is_int(value) or value < 1):
            raise InvalidRequest(f"'{key}' must be a positive integer, got {json.dumps(value)}")
    for key, (integer, low, high, low_inclusive) in _RANGES.items():
        value = body.get(key)
        if value is None:
            continue
        if not (_is_int(value) if integer else _is_number(value)):
            kind = "an integer" if integer else "a number"
            raise InvalidRequest(f"'{key}' must be {kind}, got {json.dumps(value)}")
        too_low = value < low if low_inclusive else value <= low
        if too_low or value > high:
            raise InvalidRequest(f"'{key}' is out of range ({_describe_range(low, high, low_inclusive)}), got {value}")
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidRequest("'stop' must be a string or a list of strings")


def _describe_range(low: float, high: float, low_inclusive: bool) -> str:
    parts = []
    if low != -math.inf:
        parts.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high != math.inf:
        parts.append(f"<= {high:g}")
    return " and ".join(parts)


def check_chat(body: dict[str, Any]) -> None:
    check_common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest('\'messages\' must be a non-empty list of {"role", "content"} objects')
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"'messages[{index}]' must be an object with a string 'role'")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(f"'messages[{index}].content' must be a string or a list of content parts")


def check_completion(body: dict[str, Any]) -> None:
    check_common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return
    if (
        isinstance(prompt, list)
        and prompt
        and all(
            isinstance(p, str) or _is_int(p) or (isinstance(p, list) and p and all(_is_int(t) for t in p))
            for p in prompt
        )
    ):
        return
    raise InvalidRequest("'prompt' must be a string, a non-empty list of strings, or token ids")


def check_context(body: dict[str, Any], max_model_len: int | None) -> None:
    """``max_tokens`` cannot exceed what the serving replica can hold at all."""
    if max_model_len is None:
        return
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and value > max_model_len:
            raise InvalidRequest(
                f"'{key}' is {value}, more than the model's context length {max_model_len}; ask for fewer tokens"
            )
