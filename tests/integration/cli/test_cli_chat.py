"""``llf chat`` / ``serve`` / ``status`` against the real stack: registry + worker, gateway + vLLM CPU engine.

One stack for the module (API key on, like a shared install) and two engine starts in all: the
first-run test pulls and serves the tiny model, the REPL test's ``/model`` adds a second one (the
gateway loads it on the first question, beside the first). Tests
run in file order and build on each other: the first one needs the empty model store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.integration.cli.conftest import Llf, fresh_redis
from tests.support.gateway import GatewayProcess
from tests.support.hub import HubStandIn
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryStack

TINY = "llf-test/tiny-llama"
TINY_B = "llf-test/cli-chat-b"
API_KEY = "cli-integration-key"
ENGINE_WAIT = 900


@pytest.fixture(scope="module")
def llf(
    redis_server: RedisServer,
    hub: HubStandIn,
    engine_python: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Llf]:
    """Registry and gateway knowing each other, an empty model store, nothing served."""
    assert hub.url is not None
    hub.add_tiny_model(TINY_B, seed=1)
    workdir = tmp_path_factory.mktemp("cli-stack")
    gateway = GatewayProcess(workdir / "gateway", engine_python=engine_python, api_key=API_KEY,
                             env={"LLF_INFERENCE_RETRY_AFTER_S": "1"})  # fmt: skip
    registry = RegistryStack(workdir / "registry", redis_url=fresh_redis(redis_server), hf_endpoint=hub.url,
                             api_key=API_KEY, inference_url=gateway.url)  # fmt: skip
    try:
        registry.start_api()
        registry.start_worker()
        gateway.env["LLF_MODELS_URL"] = registry.url
        gateway.start()
        yield Llf(workdir / "cli-home", registry.url, gateway.url, {"LLF_API_KEY": API_KEY})
    finally:
        gateway.kill()
        registry.stop()


def test_first_run_pulls_serves_and_answers(llf: Llf, hub: HubStandIn) -> None:
    assert llf.json("models", "ls") == []
    # The weights stay held after their first bytes until a "downloading" line is printed.
    done = llf.held_until(hub, TINY, "model.safetensors", "chat", "hi", "--max-tokens", "8", "--stats",
                          timeout=ENGINE_WAIT, LLF_DEFAULT_MODEL=TINY)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{TINY} is not downloaded yet; pulling it first" in done.stderr
    assert any(line.startswith("downloading") for line in done.stderr.splitlines()), done.stderr
    assert f"loading {TINY}" in done.stderr
    assert done.stdout.strip(), "no answer was printed"
    assert re.search(r"^\d+ tokens · [0-9.]+ tokens/s · first token [0-9.]+ s", done.stderr, re.M), done.stderr
    assert "\x1b[" not in done.stdout + done.stderr


def test_models_ls_json_lists_the_served_model(llf: Llf) -> None:
    (model,) = llf.json("models", "ls")
    assert model["name"] == TINY and model["verified"] is True


def test_one_shot_chat_streams_an_answer_from_the_served_model(llf: Llf) -> None:
    done = llf("chat", "hi", "--max-tokens", "8")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stderr == ""


def test_piped_stdin_is_part_of_the_question(llf: Llf) -> None:
    done = llf("chat", "summarise", "--max-tokens", "4", input="some text\n")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr


def test_status_shows_the_served_model(llf: Llf) -> None:
    status = llf.json("status")
    assert status["state"] == "ready" and status["models"] == [TINY]
    human = llf("status")
    assert human.returncode == 0 and "registry" in human.stdout and "REPLICA" in human.stdout


def test_serve_of_the_served_model_is_quick_and_json(llf: Llf) -> None:
    status = llf.json("serve", TINY)
    assert TINY in status["models"]


def test_a_wrong_api_key_is_the_services_detail(llf: Llf) -> None:
    done = llf("models", "ls", LLF_API_KEY="wrong")
    assert done.returncode == 1 and "API key" in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_repl_on_a_terminal(llf: Llf) -> None:
    child = llf.spawn("chat")
    try:
        child.expect(f"chatting with {TINY}", timeout=60)
        child.expect(">>> ")
        child.sendline("/help")
        child.expect("/bye")
        child.expect(">>> ")
        child.sendline("/set max_tokens 8")
        child.expect("max_tokens = 8")
        child.sendline("hello")
        child.expect(r"\d+ tokens · ")
        child.expect(">>> ")
        child.sendline("/clear")
        child.expect("conversation cleared")
        child.expect(">>> ")
        child.sendline("/nope")
        child.expect("unknown command /nope")
        child.sendline(f"/model {TINY_B}")
        child.expect(f"{TINY_B} is not downloaded yet")
        child.expect(f"now chatting with {TINY_B}", timeout=ENGINE_WAIT)
        child.sendline("/info")
        child.expect("context length  2048")
        child.sendline("again")  # the gateway loads the model now, before answering
        child.expect(f"loading {TINY_B}")
        child.expect(r"\d+ tokens · ", timeout=ENGINE_WAIT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert TINY_B in llf.json("status")["models"]  # added beside the first model, not swapped for it
