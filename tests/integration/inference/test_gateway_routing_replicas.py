"""Affinity routing, response pinning, every vLLM endpoint and tools through a real gateway over real vLLM CPU engines.

One gateway for the module with two replicas of the tiny model (engine starts are the cost:
~25 s+ each on 2 cores); the last test swaps them for one pooling engine of the other tiny
model. Where a request landed is read from each engine's own counters
(``/metrics/engine/{replica}``: ``vllm:request_success``, ``vllm:prefix_cache_hits``), and
which replica a session belongs to from the ring the gateway uses (``routing/affinity.py``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from llf_inference.routing.affinity import AffinityPolicy
from llf_inference.routing.keys import routing_key

from tests.integration.inference.conftest import API_KEY, MODEL_A, MODEL_B
from tests.support.gateway import GatewayProcess
from tests.support.net import wait_for
from tests.support.registry import RegistryStack

SYSTEM = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and "
    "associated documentation files, to deal in the Software without restriction, including without "
    "limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies. "
) * 6
"""A system prompt longer than a few KV-cache blocks, shared by every turn of a conversation."""


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, inference_registry: RegistryStack, engine_python: Path
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway-routing"),
        models_url=inference_registry.url,
        engine_python=engine_python,
        api_key=API_KEY,
        env={"LLF_INFERENCE_RETRY_AFTER_S": "1", "LLF_INFERENCE_ROUTING": "affinity"},
    )
    try:
        process.start()
        status = process.serve(MODEL_A, replicas=2)
        assert len([r for r in status["replicas"] if r["model"] == MODEL_A]) == 2, status
        yield process
    finally:
        process.kill()


def replica_ids(gateway: GatewayProcess, model: str = MODEL_A) -> list[str]:
    return [r["id"] for r in gateway.status()["replicas"] if r["model"] == model and r["state"] == "ready"]


def home(ids: list[str], session: str) -> str:
    """The replica the gateway's ring gives ``session`` while every replica is within the bound."""
    return AffinityPolicy().ring(ids).walk("session:" + session)[0]


def session_on(ids: list[str], replica: str, prefix: str) -> str:
    return next(s for s in (f"{prefix}-{i}" for i in range(1000)) if home(ids, s) == replica)


def counter(gateway: GatewayProcess, replica: str, name: str) -> float:
    with gateway.client() as http:
        text = http.get(f"/metrics/engine/{replica}").text
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}_total\{{[^}}]*\}} (\S+)$", text, re.M))


def served(gateway: GatewayProcess, ids: list[str]) -> dict[str, float]:
    return {rid: counter(gateway, rid, "vllm:request_success") for rid in ids}


def decisions(gateway: GatewayProcess, decision: str) -> float:
    with gateway.client() as http:
        text = http.get("/metrics").text
    pattern = rf'^llf_gateway_routing_decisions_total\{{decision="{decision}",model="{re.escape(MODEL_A)}"\}} (\S+)$'
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


def chat(http: httpx.Client, session: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"model": MODEL_A, "messages": messages, "max_tokens": 8, "temperature": 0, **extra}
    return http.post("/v1/chat/completions", json=body, headers={"X-Session-ID": session})


# ------------------------------------------------------------------ affinity
def test_the_turns_of_one_session_land_on_one_replica_whose_prefix_cache_hits_rise(pair: GatewayProcess) -> None:
    ids = replica_ids(pair)
    session = "conversation-1"
    mine = home(ids, session)
    before = served(pair, ids)
    hits_before = counter(pair, mine, "vllm:prefix_cache_hits")
    hits_before_first_turn_done = None
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    with pair.client(timeout=300) as http:
        for turn in range(4):
            messages.append({"role": "user", "content": f"Question number {turn}: what does this permit?"})
            answer = chat(http, session, messages)
            assert answer.status_code == 200, answer.text
            messages.append({"role": "assistant", "content": answer.json()["choices"][0]["message"]["content"]})
            if turn == 0:
                hits_before_first_turn_done = counter(pair, mine, "vllm:prefix_cache_hits")
    after = served(pair, ids)
    assert {rid: after[rid] - before[rid] for rid in ids} == {rid: 4.0 if rid == mine else 0.0 for rid in ids}
    hits = counter(pair, mine, "vllm:prefix_cache_hits")
    assert hits_before_first_turn_done is not None and hits > hits_before_first_turn_done >= hits_before, (
        hits_before,
        hits_before_first_turn_done,
        hits,
    )
    assert decisions(pair, "affinity_hit") >= 4


def test_two_sessions_spread_over_both_replicas(pair: GatewayProcess) -> None:
    ids = replica_ids(pair)
    before = served(pair, ids)
    with pair.client(timeout=300) as http:
        for session in (session_on(ids, ids[0], "spread"), session_on(ids, ids[1], "spread")):
            assert chat(http, session, [{"role": "user", "content": "hello"}]).status_code == 200
    after = served(pair, ids)
    assert all(after[rid] - before[rid] == 1.0 for rid in ids), (before, after)


def test_a_new_session_spills_to_the_other_replica_when_its_own_is_busy_past_the_bound(pair: GatewayProcess) -> None:
    ids = replica_ids(pair)
    busy, other = ids
    hog = session_on(ids, busy, "hog")
    newcomer = session_on(ids, busy, "newcomer")
    streams: list[threading.Thread] = []
    started: list[int] = []
    ended: list[str] = []  # how each long stream ended, for the failure message

    def long_stream() -> None:
        body = {"model": MODEL_A, "prompt": "hello", "max_tokens": 1900, "ignore_eos": True, "stream": True}
        try:
            with (
                pair.client(timeout=600) as http,
                http.stream("POST", "/v1/completions", json=body, headers={"X-Session-ID": hog}) as response,
            ):
                for _ in response.iter_raw():
                    started.append(1)
                ended.append(f"HTTP {response.status_code}")
        except Exception as exc:
            ended.append(f"{type(exc).__name__}: {exc}")
            raise

    def in_flight() -> dict[str, int]:
        return {r["id"]: r["in_flight"] for r in pair.status()["replicas"]}

    def running(n: int) -> bool:
        return in_flight()[busy] == n and len(started) >= n

    def described(n: int) -> str:
        replicas = [(r["id"], r["state"]) for r in pair.status()["replicas"]]
        return (f"{n} stream(s) of session {hog} running on {busy}; at the deadline in flight: {in_flight()}, "
                f"{len(started)} chunks, streams ended: {ended}, replicas: {replicas}")  # fmt: skip

    # earlier tests' requests must be over: a leftover one would move the bound
    wait_for(lambda: not any(in_flight().values()), 120, "the replicas to finish earlier tests' requests")
    spills = decisions(pair, "spill")
    before = served(pair, ids)
    try:
        for count in (1, 2):  # two in flight on `busy`, none on `other`: a third is past ceil(1.25 * 3 / 2) = 2
            streams.append(threading.Thread(target=long_stream))
            streams[-1].start()
            wait_for(partial(running, count), 120, partial(described, count))
        with pair.client(timeout=300) as http:
            assert chat(http, newcomer, [{"role": "user", "content": "hello"}]).status_code == 200
        assert decisions(pair, "spill") == spills + 1
        # the engine counts a finished request in its metrics a moment after the answer went out
        wait_for(lambda: served(pair, ids)[other] - before[other] == 1.0, 30, f"{other} to count the spilled request")
    finally:
        for thread in streams:
            thread.join(600)


# ------------------------------------------------------------------ /v1/responses
def inputs_on(ids: list[str], replica: str, prefix: str) -> Iterator[str]:
    """Responses inputs whose own key (their start) the ring gives ``replica``."""
    ring = AffinityPolicy().ring(ids)
    texts = (f"{prefix} {i}: what does this permit?" for i in range(1000))
    return (text for text in texts if ring.walk(routing_key({"input": text}) or "")[0] == replica)


def respond(text: str, previous: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"model": MODEL_A, "input": text, "max_output_tokens": 8, "temperature": 0, **extra}
    return body if previous is None else {**body, "previous_response_id": previous}


def test_previous_response_id_goes_to_the_replica_that_holds_the_response(pair: GatewayProcess) -> None:
    ids = replica_ids(pair)
    holder, other = ids
    elsewhere = inputs_on(ids, other, "Follow-up")  # without the pin, the ring would send these to `other`
    before = served(pair, ids)
    pinned = decisions(pair, "pinned")
    with pair.client(timeout=300) as http:
        first = http.post("/v1/responses", json=respond(next(inputs_on(ids, holder, "Opening"))))
        assert first.status_code == 200, first.text
        with http.stream("POST", "/v1/responses", json=respond(next(elsewhere), first.json()["id"], stream=True)) as s:
            assert s.status_code == 200, s.read()
            events = b"".join(s.iter_raw()).decode()  # the gateway reads the new id from the first events
        assert "response.completed" in events, events[-500:]
        streamed = re.search(r'"id":\s*"(resp_[^"]+)"', events)
        assert streamed, events[:500]
        third = http.post("/v1/responses", json=respond(next(elsewhere), streamed.group(1)))
        assert third.status_code == 200, third.text  # not the engine's 404: the one engine that stored it answered
        assert third.json()["previous_response_id"] == streamed.group(1)
        unknown = http.post("/v1/responses", json=respond(next(elsewhere), "resp_" + "0" * 32))
    assert unknown.status_code == 404 and "not found" in unknown.text, unknown.text  # what any other engine says
    assert decisions(pair, "pinned") == pinned + 2
    wait_for(  # the engine counts a finished request in its metrics a moment after the answer
        lambda: {rid: served(pair, ids)[rid] - before[rid] for rid in ids} == {holder: 3.0, other: 0.0},
        30,
        f"{holder} to count all three turns and {other} none; served before: {before}",
    )


# ------------------------------------------------------------------ endpoints and fields
def test_tokenize_and_detokenize_round_trip_through_the_gateway(pair: GatewayProcess) -> None:
    text = "Permission is hereby granted"
    with pair.client(timeout=120) as http:
        tokens = http.post("/tokenize", json={"model": MODEL_A, "prompt": text, "add_special_tokens": False})
        assert tokens.status_code == 200, tokens.text
        back = http.post("/detokenize", json={"model": MODEL_A, "tokens": tokens.json()["tokens"]})
    assert back.status_code == 200 and back.json()["prompt"] == text


def test_a_json_schema_response_format_returns_json_that_validates(pair: GatewayProcess) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 12}, "count": {"type": "integer"}},
        "required": ["answer", "count"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    with pair.client(timeout=300) as http:
        answer = chat(
            http, "json", [{"role": "user", "content": "reply"}], max_tokens=120, response_format=response_format
        )
    assert answer.status_code == 200, answer.text
    jsonschema.validate(json.loads(answer.json()["choices"][0]["message"]["content"]), schema)


def test_unknown_chat_fields_reach_the_engine(pair: GatewayProcess) -> None:
    with pair.client(timeout=300) as http:
        choice = chat(http, "fields", [{"role": "user", "content": "hi"}], structured_outputs={"choice": ["yes", "no"]})
        assert choice.status_code == 200, choice.text
        assert choice.json()["choices"][0]["message"]["content"] in ("yes", "no")  # the engine applied the field
        wrong = chat(http, "fields", [{"role": "user", "content": "hi"}], ignore_eos="sometimes")
    assert wrong.status_code == 400 and "ignore_eos" in wrong.text  # the engine's own validation error


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "strict": True,  # OpenAI's switch for arguments that follow the schema (vLLM: structural tags)
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Rome"]},
                "days": {"type": "integer", "enum": [1, 3, 7]},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}


def test_a_named_tool_choice_returns_tool_calls_whose_arguments_fit_the_schema(pair: GatewayProcess) -> None:
    status = pair.status()
    assert {r["tool_call_parser"] for r in status["replicas"] if r["model"] == MODEL_A} == {"hermes"}
    named = {"type": "function", "function": {"name": "get_weather"}}
    with pair.client(timeout=300) as http:
        answer = chat(
            http, "tools", [{"role": "user", "content": "weather?"}], max_tokens=200, tools=[WEATHER], tool_choice=named
        )
        assert answer.status_code == 200, answer.text
        calls = answer.json()["choices"][0]["message"].get("tool_calls")
        assert calls and calls[0]["function"]["name"] == "get_weather", answer.text
        jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), WEATHER["function"]["parameters"])  # type: ignore[index]
        auto = chat(http, "tools", [{"role": "user", "content": "weather?"}], tools=[WEATHER], tool_choice="auto")
    assert auto.status_code == 200, auto.text


# ------------------------------------------------------------------ pooling (last: replaces the pair)
def test_the_openai_client_gets_embeddings_from_a_tiny_model_served_as_a_pooling_model(pair: GatewayProcess) -> None:
    import openai

    with pair.client() as http:
        assert http.delete(f"/v1/serve/{MODEL_A}").status_code == 200
    status = pair.serve(MODEL_B, runner="pooling", convert="embed")
    assert [r["runner"] for r in status["replicas"] if r["model"] == MODEL_B] == ["pooling"]
    client = openai.OpenAI(base_url=pair.openai_url, api_key=API_KEY, timeout=300)
    result = client.embeddings.create(model=MODEL_B, input=["hello", "world"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 8
    with pair.client(timeout=120) as http:  # a generation endpoint it does not serve: the engine's own answer
        refused = http.post(
            "/v1/chat/completions", json={"model": MODEL_B, "messages": [{"role": "user", "content": "x"}]}
        )
    assert refused.status_code == 404 and refused.json() == {"detail": "Not Found"}  # vLLM's own 404, not a 500
