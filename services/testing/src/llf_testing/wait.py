"""Ready means answering: a real chat completion, not an open port.

The gateway answers ``/healthz`` long before its engine has loaded the weights; a test that starts
then would fail on its first request. ``wait_until_answers`` asks for one token until it gets it,
stops early when the container has exited, and puts the container's last log lines in the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


class LlfStartError(RuntimeError):
    """The container did not answer a chat completion in time (the message holds its last log lines)."""


def chat_probe(model: str) -> dict[str, object]:
    """The smallest real request: one token of one message."""
    return {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1, "temperature": 0}


def answered(response: httpx.Response) -> bool:
    """A 200 carrying at least one choice (a 503 "loading" or a 404 "not yet known" is not an answer)."""
    if response.status_code != 200:
        return False
    try:
        return bool(response.json().get("choices"))
    except ValueError:
        return False


def wait_until_answers(
    client: httpx.Client,
    model: str,
    *,
    timeout: float,
    exited: Callable[[], str | None],
    logs: Callable[[], str],
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll ``POST chat/completions`` on ``client`` (its base URL ends in /v1) until it answers.

    Returns the seconds waited. ``exited`` says why the container stopped (None while it runs).
    """
    start = clock()
    deadline = start + timeout
    last = "no reply yet"
    while True:
        try:
            response = client.post("chat/completions", json=chat_probe(model))
            if answered(response):
                return clock() - start
            last = f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        gone = exited()
        if gone is not None:
            raise LlfStartError(f"llf container exited before answering ({gone}); last reply: {last}\n{logs()}")
        if clock() >= deadline:
            raise LlfStartError(
                f"llf container did not answer a chat completion for {model!r} within {timeout:.0f} s; "
                f"last reply: {last}\n--- last log lines ---\n{logs()}"
            )
        sleep(interval)
