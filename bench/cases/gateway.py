"""#1 Gateway vs direct vLLM: same engine, same prompts, 1 and 32 concurrent streams of 128 tokens.

The gateway (``llf-inference``) serves the generated tiny model from a pinned ``model_paths``
entry with a real vLLM CPU engine; "direct" is that very engine's port (from ``/v1/status``),
so both sides hit the same process and only the gateway hop differs. ``ignore_eos`` makes every
answer exactly 128 tokens. One stream: requests alternate gateway/direct, TTFT p50/p99 and
tokens/s per side; 32 streams: one round per side, order alternating per repetition.
Targets: throughput ratio ≥ 0.98, TTFT p50 overhead ≤ 2 ms at 1 stream.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import psutil

from bench import load
from bench.context import Context
from bench.procs import VENV_BIN, Proc, Profiler, cpu_seconds, free_port, wait_http
from bench.report import TIMES, Result, Target, percentile

MODEL = "bench/tiny"
TOKENS = 128
SINGLE_REQUESTS = 16
CONCURRENT = 32


def body() -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello! Tell me about local language models."}],
        "max_tokens": TOKENS,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def start(ctx: Context) -> tuple[Proc, str, int, str]:
    from llf_models.tinymodel import write_tiny_model

    model_dir = write_tiny_model(ctx.path("gateway", "model"), seed=0)
    port = free_port()
    env = {
        "LLF_HOME": str(ctx.path("gateway", "home")),
        "LLF_CONFIG": str(ctx.path("gateway") / "no-config.json"),
        "LLF_INFERENCE_HOST": "127.0.0.1",
        "LLF_INFERENCE_PORT": str(port),
        "LLF_INFERENCE_MODEL_PATHS": json.dumps({MODEL: str(Path(model_dir))}),
        # The engine on a loopback port, not the default private socket: "direct" (and vllm-router) reach it.
        "LLF_INFERENCE_ENGINE_LISTEN": "tcp",
        "LLF_LOG_LEVEL": "WARNING",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    proc = Proc([str(VENV_BIN / "llf-inference")], ctx.workdir / "gateway" / "gateway.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, timeout=60)
        answer = httpx.post(f"{url}/v1/serve", json={"model": MODEL, "wait": True}, timeout=900)
        if answer.status_code >= 400 or answer.json().get("state") != "ready":
            raise RuntimeError(f"POST /v1/serve: HTTP {answer.status_code} {answer.text[:300]}")
        replica = httpx.get(f"{url}/v1/status", timeout=10).json()["replicas"][0]
    except BaseException:
        proc.stop(timeout=30)
        raise
    # The engine answers only its gateway's per-start key, which it has in its environment.
    return proc, url, int(replica["port"]), psutil.Process(int(replica["pid"])).environ().get("VLLM_API_KEY", "")


async def single(url: str, http: httpx.AsyncClient) -> load.StreamStats:
    stats = await load.chat_stream(http, f"{url}/v1/chat/completions", body())
    if not stats.ok:
        raise RuntimeError(f"stream failed: {stats.error or stats.status}")
    return stats


async def one_stream_rep(
    gateway: str, direct: str, auth: dict[str, str]
) -> tuple[list[load.StreamStats], list[load.StreamStats]]:
    via, straight = [], []
    async with load.client(2, headers=auth) as http:  # the gateway (no LLF_API_KEY) ignores the header
        for index in range(SINGLE_REQUESTS):
            order = [(gateway, via), (direct, straight)]
            for url, sink in order if index % 2 == 0 else reversed(order):
                sink.append(await single(url, http))
    return via, straight


def run(ctx: Context, result: Result) -> None:
    proc, url, engine_port, engine_key = start(ctx)
    direct = f"http://127.0.0.1:{engine_port}"
    auth = {"Authorization": f"Bearer {engine_key}"}
    try:
        gateway = psutil.Process(proc.pid)
        engine = gateway.children(recursive=True)  # vLLM's API server, engine core and worker
        asyncio.run(one_stream_rep(url, direct, auth))  # warm-up (compiles, caches, connections)
        for rep in range(ctx.reps):
            via, straight = asyncio.run(one_stream_rep(url, direct, auth))
            for name, streams in (("gateway", via), ("direct", straight)):
                ttfts = [s.ttft_s or 0.0 for s in streams]
                result.metric(f"{name}_ttft_p50_ms_c1", "ms").add(percentile(ttfts, 50) * 1e3)
                result.metric(f"{name}_ttft_p99_ms_c1", "ms").add(percentile(ttfts, 99) * 1e3)
                result.metric(f"{name}_tok_s_c1", "tok/s").add(
                    sum(s.tokens for s in streams) / sum(s.total_s for s in streams)
                )
            for q in (50, 99):
                ours = percentile([s.ttft_s or 0.0 for s in via], q)
                overhead = ours - percentile([s.ttft_s or 0.0 for s in straight], q)
                result.metric(f"ttft_overhead_p{q}_ms_c1", "ms", f"gateway - direct TTFT p{q}, 1 stream").add(
                    overhead * 1e3
                )
            result.metric("throughput_ratio_c1", TIMES, "gateway / direct tokens/s, 1 stream").add(
                result.metrics["gateway_tok_s_c1"].samples[-1] / result.metrics["direct_tok_s_c1"].samples[-1]
            )
            batches = {}
            for side in ["gateway", "direct"] if rep % 2 == 0 else ["direct", "gateway"]:
                target = url if side == "gateway" else direct
                gateway_cpu, engine_cpu = cpu_seconds([gateway]), cpu_seconds(engine)
                batch = load.batch("chat", f"{target}/v1/chat/completions", body(), CONCURRENT, headers=auth)
                if side == "gateway":  # where the cores went while streams crossed the gateway
                    used = {"gateway": cpu_seconds([gateway]) - gateway_cpu, "engine": cpu_seconds(engine) - engine_cpu}
                    for name, seconds in used.items():
                        what = f"{name} CPU time / wall, 32 streams via the gateway"
                        result.metric(f"{name}_cpu_pct_c32", "%", what).add(100 * seconds / batch.wall_s)
                if batch.errors:
                    raise RuntimeError(f"{len(batch.errors)} failed streams ({side}): {batch.errors[:2]}")
                batches[side] = batch
                result.metric(f"{side}_tok_s_c32", "tok/s").add(batch.tokens_per_s)
                result.metric(f"{side}_ttft_p50_ms_c32", "ms").add(batch.ttft(50) * 1e3)
            result.metric("throughput_ratio_c32", TIMES, "gateway / direct tokens/s, 32 streams").add(
                batches["gateway"].tokens_per_s / batches["direct"].tokens_per_s
            )
        result.params.update({"model": "generated tiny Llama (llf_models.tinymodel, seed 0)", "tokens": TOKENS,
                              "single_requests_per_rep": SINGLE_REQUESTS, "concurrent": CONCURRENT,
                              "engine": "vLLM CPU (.venv-engine), --enforce-eager"})  # fmt: skip
        result.commands["gateway"] = (
            f"llf-inference (LLF_INFERENCE_MODEL_PATHS={MODEL}); POST {url}/v1/chat/completions"
        )
        result.commands["direct"] = f"POST {direct}/v1/chat/completions (the gateway's own engine)"
        result.targets += [
            Target("throughput gateway ÷ direct, 1 stream", "throughput_ratio_c1", ">=", 0.98),
            Target("throughput gateway ÷ direct, 32 streams", "throughput_ratio_c32", ">=", 0.98),
            Target("TTFT p50 overhead, 1 stream", "ttft_overhead_p50_ms_c1", "<=", 2.0),
        ]
        result.reported += [
            ("TTFT p99 overhead, 1 stream", "ttft_overhead_p99_ms_c1"),
            ("direct TTFT p50, 1 stream", "direct_ttft_p50_ms_c1"),
            ("direct tokens/s, 32 streams", "direct_tok_s_c32"),
            ("gateway CPU (% of one core), 32 streams", "gateway_cpu_pct_c32"),
            ("vLLM CPU (% of one core, all its processes), 32 streams", "engine_cpu_pct_c32"),
        ]
        if result.missed():
            with Profiler(proc.pid, "gateway-vllm", duration=60, subprocesses=False) as profiler:
                load.batch("chat", f"{url}/v1/chat/completions", body(), CONCURRENT)
                asyncio.run(one_stream_rep(url, direct))
            result.profile = profiler.result()
    finally:
        proc.stop(timeout=30)
