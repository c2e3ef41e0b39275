"""#3 Pull: registry pull + verify of a generated repo vs plain ``snapshot_download`` of the same repo.

The repo (``LLF_BENCH_PULL_MB`` MiB of random shards plus the tiny model's files) lives on the
hub stand-in. llf side: ``POST /v1/pulls`` → job finished (download *and* sha256 verification),
timed as a client sees it; the model is deleted before the next repetition. Baseline side,
alternating: ``huggingface_hub.snapshot_download`` into an empty cache in a fresh interpreter
(the library's defaults: 8 parallel files, no verification). Target: ratio ≤ 1.05, which holds
only if verification overlaps the download.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any

import httpx

from bench import api, stack
from bench.context import Context
from bench.procs import Profiler
from bench.report import TIMES, Result, Target

REPO = "bench/pull-large"
SHARD_MB = 256


def pull_mb() -> int:
    return max(8, int(os.environ.get("LLF_BENCH_PULL_MB", "512")))


def ensure_repo(ctx: Context) -> tuple[Any, int]:
    """Publish the large repo once per run; returns the hub and the repo's total bytes."""
    hub = stack.hub(ctx)

    def publish(_: object) -> int:
        hub.add_tiny_model(REPO)
        remaining, index = pull_mb() << 20, 0
        while remaining > 0:
            size = min(SHARD_MB << 20, remaining)
            hub.add_large_file(REPO, f"shards/shard-{index:05d}.bin", size, seed=index)
            remaining -= size
            index += 1
        return sum(meta.size for meta in hub.files(REPO).values())

    return hub, ctx.shared("pull-repo", lambda stack_: publish(stack_))


def snapshot_download_argv(ctx: Context, hub_url: str) -> tuple[list[str], dict[str, str], str]:
    cache = str(ctx.workdir / "hf-cache")
    code = (
        "import sys; from huggingface_hub import snapshot_download; "
        "snapshot_download(sys.argv[1], cache_dir=sys.argv[2], endpoint=sys.argv[3])"
    )
    env = {**os.environ, "HF_ENDPOINT": hub_url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_TOKEN", None)
    return [sys.executable, "-c", code, REPO, cache, hub_url], env, cache


def timed_snapshot_download(argv: list[str], env: dict[str, str], cache: str) -> float:
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"snapshot_download failed: {done.stderr[-500:]}")
    shutil.rmtree(cache, ignore_errors=True)
    return elapsed


def timed_llf_pull(http: httpx.Client) -> tuple[float, dict[str, Any]]:
    api.delete_model(http, REPO)
    start = time.perf_counter()
    info = api.pull_and_wait(http, REPO, timeout=1800)
    return time.perf_counter() - start, info


def run(ctx: Context, result: Result) -> None:
    hub, repo_bytes = ensure_repo(ctx)
    registry = stack.registry(ctx)
    argv, env, cache = snapshot_download_argv(ctx, hub.url)
    with httpx.Client(base_url=registry.url, timeout=60) as http:
        for _ in range(ctx.reps):
            base_s = timed_snapshot_download(argv, env, cache)
            llf_s, info = timed_llf_pull(http)
            result.metric("llf_s", "s", "POST /v1/pulls -> job finished (download + verify)").add(llf_s)
            result.metric("baseline_s", "s", "snapshot_download in a fresh interpreter").add(base_s)
            result.metric("ratio", TIMES, "llf / snapshot_download").add(llf_s / base_s)
            result.metric("llf_mib_s", "MiB/s", "llf pull throughput").add(repo_bytes / llf_s / 2**20)
            result.metric("baseline_mib_s", "MiB/s", "snapshot_download throughput").add(repo_bytes / base_s / 2**20)
            if info.get("warnings"):
                result.notes.append(f"job warnings: {info['warnings'][:3]}")
        result.params.update({"repo_mib": round(repo_bytes / 2**20, 1), "LLF_BENCH_PULL_MB": pull_mb(),
                              "shard_mib": SHARD_MB, "repo": REPO, "hub": "tests.support.hub (loopback)"})
        result.commands["llf"] = f"POST {registry.url}/v1/pulls repo={REPO} then GET /v1/jobs/ID until done"
        result.commands["baseline"] = shlex.join(argv)
        result.targets.append(Target(f"pull+verify ÷ snapshot_download ({repo_bytes / 2**20:.0f} MiB)", "ratio",
                                     "<=", 1.05))
        result.reported += [("llf pull throughput", "llf_mib_s"), ("snapshot_download throughput", "baseline_mib_s")]
        if result.missed():
            worker = stack.worker_pid(ctx)
            if worker:
                with Profiler(worker, "pull-worker", duration=120) as profiler:
                    timed_llf_pull(http)
                result.profile = profiler.result()
