"""#4 Verify: the registry's re-verify of the pulled repo vs ``sha256sum`` over the same files.

llf side: ``POST /v1/models/{repo}/verify`` → job finished, timed as a client sees it. Baseline,
alternating: coreutils ``sha256sum`` over the snapshot's files (their blobs). Both read from a
warm page cache (each side runs once before timing), so the figure is hashing throughput plus
llf's job overhead. Target: llf at least 0.9 of sha256sum's throughput.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import httpx

from bench import api, stack
from bench.cases.pull import REPO, ensure_repo
from bench.context import Context
from bench.procs import Profiler
from bench.report import TIMES, Result, Target


def files_of(http: httpx.Client) -> list[str]:
    response = http.get(f"/v1/models/{REPO}")
    response.raise_for_status()
    snapshot = Path(response.json()["path"])
    return sorted(os.path.realpath(p) for p in snapshot.rglob("*") if p.is_file())


def timed_verify(http: httpx.Client) -> float:
    start = time.perf_counter()
    info = api.verify(http, REPO)
    api.wait_job(http, str(info.get("id") or info.get("job_id")), timeout=1800, poll=0.02)
    return time.perf_counter() - start


def timed_sha256sum(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(ctx: Context, result: Result) -> None:
    ensure_repo(ctx)
    registry = stack.registry(ctx)
    with httpx.Client(base_url=registry.url, timeout=60) as http:
        api.pull_and_wait(http, REPO, timeout=1800)  # present already when #3 ran before
        files = files_of(http)
        total = sum(os.path.getsize(f) for f in files)
        argv = ["sha256sum", *files]
        timed_sha256sum(argv)
        timed_verify(http)
        for _ in range(ctx.reps):
            base_s = timed_sha256sum(argv)
            llf_s = timed_verify(http)
            result.metric("llf_mib_s", "MiB/s", "re-verify job (POST -> finished)").add(total / llf_s / 2**20)
            result.metric("sha256sum_mib_s", "MiB/s", "coreutils sha256sum throughput").add(total / base_s / 2**20)
            result.metric("ratio", TIMES, "llf throughput / sha256sum throughput").add(base_s / llf_s)
        result.params.update({"repo": REPO, "bytes": total, "files": len(files), "page_cache": "warm"})
        result.commands["llf"] = f"POST {registry.url}/v1/models/{REPO}/verify then GET /v1/jobs/ID until done"
        result.commands["baseline"] = shlex.join(["sha256sum", f"<{len(files)} blob files of the snapshot>"])
        result.targets.append(Target("re-verify ÷ sha256sum throughput", "ratio", ">=", 0.9))
        result.reported += [("re-verify throughput", "llf_mib_s"), ("sha256sum throughput", "sha256sum_mib_s")]
        if result.missed():
            worker = stack.worker_pid(ctx)
            if worker:
                with Profiler(worker, "verify-worker", duration=120) as profiler:
                    timed_verify(http)
                result.profile = profiler.result()
