"""``llf`` pointed at vllm-router (Kubernetes): no /v1/status there, so chat picks from /v1/models
and serve/status say that the cluster decides."""

from __future__ import annotations

import json

import httpx

from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakes import GATEWAY, MODEL, REGISTRY, Fake, answer, model_info

MODELS = f"{GATEWAY}/v1/models"
CHAT = f"{GATEWAY}/v1/chat/completions"


def router(fake: Fake, *served: str) -> None:
    """A router: OpenAI routes only (its /v1/status is the engine's 404)."""
    fake.on("GET", MODELS, httpx.Response(200, json={"object": "list", "data": [{"id": m} for m in served]}))
    fake.on("POST", CHAT, answer("Hi", usage=1))


def test_chat_takes_the_model_the_router_serves_and_never_asks_to_serve(llf: Invoke, fake: Fake) -> None:
    router(fake, MODEL)
    result = llf("chat", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi\n"
    assert json.loads(fake.sent("POST", "/v1/chat/completions")[0].content)["model"] == MODEL
    assert not fake.sent("POST", "/v1/serve")


def test_chat_prefers_the_default_model_when_the_router_serves_it(llf: Invoke, fake: Fake) -> None:
    router(fake, "acme/first", "acme/wanted")
    result = llf("chat", "hi", env={"LLF_DEFAULT_MODEL": "acme/wanted"})
    assert result.exit_code == 0, result.output
    assert json.loads(fake.sent("POST", "/v1/chat/completions")[0].content)["model"] == "acme/wanted"


def test_chat_with_no_model_behind_the_router_is_one_clear_line(llf: Invoke, fake: Fake) -> None:
    router(fake)
    result = llf("chat", "hi")
    assert result.exit_code == 1
    assert "serves no model" in result.stderr


def test_serve_and_status_say_that_the_cluster_decides(llf: Invoke, fake: Fake) -> None:
    router(fake, MODEL)
    fake.on("GET", f"{REGISTRY}/v1/models/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok"}))
    for args in (("serve", MODEL), ("status",)):
        result = llf(*args)
        assert result.exit_code == 1, result.output
        assert "the cluster decides" in result.stderr and "Traceback" not in result.output
