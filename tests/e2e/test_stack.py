"""The happy path through the containers: pull -> verified -> served -> answers (CLI and OpenAI client)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.conftest import TINY, Stack, hub_sha256, model

pytestmark = pytest.mark.timeout(1800)  # the first test also builds and starts the stack


def test_the_pulled_model_is_verified_against_the_hub(
    served: str, registry: httpx.Client, hub_api: httpx.Client
) -> None:
    info = model(registry, served)
    assert info["verified"] is True
    assert info["served"] is True
    assert info["path"].startswith("/data/models/")
    expected = hub_sha256(hub_api, served)
    assert expected, "the tiny model has LFS files"
    got = {f["path"]: f["sha256"] for f in info["files"] if f["path"] in expected}
    assert got == expected


def test_the_cli_container_streams_a_chat_answer(stack: Stack, served: str) -> None:
    chat = ("chat", "--max-tokens", "24", "--stats", "hi")
    done = stack.compose("run", "--rm", "--no-deps", "-T", "cli", *chat, timeout=300)
    assert done.stdout.strip(), f"no answer; stderr: {done.stderr}"
    assert "tok" in done.stderr  # --stats: tokens, tokens/s and time to first token of the stream


def test_the_openai_client_streams_through_the_published_gateway_port(gateway: httpx.Client, served: str) -> None:
    client = openai.OpenAI(base_url=str(gateway.base_url).rstrip("/") + "/v1", api_key="unused", timeout=120)
    stream = client.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "hi"}], max_tokens=24, stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2, pieces
    assert "".join(pieces).strip()


def test_only_loopback_ports_are_published_and_redis_is_not(stack: Stack) -> None:
    for service in ("models", "inference", "redis", "worker"):
        for container in stack.container_ids(service):
            bindings = stack.inspect(container)["NetworkSettings"]["Ports"] or {}
            published = [b for bs in bindings.values() if bs for b in bs]
            if service in ("redis", "worker"):
                assert published == [], (service, published)
            else:
                assert published and all(b["HostIp"] == "127.0.0.1" for b in published), (service, published)


def test_services_run_as_a_non_root_user_and_log_json(stack: Stack) -> None:
    for service in ("models", "worker", "inference"):
        assert stack.compose("exec", "-T", service, "id", "-u").stdout.strip() != "0"
    line = next(line for line in stack.logs_tail("models").splitlines() if "{" in line)
    assert '"level"' in line[line.index("{") :]
