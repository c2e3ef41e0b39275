"""Affinity routing and the extra vLLM endpoints through the gateway's app, over the in-process fake engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from llf_inference.app import create_app
from llf_inference.gateway import Gateway
from llf_inference.replica import Replica
from llf_inference.settings import InferenceSettings

from tests.support.fake_engine import FakeEngine
from tests.support.fake_gateway import MODEL
from tests.unit.inference.fakes import FakeResolver, ready_replica

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]


def chat(content: str = "hi") -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 2}


@pytest.fixture
def gateway(make_settings: MakeSettings) -> Gateway:
    return Gateway(make_settings(), resolver=FakeResolver())


@pytest.fixture
def replicas(gateway: Gateway) -> list[Replica]:
    return [ready_replica(gateway, MODEL, "r0"), ready_replica(gateway, MODEL, "r1")]


@pytest.fixture
async def client(gateway: Gateway, replicas: list[Replica]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def engine(replica: Replica) -> FakeEngine:
    assert replica.client is not None
    app = replica.client._transport.app  # type: ignore[attr-defined]
    assert isinstance(app, FakeEngine)
    return app


def served_by(replicas: list[Replica]) -> list[int]:
    return [len(engine(r).requests) + len(engine(r).extras) for r in replicas]


def decisions(gateway: Gateway) -> dict[str, float]:
    return {
        sample.labels["decision"]: sample.value
        for metric in gateway.metrics.routing.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


# ------------------------------------------------------------------ routing
async def test_every_turn_of_a_session_lands_on_one_replica(
    client: httpx.AsyncClient, gateway: Gateway, replicas: list[Replica]
) -> None:
    for turn in range(6):
        response = await client.post("/v1/chat/completions", json=chat(f"turn {turn}"), headers={"X-Session-ID": "s1"})
        assert response.status_code == 200
    assert sorted(served_by(replicas)) == [0, 6]
    assert decisions(gateway) == {"affinity_hit": 6.0}
    assert "llf_gateway_routing_decisions_total" in (await client.get("/metrics")).text


async def test_sessions_spread_over_both_replicas(client: httpx.AsyncClient, replicas: list[Replica]) -> None:
    for session in range(16):
        response = await client.post("/v1/chat/completions", json=chat(), headers={"X-Session-ID": f"s{session}"})
        assert response.status_code == 200
    assert min(served_by(replicas)) >= 3, served_by(replicas)


async def test_a_session_spills_when_its_replica_is_busy_past_the_bound(
    client: httpx.AsyncClient, gateway: Gateway, replicas: list[Replica]
) -> None:
    await client.post("/v1/chat/completions", json=chat(), headers={"X-Session-ID": "s1"})
    home = next(r for r in replicas if served_by([r]) == [1])
    other = next(r for r in replicas if r is not home)
    home.in_flight = 4  # bound: ceil(1.25 * 5 / 2) = 4, so a fifth would be past it
    await client.post("/v1/chat/completions", json=chat(), headers={"X-Session-ID": "s1"})
    home.in_flight = 0
    assert served_by([other]) == [1] and decisions(gateway)["spill"] == 1.0


async def test_a_replica_that_is_not_ready_gets_nothing_and_its_sessions_move(
    client: httpx.AsyncClient, replicas: list[Replica]
) -> None:
    await client.post("/v1/chat/completions", json=chat(), headers={"X-Session-ID": "s1"})
    home = next(r for r in replicas if served_by([r]) == [1])
    for state in ("restarting", "draining", "starting"):
        home.state = state  # type: ignore[assignment]
        assert (await client.post("/v1/chat/completions", json=chat(), headers={"X-Session-ID": "s1"})).is_success
    home.state = "ready"
    assert served_by([home]) == [1] and sum(served_by(replicas)) == 4


async def test_least_loaded_is_a_setting(make_settings: MakeSettings) -> None:
    gateway = Gateway(make_settings(routing="least_loaded"), resolver=FakeResolver())
    replicas = [ready_replica(gateway, MODEL, "r0"), ready_replica(gateway, MODEL, "r1")]
    replicas[0].in_flight = 1
    await gateway.complete("/v1/chat/completions", httpx.Request("POST", "/", json=chat()).content, 0.0, "s1")
    assert served_by(replicas) == [0, 1] and decisions(gateway) == {"least_loaded": 1.0}


async def test_previous_response_id_goes_to_the_replica_that_made_the_response(
    client: httpx.AsyncClient, gateway: Gateway, replicas: list[Replica]
) -> None:
    first = await client.post("/v1/responses", json={"model": MODEL, "input": "hello"})
    assert first.status_code == 200
    maker = next(r for r in replicas if served_by([r]) == [1])
    response_id = first.json()["id"]
    for n in range(4):  # different inputs would hash anywhere; the id pins them
        follow = {"model": MODEL, "input": f"and {n}?", "previous_response_id": response_id}
        assert (await client.post("/v1/responses", json=follow)).status_code == 200
    assert served_by([maker]) == [5] and decisions(gateway)["pinned"] == 4.0


# ------------------------------------------------------------------ extra endpoints
async def test_rerank_score_embeddings_and_tokenize_are_relayed_by_model(
    client: httpx.AsyncClient, replicas: list[Replica]
) -> None:
    docs = {"model": MODEL, "query": "q", "documents": ["a", "b"]}
    for path in ("/v1/rerank", "/rerank"):
        response = await client.post(path, json=docs)
        assert response.status_code == 200 and len(response.json()["results"]) == 2
    score = await client.post("/v1/score", json={"model": MODEL, "text_1": "a", "text_2": "b"})
    assert score.json()["data"][0]["score"] == 0.5
    embedding = await client.post("/v1/embeddings", json={"model": MODEL, "input": "a"})
    assert embedding.json()["data"][0]["embedding"] == [0.5] * 4
    tokens = (await client.post("/tokenize", json={"model": MODEL, "prompt": "hey"})).json()["tokens"]
    back = await client.post("/detokenize", json={"model": MODEL, "tokens": tokens})
    assert back.json() == {"prompt": "hey"}


async def test_an_endpoint_the_engine_does_not_serve_is_its_own_404_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/pooling", json={"model": MODEL, "input": "a"})
    assert response.status_code == 404 and response.json() == {"detail": "not found"}


async def test_an_unknown_model_on_an_extra_endpoint_is_the_gateways_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/rerank", json={"model": "nobody/none", "query": "q", "documents": []})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


async def test_unknown_request_fields_reach_the_engine_unchanged(
    client: httpx.AsyncClient, replicas: list[Replica]
) -> None:
    body = {
        **chat(),
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "response_format": {"type": "json_object"},
        "guided_choice": ["a"],
        "brand_new_field": {"x": 1},
    }
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    seen = [request for r in replicas for request in engine(r).requests]
    assert seen == [body]


async def test_audio_uploads_are_relayed_as_multipart_by_the_forms_model(
    client: httpx.AsyncClient, replicas: list[Replica]
) -> None:
    audio = b"RIFF" + b"\0" * 100_000
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        response = await client.post(path, data={"model": MODEL}, files={"file": ("a.wav", audio, "audio/wav")})
        assert response.status_code == 200, response.text
        assert response.json()["text"].endswith(f"bytes for {MODEL}")
    uploads = [extra for r in replicas for extra in engine(r).extras]
    assert all(size > len(audio) and kind.startswith("multipart/form-data; boundary=") for _, size, kind in uploads)


async def test_audio_bodies_may_be_larger_than_prompts_up_to_25_mb(client: httpx.AsyncClient, gateway: Gateway) -> None:
    big = b"\0" * (gateway.settings.max_body_bytes + 1)
    upload = await client.post("/v1/audio/transcriptions", data={"model": MODEL}, files={"file": ("a.wav", big)})
    assert upload.status_code == 200
    prompt = {"model": MODEL, "input": "x" * (gateway.settings.max_body_bytes + 1)}
    assert (await client.post("/v1/embeddings", json=prompt)).status_code == 413
    too_big = b"\0" * (gateway.settings.max_audio_body_bytes + 1)
    refused = await client.post("/v1/audio/transcriptions", data={"model": MODEL}, files={"file": ("a.wav", too_big)})
    assert refused.status_code == 413


async def test_an_audio_upload_without_model_is_routed_like_any_request_without_one(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")})
    assert response.status_code == 200


async def test_models_and_status_say_which_runner_and_tool_parser_each_model_has(
    client: httpx.AsyncClient, replicas: list[Replica]
) -> None:
    entry = next(m for m in (await client.get("/v1/models")).json()["data"] if m["id"] == MODEL)
    assert entry["runner"] == "generate" and "tool_call_parser" in entry
    status = (await client.get("/v1/status")).json()
    assert {r["runner"] for r in status["replicas"]} == {"generate"}


async def test_serve_with_a_pooling_runner_starts_a_pooling_engine(make_settings: MakeSettings, tmp_path: Path) -> None:
    gateway = Gateway(make_settings(), resolver=FakeResolver(paths={"o/embed": str(tmp_path)}))
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        gateway.lifecycle.load = lambda model: None  # type: ignore[method-assign,assignment,return-value]
        body = {"model": "o/embed", "runner": "pooling", "convert": "embed"}
        assert (await http.post("/v1/serve", json=body)).status_code == 202
    spec = gateway.supervisor.wants["o/embed"].spec
    assert spec.runner == "pooling" and spec.command(1)[spec.command(1).index("--convert") + 1] == "embed"
