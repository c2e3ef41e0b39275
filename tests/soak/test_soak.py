"""``make soak``: the local-mode stack under sustained load, bounded in time, loopback only.

One ``make up`` (local mode: supervisord, redis-server, registry API + worker, gateway + a real
vLLM CPU engine on the tiny model from the hub stand-in). Then, at the same time:
``LLF_SOAK_STREAMS`` (64) chat streams in a closed loop for ``LLF_SOAK_SECONDS`` (60) and
``LLF_SOAK_PULLS`` (10) pulls of distinct repos, taken by the stack's worker and one more that is
paused (SIGSTOP, worker and work horse) mid-download past the liveness TTL, then resumed: its
pull is taken over while it sleeps, and what it writes once awake must not reach the store. The
hub ignores ``Range`` for these files, so a takeover starts over at byte 0. What must hold: no
failed stream (HTTP error, error event, or a stream without ``[DONE]``), every pull job finished
(none lost), every file of every pulled repo has the hub's sha256, and the gateway's and
registry's resident memory grew by at most 10 % (measured after a warm-up, and again after the
load). The numbers are printed and written to ``bench/results/soak.json`` (the README's
benchmark section shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from httpx_sse import EventSource
from llf_common.wire import TERMINAL_JOB_STATES
from supervisor.options import ServerOptions

from scripts.up.local import Supervisor
from tests.support.hub import HubStandIn
from tests.support.net import free_port, wait_for
from tests.support.registry import ManagedProcess

REPO = Path(__file__).resolve().parents[2]
MODEL = "llf-soak/tiny"
STREAMS = int(os.environ.get("LLF_SOAK_STREAMS", "64"))
SECONDS = float(os.environ.get("LLF_SOAK_SECONDS", "60"))
PULLS = int(os.environ.get("LLF_SOAK_PULLS", "10"))
PULL_EXTRA_BYTES = 8 << 20
HELD_AT = 4 << 20  # each pull's first download of extra.bin parks here until the worker is paused
WORKER_ALIVE_TTL_S = 5.0  # llf_models settings: worker_alive_ttl_s
MAX_GROWTH = 0.10
DROPPED = ("LLF_DEFAULT_MODEL", "LLF_CONFIG", "LLF_API_KEY", "HF_TOKEN", "LLF_RUN_DIR", "LLF_MODELS_DIR")

pytestmark = pytest.mark.timeout(1800)


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    models_url: str
    inference_url: str

    def up(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scripts.up", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip

    def pids(self) -> dict[str, int]:
        processes = Supervisor.for_run_dir(self.home / "run").processes()
        return {name: int(info["pid"]) for name, info in processes.items() if info.get("pid")}

    def rss(self) -> dict[str, int]:
        """Resident bytes of the gateway (without its engine), the registry API and its worker."""
        found = {}
        for name, pid in self.pids().items():
            if name in ("inference", "models", "worker"):
                with contextlib.suppress(psutil.Error):
                    found[name] = psutil.Process(pid).memory_info().rss
        return found


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStandIn]:
    stand_in = HubStandIn(tmp_path_factory.mktemp("soak-hub"))
    stand_in.add_tiny_model(MODEL)
    for index in range(PULLS):
        repo = f"llf-soak/pull-{index}"
        stand_in.add_tiny_model(repo, seed=100 + index)
        stand_in.add_large_file(repo, "extra.bin", PULL_EXTRA_BYTES, seed=index)
        stand_in.ignore_range(repo, "extra.bin")
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hub: HubStandIn) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("soak-home")
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update(
        LLF_HOME=str(home),
        HOME=str(home / "user"),
        LLF_MODE="local",
        LLF_MODELS_URL=f"http://127.0.0.1:{free_port()}",
        LLF_INFERENCE_URL=f"http://127.0.0.1:{free_port()}",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        HF_ENDPOINT=str(hub.url),
        HF_HUB_DISABLE_XET="1",
        VLLM_CPU_KVCACHE_SPACE="1",
        LLF_UP_SERVE_TIMEOUT="600",
        PATH=os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if ".local/bin" not in p),
    )
    soak = Stack(env, home, env["LLF_MODELS_URL"], env["LLF_INFERENCE_URL"])
    try:
        started = soak.up("--model", MODEL)
        assert started.returncode == 0, f"make up failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
        yield soak
    finally:
        soak.up("--down", timeout=180)


# ---------------------------------------------------------------- load
@dataclass
class Tally:
    requests: int = 0
    tokens: int = 0
    errors: list[str] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)


async def one_stream(http: httpx.AsyncClient, url: str, tally: Tally, max_tokens: int) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about the framework."}],
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    start = time.monotonic()
    done = False
    first: float | None = None
    received = 0
    try:
        async with http.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                tally.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            # An SSE parser, not aiter_lines(): httpx also splits lines at U+2028, U+0085 and the
            # like, which a random-weights model does emit inside its JSON strings.
            async for sse in EventSource(response).aiter_sse():
                received += len(sse.data) + 8
                if sse.data == "[DONE]":
                    done = True
                    continue
                event = json.loads(sse.data)
                if "error" in event:
                    tally.errors.append(f"error event: {event['error']}")
                    return
                if event.get("usage"):
                    tally.tokens += int(event["usage"].get("completion_tokens") or 0)
                elif first is None and event.get("choices"):
                    first = time.monotonic() - start
    except (httpx.HTTPError, ValueError) as exc:
        cause = exc.__cause__ or exc.__context__
        tally.errors.append(f"{type(exc).__name__}: {exc!r} (cause {cause!r}) after {time.monotonic() - start:.1f} s, "
                            f"{received} bytes received, first token {'yes' if first is not None else 'no'}")
        return
    tally.requests += 1
    if first is not None:
        tally.ttft.append(first)
    if not done:
        tally.errors.append("stream ended without [DONE]")


async def chat_load(base: str, streams: int, seconds: float, max_tokens: int = 32) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10), limits=limits) as http:

        async def slot() -> None:
            while time.monotonic() < deadline:
                await one_stream(http, f"{base}/v1/chat/completions", tally, max_tokens)

        await asyncio.gather(*(slot() for _ in range(streams)))
    return tally


def pull_all(base: str, repos: list[str]) -> dict[str, Any]:
    """POST every pull at once, then wait for every job; the jobs' final states by repo."""
    with httpx.Client(base_url=base, timeout=60) as http:
        jobs = {}
        for repo in repos:
            answer = http.post("/v1/pulls", json={"repo": repo})
            assert answer.status_code in (200, 202), answer.text
            jobs[repo] = answer.json().get("job_id")
        states: dict[str, Any] = {}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(states) < len(jobs):
            for repo, job_id in jobs.items():
                if repo in states:
                    continue
                if job_id is None:
                    states[repo] = "present"
                    continue
                info = http.get(f"/v1/jobs/{job_id}").json()
                if info["state"] in TERMINAL_JOB_STATES:
                    states[repo] = info["state"] if info["state"] == "finished" else f"{info['state']}: {info['error']}"
            time.sleep(0.5)
        for repo in jobs:
            states.setdefault(repo, "lost: no final state after 600 s")
        return states


# ---------------------------------------------------------------- the paused worker
def start_extra_worker(stack: Stack) -> ManagedProcess:
    """A second ``llf-models-worker`` with the environment supervisord gives the first (its conf section)."""
    options = ServerOptions()
    options.realize(args=["-c", str(stack.home / "run" / "supervisord.conf")])
    [worker] = [p for g in options.process_group_configs for p in g.process_configs if p.name == "worker"]
    env = {**stack.env, **(worker.environment or {})}
    argv = [str(Path(sys.executable).parent / "llf-models-worker"), "--name", f"soak-paused-{os.getpid()}"]
    return ManagedProcess("soak-paused", argv, env, stack.home / "run" / "logs" / "soak-paused-worker.log", REPO)


def pause_mid_download(worker: ManagedProcess, hub: HubStandIn, repos: list[str]) -> dict[str, Any]:
    """Once ``worker``'s work horse is parked mid-file, SIGSTOP both past the liveness TTL, then SIGCONT."""

    def parked() -> bool:
        busy = bool(psutil.Process(worker.pid).children())
        return busy and any(hub.held(repo, "extra.bin") for repo in repos)

    wait_for(parked, timeout=300, what="the extra worker's work horse downloading a held file")
    group = [*psutil.Process(worker.pid).children(recursive=True), psutil.Process(worker.pid)]
    for process in group:
        process.send_signal(signal.SIGSTOP)
    hub.release()  # every other download goes on; the paused one has its bytes waiting when it wakes
    try:
        time.sleep(WORKER_ALIVE_TTL_S + 5)  # elapsed time is the point: long enough to be judged dead
    finally:
        for process in group:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
    return {"paused_s": WORKER_ALIVE_TTL_S + 5, "pids": [p.pid for p in group]}


def mismatched_files(models_dir: Path, hub: HubStandIn, repos: list[str]) -> list[str]:
    """Files of the pulled repos whose content is not the hub's (sha256), or that are missing."""
    bad = []
    for repo in repos:
        snapshot = models_dir / f"models--{repo.replace('/', '--')}" / "snapshots" / hub.resolve(repo)
        for name, meta in hub.files(repo).items():
            try:
                digest = hashlib.sha256((snapshot / name).read_bytes()).hexdigest()
            except OSError as exc:
                bad.append(f"{repo}/{name}: {exc}")
                continue
            if digest != meta.sha256:
                bad.append(f"{repo}/{name}: sha256 {digest} != hub {meta.sha256}")
    return bad


def test_sixty_seconds_of_64_streams_and_10_pulls_fail_nothing_lose_nothing_and_leak_nothing(
    stack: Stack, hub: HubStandIn, request: pytest.FixtureRequest
) -> None:
    # Warm-up: every code path the load uses has run once before memory is measured.
    warm = asyncio.run(chat_load(stack.inference_url, STREAMS, 1.0, max_tokens=4))
    assert not warm.errors, warm.errors[:3]
    assert pull_all(stack.models_url, [MODEL]) == {MODEL: "present"}
    time.sleep(2)
    before = stack.rss()

    repos = [f"llf-soak/pull-{i}" for i in range(PULLS)]
    for repo in repos:
        hub.hold(repo, "extra.bin", after_bytes=HELD_AT, times=1)
    extra = start_extra_worker(stack)

    async def together() -> tuple[Tally, dict[str, Any], dict[str, Any]]:
        pulls = asyncio.to_thread(pull_all, stack.models_url, repos)
        pause = asyncio.to_thread(pause_mid_download, extra, hub, repos)
        return await asyncio.gather(chat_load(stack.inference_url, STREAMS, SECONDS), pulls, pause)

    started = time.monotonic()
    try:
        tally, pulls, paused = asyncio.run(together())
    finally:
        hub.release()
        extra.stop()
    elapsed = time.monotonic() - started
    time.sleep(2)
    after = stack.rss()
    mismatched = mismatched_files(stack.home / "models", hub, repos)

    growth = {name: (after.get(name, 0) - rss) / rss for name, rss in before.items() if rss}
    report = {
        "name": "soak",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make soak  # .venv/bin/python -m pytest -m soak -q -p no:cacheprovider",
        "streams": STREAMS,
        "seconds": SECONDS,
        "elapsed_s": round(elapsed, 1),
        "requests": tally.requests,
        "completion_tokens": tally.tokens,
        "tokens_per_s": round(tally.tokens / elapsed, 1),
        "ttft_p50_ms": round(1000 * sorted(tally.ttft)[len(tally.ttft) // 2], 1) if tally.ttft else None,
        "errors": len(tally.errors),
        "error_samples": tally.errors[:5],
        "pulls": PULLS,
        "pulls_finished": sum(state == "finished" for state in pulls.values()),
        "lost_or_failed_jobs": {repo: state for repo, state in pulls.items() if state != "finished"},
        "paused_worker": paused,
        "files_not_the_hubs": mismatched,
        "rss_before_mib": {k: round(v / 2**20, 1) for k, v in before.items()},
        "rss_after_mib": {k: round(v / 2**20, 1) for k, v in after.items()},
        "rss_growth_pct": {k: round(100 * v, 1) for k, v in growth.items()},
    }
    out = REPO / "bench" / "results" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nsoak: {json.dumps(report)}")

    assert tally.requests > 0
    assert not tally.errors, f"{len(tally.errors)} failed streams, e.g. {tally.errors[:3]}"
    assert report["lost_or_failed_jobs"] == {}, report["lost_or_failed_jobs"]
    assert mismatched == [], f"files in the store that are not the hub's: {mismatched}"
    assert set(before) == {"inference", "models", "worker"}, before
    assert all(g <= MAX_GROWTH for g in growth.values()), f"RSS growth over 10 %: {report['rss_growth_pct']}"
