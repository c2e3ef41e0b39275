"""#9 Engine dtype on this CPU: float32 against bfloat16, same engine, same tiny model, same prompts.

Why: ``dtype: auto`` lets llf choose the engine's dtype from the host CPU (``llf_inference.cpu``),
and that rule must come from numbers measured on the CPUs it runs on, not from a guess. Each
repetition starts one gateway per dtype (``LLF_INFERENCE_DTYPE``) and keeps both running, warms
them up, then streams ``SINGLE_REQUESTS`` chat completions of ``TOKENS`` tokens one at a time
through each gateway (an engine answers only its gateway's per-start key), the two taking turns
(so both see the same background load on a shared machine; the first dtype alternates too).
Figures per dtype: TTFT p50 and tokens/s of one stream, the engine's start time (``POST
/v1/serve`` with ``wait`` until ``ready``), and the CPU an idle engine uses (it runs while the
other one is measured).
No target: the figures feed the rule, they do not pass or fail.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import psutil

from bench import load
from bench.context import Context
from bench.procs import VENV_BIN, Proc, cpu_seconds, free_port, wait_http
from bench.report import TIMES, Result, percentile

MODEL = "bench/dtype-tiny"
DTYPES = ("float32", "bfloat16")
TOKENS = 128
SINGLE_REQUESTS = 12
WARMUP_REQUESTS = 2


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


def start(ctx: Context, model_dir: Path, dtype: str, rep: int) -> tuple[Proc, str, float]:
    """A gateway serving the tiny model in ``dtype``: (process, its URL, seconds to ready)."""
    port = free_port()
    home = ctx.path("dtype", f"{dtype}-{rep}")
    env = {
        "LLF_HOME": str(home),
        "LLF_CONFIG": str(home / "no-config.json"),
        "LLF_INFERENCE_HOST": "127.0.0.1",
        "LLF_INFERENCE_PORT": str(port),
        "LLF_INFERENCE_MODEL_PATHS": json.dumps({MODEL: str(model_dir)}),
        "LLF_INFERENCE_DTYPE": dtype,
        "LLF_LOG_LEVEL": "WARNING",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    proc = Proc([str(VENV_BIN / "llf-inference")], home / "gateway.log", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, timeout=60)
        began = time.monotonic()
        answer = httpx.post(f"{url}/v1/serve", json={"model": MODEL, "wait": True}, timeout=900)
        if answer.status_code >= 400 or answer.json().get("state") != "ready":
            raise RuntimeError(f"POST /v1/serve ({dtype}): HTTP {answer.status_code} {answer.text[:300]}")
        ready_s = time.monotonic() - began
    except BaseException:
        proc.stop(timeout=30)
        raise
    return proc, url, ready_s


async def alternate(urls: dict[str, str], count: int) -> dict[str, list[load.StreamStats]]:
    """``count`` streams per dtype, one at a time, the dtypes taking turns (order flips each round)."""
    done: dict[str, list[load.StreamStats]] = {dtype: [] for dtype in urls}
    async with load.client(1) as http:
        for index in range(count):
            order = list(urls) if index % 2 == 0 else list(reversed(urls))
            for dtype in order:
                stats = await load.chat_stream(http, f"{urls[dtype]}/v1/chat/completions", body())
                if not stats.ok:
                    raise RuntimeError(f"stream failed ({dtype}): {stats.error or stats.status}")
                done[dtype].append(stats)
    return done


def idle_cpu_pct(pid: int, seconds: float = 3.0) -> float:
    """CPU used by an idle gateway's engines (all their processes), in % of one core."""
    engines = psutil.Process(pid).children(recursive=True)
    before = cpu_seconds(engines)
    time.sleep(seconds)
    return 100 * (cpu_seconds(engines) - before) / seconds


def run(ctx: Context, result: Result) -> None:
    from llf_models.tinymodel import write_tiny_model

    model_dir = Path(write_tiny_model(ctx.path("dtype", "model"), seed=0))
    for rep in range(ctx.reps):
        order = DTYPES if rep % 2 == 0 else tuple(reversed(DTYPES))
        procs: dict[str, Proc] = {}
        try:
            urls = {}
            for dtype in order:
                proc, url, ready_s = start(ctx, model_dir, dtype, rep)
                procs[dtype] = proc
                urls[dtype] = url
                result.metric(f"{dtype}_ready_s", "s", f"POST /v1/serve to ready, {dtype}").add(ready_s)
            asyncio.run(alternate(urls, WARMUP_REQUESTS))
            for dtype, proc in procs.items():
                result.metric(f"{dtype}_idle_cpu_pct", "%", f"idle engine CPU, {dtype}").add(idle_cpu_pct(proc.pid))
            measured = asyncio.run(alternate(urls, SINGLE_REQUESTS))
        finally:
            for proc in procs.values():
                proc.stop(timeout=30)
        for dtype, streams in measured.items():
            ttfts = [s.ttft_s or 0.0 for s in streams]
            result.metric(f"{dtype}_ttft_p50_ms", "ms", f"TTFT p50, 1 stream, {dtype}").add(percentile(ttfts, 50) * 1e3)
            result.metric(f"{dtype}_tok_s", "tok/s", f"tokens/s, 1 stream, {dtype}").add(
                sum(s.tokens for s in streams) / sum(s.total_s for s in streams)
            )
        for key, what in (("ttft_p50_ms", "TTFT p50"), ("tok_s", "tokens/s")):
            ratio = result.metrics[f"bfloat16_{key}"].samples[-1] / result.metrics[f"float32_{key}"].samples[-1]
            result.metric(f"bf16_over_fp32_{key}", TIMES, f"bfloat16 / float32 {what}, same repetition").add(ratio)
    result.reported += [
        ("bfloat16 ÷ float32 TTFT p50 (same repetition)", "bf16_over_fp32_ttft_p50_ms"),
        ("bfloat16 ÷ float32 tokens/s (same repetition)", "bf16_over_fp32_tok_s"),
    ]
    for dtype in DTYPES:
        result.reported += [
            (f"{dtype}: TTFT p50, 1 stream", f"{dtype}_ttft_p50_ms"),
            (f"{dtype}: tokens/s, 1 stream", f"{dtype}_tok_s"),
            (f"{dtype}: engine start to ready", f"{dtype}_ready_s"),
            (f"{dtype}: idle engine CPU (% of one core)", f"{dtype}_idle_cpu_pct"),
        ]
    result.params.update({"model": "generated tiny Llama (llf_models.tinymodel, seed 0)", "tokens": TOKENS,
                          "single_requests_per_rep": SINGLE_REQUESTS, "warmup_requests": WARMUP_REQUESTS,
                          "dtypes": list(DTYPES), "engine": "vLLM CPU (.venv-engine), --enforce-eager"})  # fmt: skip
    result.commands["engine"] = (
        f"llf-inference with LLF_INFERENCE_DTYPE=<dtype> (LLF_INFERENCE_MODEL_PATHS={MODEL}); "
        "POST <gateway>/v1/chat/completions"
    )
