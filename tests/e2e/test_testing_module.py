"""llf-testing end to end: a user's project against the CPU image, a baked image, a killed run.

Each test starts real containers of ``llf/inference-cpu`` (built by ``make images``); no test here
uses the package's Compose stack fixture. The bake test brings its own ``LlfStack`` with the hub
stand-in (tests/e2e/compose.e2e.yml) and a model volume of its own, so its pull really downloads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import docker_unavailable

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "llf/inference-cpu"

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(2400)


def _skip_reason() -> str | None:
    reason = docker_unavailable()
    if reason:
        return reason
    listed = subprocess.run(["docker", "images", "-q", IMAGE], capture_output=True, text=True, check=False)
    return None if listed.stdout.strip() else f"{IMAGE} not built (make images)"


@pytest.fixture(scope="module", autouse=True)
def _needs_images() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


def containers_of_pid(pid: int) -> list[str]:
    """The gateway containers a run (by pid) created: the one-shot helpers come and go by themselves."""
    labels = [f"label=org.llf.testing.pid={pid}", "label=org.llf.testing.role=gateway"]
    filters = [arg for label in labels for arg in ("--filter", label)]
    done = subprocess.run(["docker", "ps", "-aq", *filters], capture_output=True, text=True, check=True)
    return done.stdout.split()


KILLED_RUN = """
from llf_testing import LlfContainer
LlfContainer(model="demo", startup_timeout=1800).start()
"""


@pytest.fixture(scope="module")
def killed_run() -> Iterator[list[str]]:
    """A run SIGKILLed while its container starts: no ``finally`` ran, its container is left behind."""
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN], cwd=ROOT)
    deadline = time.monotonic() + 180
    try:
        while not containers_of_pid(child.pid):
            assert child.poll() is None, f"the run to be killed exited by itself ({child.returncode})"
            assert time.monotonic() < deadline, "the run to be killed created no container within 180 s"
            time.sleep(0.5)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    left = containers_of_pid(child.pid)
    assert left, "the killed run's container should still exist before the next run starts"
    try:
        yield left
    finally:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)


USES_FIXTURE = """
def test_chat_through_the_llf_openai_fixture(llf, llf_openai):
    reply = llf_openai.chat.completions.create(
        model=llf.model, messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert reply.choices[0].message.content is not None
    assert llf.model in [m.id for m in llf_openai.models.list().data]
"""

USES_CONTAINER = """
import json

import jsonschema
from llf_testing import LlfContainer

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}


def test_llf_container_answers_a_chat_and_a_json_schema_request():
    with LlfContainer(model="demo") as llf:
        client = llf.openai_client()
        chat = client.chat.completions.create(
            model=llf.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert chat.choices[0].message.content is not None
        structured = client.chat.completions.create(
            model=llf.model,
            messages=[{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
            max_tokens=64,
            temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}},
        )
        text = structured.choices[0].message.content
        jsonschema.validate(json.loads(text), SCHEMA)
        print("JSON-SCHEMA-ANSWER", text)
"""


def test_a_user_project_passes_with_the_llf_openai_fixture_and_with_llf_container(
    pytester: pytest.Pytester, killed_run: list[str]
) -> None:
    pytester.makepyfile(test_fixture=USES_FIXTURE, test_container=USES_CONTAINER)
    result = pytester.runpytest_subprocess("-p", "llf_testing", "--llf-model", "demo", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*JSON-SCHEMA-ANSWER*"])


def test_the_next_runs_start_removed_what_the_killed_run_left(killed_run: list[str]) -> None:
    done = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, check=True)
    still = [c for c in killed_run if any(line.startswith(c) for line in done.stdout.split())]
    assert still == [], f"containers of the killed run still exist after the next run started: {still}"


def test_a_baked_image_answers_with_no_download(tmp_path: Path) -> None:
    from llf_testing import LlfContainer, LlfStack

    volume = f"llf-testing-e2e-{uuid.uuid4().hex[:8]}"  # empty: the bake's pull really downloads
    baked = ""
    with LlfStack(compose_dir=ROOT, files=["tests/e2e/compose.e2e.yml"], models_volume=volume) as stack:
        try:
            hub = stack.url("hub", 8080)
            started = time.monotonic()
            baked = LlfContainer.bake("e2e/tiny", stack=stack)
            print(f"\nbake: {time.monotonic() - started:.1f} s -> {baked}", file=sys.stderr)
            before = httpx.get(f"{hub}/_stand_in/counters", timeout=10).json()
            assert before["bytes_served"] > 0, f"the bake's pull downloaded nothing from the hub: {before}"
            # On the hub's network with HF_ENDPOINT set: it *could* download, and must not.
            started = time.monotonic()
            with LlfContainer(image=baked, network=stack.network, env={"HF_ENDPOINT": "http://hub:8080"}) as llf:
                first_token = time.monotonic() - started
                assert llf.model == "e2e/tiny"
                reply = llf.openai_client().chat.completions.create(
                    model=llf.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
                )
                assert reply.choices[0].message.content is not None
            after = httpx.get(f"{hub}/_stand_in/counters", timeout=10).json()
            assert after == before, f"the baked image's start downloaded from the hub: {before} -> {after}"
            print(f"baked start -> first token: {first_token:.1f} s", file=sys.stderr)
        finally:
            if baked:
                subprocess.run(["docker", "rmi", "-f", baked], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
    assert os.environ.get("TESTCONTAINERS_RYUK_DISABLED") == "true"
