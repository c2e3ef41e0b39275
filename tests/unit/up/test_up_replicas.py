"""``make up REPLICAS=2|auto`` / ``LLF_REPLICAS``: passed to the gateway's POST /v1/serve, and only when asked for."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from scripts.up.__main__ import parse
from scripts.up.stack import Stack, UpError, parse_replicas, serve_body


def test_replicas_parse_numbers_and_auto_and_unset_means_the_gateway_default() -> None:
    assert [parse_replicas(text) for text in (None, "", " 2 ", "16", "AUTO")] == [None, None, 2, 16, "auto"]
    for bad in ("0", "17", "two", "-1"):
        with pytest.raises(UpError, match="must be a number 1-16 or auto"):
            parse_replicas(bad)


def test_make_up_passes_replicas_beside_model() -> None:
    args = parse(["--model", "a/b", "--replicas", "auto"])
    assert (args.model, args.replicas) == ("a/b", "auto")
    assert parse([]).replicas is None


def test_serve_body_names_replicas_only_when_asked() -> None:
    assert serve_body("a/b", None) == {"model": "a/b"}
    assert serve_body("a/b", "auto") == {"model": "a/b", "replicas": "auto"}


def fake_stack(statuses: list[dict[str, Any]], sent: list[dict[str, Any]]) -> Stack:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            sent.append(json.loads(request.content))
            return httpx.Response(202, json=statuses[0])
        return httpx.Response(200, json=statuses.pop(0) if len(statuses) > 1 else statuses[0])

    stack = Stack("http://models.test", "http://gateway.test", poll=0.001)
    stack.http = httpx.Client(transport=httpx.MockTransport(handler))
    return stack


def ready(model: str, count: int) -> dict[str, Any]:
    replicas = [{"id": f"r{i}", "model": model, "state": "ready"} for i in range(count)]
    return {"state": "ready", "models": [model], "target": model, "replicas": replicas}


def test_stack_serve_asks_for_the_replicas_and_waits_until_served() -> None:
    sent: list[dict[str, Any]] = []
    stack = fake_stack([{"state": "idle", "models": [], "replicas": []}, ready("a/b", 2)], sent)
    stack.serve("a/b", 5.0, lambda: "the log", 2)
    assert sent == [{"model": "a/b", "replicas": 2}]


def test_stack_serve_converges_another_explicit_count_but_leaves_a_served_auto_model_alone() -> None:
    sent: list[dict[str, Any]] = []
    fake_stack([ready("a/b", 1)], sent).serve("a/b", 5.0, lambda: "the log", "auto")
    fake_stack([ready("a/b", 1)], sent).serve("a/b", 5.0, lambda: "the log", None)
    assert sent == []
    fake_stack([ready("a/b", 1), ready("a/b", 1)], sent).serve("a/b", 5.0, lambda: "the log", 1)
    assert sent == []
    fake_stack([ready("a/b", 1), ready("a/b", 3)], sent).serve("a/b", 5.0, lambda: "the log", 3)
    assert sent == [{"model": "a/b", "replicas": 3}]
