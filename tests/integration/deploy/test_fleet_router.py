"""The fleet's data plane on loopback: vllm-router in front of two engine-only vLLM servers.

What deploy/k8s runs, without a cluster: each engine is vLLM's OpenAI server alone (no gateway),
serving the model under its repo id and checking the API key (``VLLM_API_KEY``); vllm-router gets
the engines' URLs (Kubernetes hands it the pods instead) with the policy and circuit breaker of the
manifests. Checked:
requests are answered and spread over both engines, the key passes through the router to the
engines, ``llf chat`` pointed at the router answers, and a killed engine leaves the router
answering from the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.engine import VllmEngine
from tests.support.router import Router, start_router

MODEL = "llf-test/fleet-tiny"
KEY = "fleet-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Fleet:
    def __init__(self, engines: list[VllmEngine], router_url: str) -> None:
        self.engines = engines
        self.router_url = router_url

    def chat(self, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 4}
        return httpx.post(
            f"{self.router_url}/v1/chat/completions",
            json=body,
            headers=AUTH if headers is None else headers,
            timeout=120,
        )


def served_requests(engine: VllmEngine) -> float:
    """Finished requests according to the engine's own metrics (``vllm:request_success_total``)."""
    text = httpx.get(f"http://127.0.0.1:{engine.port}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success_total{")
    )


@pytest.fixture(scope="module")
def fleet(engine_python: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("fleet")
    engines = [
        VllmEngine(
            engine_python, tiny_model_dir, workdir / f"engine-{i}.log",
            extra_args=["--served-model-name", MODEL, "--disable-uvicorn-access-log", "--max-model-len", "512"],
            env={"VLLM_API_KEY": KEY, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        )
        for i in range(2)
    ]  # fmt: skip
    router: Router | None = None
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda e: e.start(timeout=600), engines))
        router = start_router(
            [f"http://127.0.0.1:{e.port}" for e in engines], "cache_aware",
            "--health-check-interval-secs", "2", "--cb-failure-threshold", "1", "--api-key", KEY,
            log=workdir / "router.log",
        )  # fmt: skip
        yield Fleet(engines, router.url)
    finally:
        if router is not None:
            router.stop()
        for engine in engines:
            engine.stop()


def test_twenty_chats_through_the_router_are_answered_by_both_engines(fleet: Fleet) -> None:
    before = [served_requests(e) for e in fleet.engines]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda i: fleet.chat(f"question {i} {uuid.uuid4().hex}"), range(20)))
    assert [r.status_code for r in replies] == [200] * 20, [r.text for r in replies if r.status_code != 200]
    assert all(r.json()["model"] == MODEL for r in replies)
    served = [served_requests(e) - b for e, b in zip(fleet.engines, before, strict=True)]
    assert sum(served) == 20 and min(served) > 0, f"requests per engine: {served}"


def test_the_key_passes_through_the_router_and_the_engines_check_it(fleet: Fleet) -> None:
    assert fleet.chat("hi", headers={}).status_code == 401
    assert fleet.chat("hi", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert fleet.chat("hi").status_code == 200


def test_llf_chat_pointed_at_the_router_answers(fleet: Fleet, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLF_")}
    env.update(LLF_INFERENCE_URL=fleet.router_url, LLF_API_KEY=KEY, LLF_HOME=str(tmp_path), NO_COLOR="1")
    llf = Path(sys.executable).parent / "llf"
    done = subprocess.run(
        [str(llf), "chat", "--max-tokens", "8", "hi"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "llf chat printed no answer"
    status = subprocess.run(
        [str(llf), "status"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert status.returncode != 0 and "the cluster decides" in status.stderr, status.stderr


def test_a_killed_engine_leaves_the_router_answering_from_the_other(fleet: Fleet) -> None:
    survivor = fleet.engines[1]
    fleet.engines[0].stop()
    before = served_requests(survivor)
    replies = [fleet.chat(f"after the kill {i} {uuid.uuid4().hex}") for i in range(10)]
    assert [r.status_code for r in replies] == [200] * 10, [r.text for r in replies if r.status_code != 200]
    assert served_requests(survivor) - before == 10
