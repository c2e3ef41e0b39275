"""The Compose ``fleet`` profile end to end: vllm-router in front of two engine-only containers.

deploy/compose.fleet.yml is the Kubernetes topology on one machine (deploy/k8s): a one-shot
``llf pull`` asks the registry for the model and hands its snapshot path to two containers of the
CPU inference image running only vLLM's server, and ``llf/router`` balances over them. Here the
registry pulls from the hub stand-in on the stack's network (compose.e2e.yml), under a project of
its own (the package's gateway stack is not started for this module). Checked: the fleet serves;
20 chats through the router are answered and both engines served some (their own ``/metrics``);
``llf chat`` pointed at the router answers; a killed engine leaves the router answering from the
other.

The images come from ``make images`` (this module builds nothing: two vLLM engines and a build
at once do not fit a small machine); a missing one skips the module with the command to run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import COMPOSE_FILES, ROOT, TINY, Stack, buildenv, docker_unavailable, stack_env
from tests.support.net import wait_for

ENGINES = ("engine-1", "engine-2")
IMAGES = ("llf/models:latest", "llf/cli:latest", "llf/inference-cpu:latest", "llf/router:latest")
# The engine's metrics, read inside its container (the engines publish no port).
METRICS = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/metrics', timeout=10).read().decode())"


def served_requests(stack: Stack, engine: str) -> float:
    """Finished requests according to the engine's own metrics (``vllm:request_success_total``)."""
    text = stack.compose("exec", "-T", engine, "python", "-c", METRICS, timeout=60).stdout
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success_total{")
    )


def chat(url: str, text: str) -> httpx.Response:
    body = {"model": TINY, "messages": [{"role": "user", "content": text}], "max_tokens": 4}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=180)


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Stack, str]]:
    """The fleet profile up (router started last, once both engines are healthy); the router's URL."""
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    missing = [image for image in IMAGES if not buildenv.image_exists(image)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not built (make images)")
    files = [*COMPOSE_FILES, "deploy/compose.fleet.yml"]
    if not buildenv.image_exists("redis:7"):
        files.insert(1, "deploy/compose.redis-local.yml")
    env = stack_env()
    env.update(
        COMPOSE_PROFILES="fleet",
        LLF_FLEET_MODEL=TINY,
        LLF_FLEET_PORT="",  # Docker picks the host port (on 127.0.0.1)
        LLF_FLEET_ENGINE_ARGS="--max-model-len 512 --enforce-eager",
    )
    project = f"llf-e2e-fleet-{uuid.uuid4().hex[:8]}"
    # No ``services``: stop() then takes down the whole project (with the profile from the env).
    stack = Stack(context=str(ROOT), compose_file_name=files, project=project, env=env)
    started = time.monotonic()
    try:
        url = start(stack)
        print(f"\ne2e: fleet {project} up in {time.monotonic() - started:.0f} s", file=sys.stderr)
        yield stack, url
    finally:
        if os.environ.get("LLF_E2E_KEEP") == "1":
            print(f"e2e: keeping fleet {project}", file=sys.stderr)
        else:
            stack.stop()


def start(stack: Stack) -> str:
    """Start the router and what it depends on; its URL once it is ready, else the services' log tails."""
    try:
        # up waits for each depends_on condition: the pull completed, then both engines healthy.
        stack.compose("up", "-d", "--pull", "never", "router", timeout=1500)
        url = stack.url("router", 8000)

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readiness", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 120, lambda: f"vllm-router's /readiness: {stack.logs_tail('router')}", interval=1)
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        logs = "\n".join(f"--- {s}\n{stack.logs_tail(s, 30)}" for s in ("fleet-pull", *ENGINES, "router"))
        raise AssertionError(f"fleet did not start: {exc}\n{logs}") from exc
    return url


def test_twenty_chats_through_the_router_are_answered_by_both_engines(fleet: tuple[Stack, str]) -> None:
    stack, url = fleet
    before = [served_requests(stack, e) for e in ENGINES]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda i: chat(url, f"question {i} {uuid.uuid4().hex}"), range(20)))
    assert [r.status_code for r in replies] == [200] * 20, [r.text for r in replies if r.status_code != 200]
    assert all(r.json()["model"] == TINY for r in replies)
    served = [served_requests(stack, e) - b for e, b in zip(ENGINES, before, strict=True)]
    assert sum(served) == 20 and min(served) > 0, f"requests per engine: {served}"


def test_llf_chat_pointed_at_the_router_answers(fleet: tuple[Stack, str], tmp_path: Path) -> None:
    _, url = fleet
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLF_")}
    env.update(LLF_INFERENCE_URL=url, LLF_HOME=str(tmp_path), NO_COLOR="1")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "llf"), "chat", "--max-tokens", "8", "hi"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "llf chat printed no answer"


def test_a_killed_engine_leaves_the_router_answering_from_the_other(fleet: tuple[Stack, str]) -> None:
    stack, url = fleet
    killed, survivor = ENGINES
    stack.compose("kill", killed)
    before = served_requests(stack, survivor)
    replies = [chat(url, f"after the kill {i} {uuid.uuid4().hex}") for i in range(10)]
    assert [r.status_code for r in replies] == [200] * 10, [r.text for r in replies if r.status_code != 200]
    assert served_requests(stack, survivor) - before == 10
