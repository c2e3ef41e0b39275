"""#5 Dedupe: 100 concurrent identical pull requests → one download, and how fast the API answers.

Per repetition a fresh repo (the tiny model plus a random file) is published on the hub
stand-in, 100 clients POST the same ``/v1/pulls`` at once, and the hub's own counters say how
many times its bytes were sent (1.0 = downloaded once). The API's answer time p50/p99 is put
side by side with 100 concurrent ``GET /healthz`` on the same server just before: the ratio is
what deduplication (a Redis round trip, a deterministic job id) costs per request.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from bench import api, stack
from bench.context import Context
from bench.report import TIMES, Result, Target, percentile

CLIENTS = 100
EXTRA_BYTES = 16 << 20


async def burst(url: str, method: str, body: dict[str, str] | None) -> tuple[list[float], list[int], list[dict]]:
    """``CLIENTS`` requests released together; their latencies, statuses and bodies."""
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        gate = asyncio.Event()

        async def one() -> tuple[float, int, dict]:
            await gate.wait()
            start = time.perf_counter()
            response = await http.request(method, url, json=body)
            elapsed = time.perf_counter() - start
            return elapsed, response.status_code, response.json() if response.content else {}

        tasks = [asyncio.create_task(one()) for _ in range(CLIENTS)]
        await asyncio.sleep(0.05)
        gate.set()
        done = await asyncio.gather(*tasks)
    return [d[0] for d in done], [d[1] for d in done], [d[2] for d in done]


def run(ctx: Context, result: Result) -> None:
    hub = stack.hub(ctx)
    registry = stack.registry(ctx)
    with httpx.Client(base_url=registry.url, timeout=60) as http:
        for rep in range(ctx.reps):
            repo = f"bench/dedupe-{rep}-{int(time.time())}"
            hub.add_tiny_model(repo)
            hub.add_large_file(repo, "extra.bin", EXTRA_BYTES, seed=rep)
            repo_bytes = sum(meta.size for meta in hub.files(repo).values())
            health, _, _ = asyncio.run(burst(f"{registry.url}/healthz", "GET", None))
            before = hub.bytes_served(repo)
            latencies, statuses, bodies = asyncio.run(burst(f"{registry.url}/v1/pulls", "POST", {"repo": repo}))
            bad = [s for s in statuses if s not in (200, 202)]
            if bad:
                raise RuntimeError(f"{len(bad)} of {CLIENTS} pulls answered {sorted(set(bad))}: {bodies[0]}")
            job_ids = {b.get("job_id") for b in bodies if b.get("job_id")}
            for job_id in job_ids:
                api.wait_job(http, str(job_id), timeout=300)
            served = hub.bytes_served(repo) - before
            result.metric("downloads", "downloads", "hub bytes sent / repo bytes (1 = one download)").add(
                served / repo_bytes
            )
            result.metric("jobs", "jobs", "distinct job ids in the 100 answers").add(len(job_ids))
            for q in (50, 99):
                result.metric(f"pull_p{q}_ms", "ms", f"POST /v1/pulls answer time p{q}").add(
                    percentile(latencies, q) * 1e3
                )
                result.metric(f"healthz_p{q}_ms", "ms", f"GET /healthz p{q}, same concurrency").add(
                    percentile(health, q) * 1e3
                )
            result.metric("ratio_p50", TIMES, "pull p50 / healthz p50").add(
                percentile(latencies, 50) / percentile(health, 50)
            )
    result.params.update({"clients": CLIENTS, "repo": "tiny model + 16 MiB random file, a new repo per repetition"})
    result.commands["llf"] = f"{CLIENTS} x concurrent POST {registry.url}/v1/pulls {{repo}} (httpx.AsyncClient)"
    result.commands["baseline"] = f"{CLIENTS} x concurrent GET {registry.url}/healthz"
    result.targets.append(Target("downloads for 100 identical pulls", "downloads", "<=", 1.0))
    result.reported += [
        ("distinct jobs for 100 identical pulls", "jobs"),
        ("POST /v1/pulls p50 at 100 concurrent", "pull_p50_ms"),
        ("POST /v1/pulls p99 at 100 concurrent", "pull_p99_ms"),
        ("pull p50 ÷ `/healthz` p50 (same load)", "ratio_p50"),
    ]
