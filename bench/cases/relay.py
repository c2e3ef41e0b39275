"""#2 SSE relay capacity: the gateway in front of a synthetic upstream vs the upstream hit directly.

The gateway (``llf-inference``) launches ``bench.upstream`` as its "engine" through
``LLF_INFERENCE_ENGINE_COMMAND`` and serves it from a pinned ``model_paths`` entry, so it relays exactly
as it relays vLLM. The gateway is pinned to CPU 0; the upstream and this client share CPU 1.
Alternating, streams go through the gateway and straight to the upstream's port. Figures:
chunks/s through the gateway (target ≥ 30k on its one core), the same upstream direct, their
ratio, and chunks per gateway CPU-second (its capacity when it is the bottleneck).

First, with the same upstream, ``front_overhead`` measures what the gateway and vllm-router each
add to the time to first token of one stream: #1's question without vLLM's millisecond spread.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import psutil

from bench import load
from bench.context import Context
from bench.procs import VENV_BIN, Proc, Profiler, cpu_seconds, free_port, pin, wait_http
from bench.report import TIMES, Result, Target, percentile
from tests.support.router import start_router

MODEL = "bench/upstream"
CHUNKS_PER_RUN = 200_000
CONCURRENCY = (1, 8)
UPSTREAM_BATCH = 16
FRONT_ROUNDS = int(os.environ.get("LLF_BENCH_FRONT_ROUNDS", "300"))


def start_gateway(ctx: Context) -> tuple[Proc, str, int, int]:
    """The gateway serving the synthetic upstream; returns (proc, url, engine pid, engine port)."""
    model_dir = ctx.path("relay", "model")
    (model_dir / "config.json").write_text("{}\n")
    port = free_port()
    env = {
        "LLF_HOME": str(ctx.path("relay", "home")),
        "LLF_INFERENCE_HOST": "127.0.0.1",
        "LLF_INFERENCE_PORT": str(port),
        "LLF_INFERENCE_ENGINE_COMMAND": json.dumps([sys.executable, "-m", "bench.upstream"]),
        "LLF_INFERENCE_MODEL_PATHS": json.dumps({MODEL: str(model_dir)}),
        # The upstream on a loopback port, not the default private socket: "direct" reaches it.
        "LLF_INFERENCE_ENGINE_LISTEN": "tcp",
        "LLF_BENCH_UPSTREAM_BATCH": str(UPSTREAM_BATCH),
        "LLF_LOG_LEVEL": "WARNING",
        "LLF_CONFIG": str(ctx.path("relay") / "no-config.json"),
    }
    # cwd is the repo root, so the engine's ``python -m bench.upstream`` finds this package.
    proc = Proc([str(VENV_BIN / "llf-inference")], ctx.workdir / "relay" / "gateway.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, timeout=60)
        response = httpx.post(f"{url}/v1/serve", json={"model": MODEL, "wait": True}, timeout=120)
        if response.status_code >= 400:
            raise RuntimeError(f"POST /v1/serve: HTTP {response.status_code} {response.text[:300]}")
        wait_http(f"{url}/readyz", proc, timeout=60)
        replica = httpx.get(f"{url}/v1/status", timeout=10).json()["replicas"][0]
    except BaseException:
        proc.stop()
        raise
    return proc, url, int(replica["pid"]), int(replica["port"])


def front_overhead(ctx: Context, result: Result, url: str, gateway_pid: int, engine_pid: int, direct: str) -> None:
    """What a front adds to time to first token, with no engine noise: gateway vs vllm-router, 1 stream.

    Benchmark #1's 1-stream figures carry vLLM's own TTFT spread (milliseconds) over an overhead
    of about one; here the upstream answers in well under 1 ms, so the fronts' own per-request
    cost is what differs. Pinned as #1 is: the upstream on CPU 0, the fronts and this client on CPU 1.
    """
    router = start_router([direct], "round_robin", log=ctx.path("relay") / "router.log")
    try:
        fronts = {"gateway": [psutil.Process(gateway_pid)], "router": [psutil.Process(router.process.pid)]}
        pin(engine_pid, {0})
        for pid in (gateway_pid, router.process.pid, os.getpid()):
            pin(pid, {1}, children=False)
        urls = {"gateway": url, "router": router.url, "direct": direct}
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 8}
        asyncio.run(load.one_at_a_time(urls, body, 50))  # warm-up: connections, caches
        for _ in range(ctx.reps):
            before = {name: cpu_seconds(procs) for name, procs in fronts.items()}
            streams = asyncio.run(load.one_at_a_time(urls, body, FRONT_ROUNDS))
            ttft = {name: [s.ttft_s for s in done if s.ttft_s is not None] for name, done in streams.items()}
            if any(len(times) != FRONT_ROUNDS for times in ttft.values()):
                raise RuntimeError("a stream ended without a first token")
            direct_p50 = percentile(ttft["direct"], 50)
            for name, procs in fronts.items():
                overhead = (percentile(ttft[name], 50) - direct_p50) * 1e3
                result.metric(f"{name}_ttft_overhead_c1", "ms", f"{name} - direct TTFT p50, 1 stream").add(overhead)
                used = cpu_seconds(procs) - before[name]
                result.metric(f"{name}_cpu_ms_per_request", "ms", f"{name} CPU per request").add(
                    used / FRONT_ROUNDS * 1e3
                )
    finally:
        router.stop()
    result.params["front_rounds"] = FRONT_ROUNDS
    result.commands["router"] = f"vllm-router --policy round_robin --worker-urls {direct}"
    result.reported += [
        ("gateway TTFT p50 overhead over the upstream, 1 stream", "gateway_ttft_overhead_c1"),
        ("vllm-router TTFT p50 overhead over the upstream, 1 stream", "router_ttft_overhead_c1"),
        ("gateway CPU per request, 1 stream", "gateway_cpu_ms_per_request"),
        ("vllm-router CPU per request, 1 stream", "router_cpu_ms_per_request"),
    ]


def run(ctx: Context, result: Result) -> None:
    gateway, url, engine_pid, engine_port = start_gateway(ctx)
    own_cpus = os.sched_getaffinity(0)
    try:
        front_overhead(ctx, result, url, gateway.pid, engine_pid, f"http://127.0.0.1:{engine_port}")
        pin(gateway.pid, {0})
        pin(engine_pid, {1})
        os.sched_setaffinity(0, {1} & set(range(os.cpu_count() or 1)) or own_cpus)
        direct = f"http://127.0.0.1:{engine_port}/v1/chat/completions"
        via = f"{url}/v1/chat/completions"
        gateway_processes = [psutil.Process(gateway.pid)]
        for concurrency in CONCURRENCY:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                    "max_tokens": CHUNKS_PER_RUN // concurrency}
            load.batch("relay", via, {**body, "max_tokens": 1000}, concurrency)  # warm-up: connections, caches
            for _ in range(ctx.reps):
                straight = load.batch("relay", direct, body, concurrency)
                cpu0 = cpu_seconds(gateway_processes)
                relayed = load.batch("relay", via, body, concurrency)
                cpu = cpu_seconds(gateway_processes) - cpu0
                errors = straight.errors + relayed.errors
                if errors:
                    raise RuntimeError(f"{len(errors)} failed streams: {errors[:2]}")
                total = sum(s.chunks for s in relayed.streams)
                key = f"c{concurrency}"
                result.metric(f"gateway_{key}", "chunks/s", f"through the gateway, {concurrency} streams").add(
                    relayed.chunks_per_s
                )
                result.metric(f"direct_{key}", "chunks/s", f"upstream direct, {concurrency} streams").add(
                    straight.chunks_per_s
                )
                ratio = relayed.chunks_per_s / straight.chunks_per_s
                result.metric(f"ratio_{key}", TIMES, "gateway / direct").add(ratio)
                result.metric(f"per_cpu_s_{key}", "chunks/CPU-s", "chunks per gateway CPU-second").add(
                    total / max(cpu, 1e-9)
                )
        result.params.update({
            "chunks_per_run": CHUNKS_PER_RUN, "concurrency": list(CONCURRENCY), "upstream_batch": UPSTREAM_BATCH,
            "chunk_bytes": 181, "pinning": "gateway CPU 0; upstream + client CPU 1",
        })
        result.commands["gateway"] = (f"LLF_INFERENCE_ENGINE_COMMAND='[\"python\",\"-m\",\"bench.upstream\"]' "
                                      f"LLF_BENCH_UPSTREAM_BATCH={UPSTREAM_BATCH} llf-inference; POST /v1/serve; "
                                      f"stream POST /v1/chat/completions")
        result.commands["direct"] = "the same stream from the upstream's own port (GET /v1/status replicas[0].port)"
        result.targets.append(Target("relay chunks/s, gateway on one core, 8 streams", "gateway_c8", ">=", 30_000))
        result.targets.append(Target("chunks per gateway CPU-second, 8 streams", "per_cpu_s_c8", ">=", 30_000))
        result.reported += [
            ("upstream direct chunks/s, 8 streams", "direct_c8"),
            ("gateway ÷ direct, 8 streams", "ratio_c8"),
            ("relay chunks/s, 1 stream", "gateway_c1"),
            ("gateway ÷ direct, 1 stream", "ratio_c1"),
        ]
        result.notes.append(
            "the client shares CPU 1 with the upstream, so wall-clock chunks/s through the gateway is bounded by "
            "the client, not the gateway (see chunks per gateway CPU-second); the upstream writes "
            f"{UPSTREAM_BATCH} chunks per message"
        )
        if result.missed():
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                    "max_tokens": CHUNKS_PER_RUN // 8}
            with Profiler(gateway.pid, "relay-gateway", duration=30, subprocesses=False) as profiler:
                load.batch("relay", via, body, 8)
            result.profile = profiler.result()
    finally:
        os.sched_setaffinity(0, own_cpus)
        gateway.stop()
