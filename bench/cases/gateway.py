"""#1 Gateway vs vllm-router vs direct vLLM: one engine, same prompts, 1 and 32 concurrent streams.

The gateway (``llf-inference``) serves the generated tiny model from a pinned ``model_paths``
entry with a real vLLM CPU engine; ``vllm-router`` (the reference data plane, PyPI) is started
in front of that very engine, and "direct" is the engine's own port (from ``/v1/status``), so
all three hit the same process and only the hop in front differs. ``ignore_eos`` makes every
answer exactly ``TOKENS`` tokens.

The engine (its API server, engine core and worker) runs on every core but the last; the
gateway, vllm-router and the load client share the last one (``LLF_BENCH_GATEWAY_SPLIT=0``
leaves everything where the OS puts it). vLLM CPU keeps its worker's and its engine core's cores
busy while requests are in flight, so a front end that shares a core with them measures the
scheduler: unsplit, direct vLLM's own 1-stream TTFT p50 swung 17-344 ms between repetitions,
larger than any difference between the systems. Split, the three paths differ only in the hop
in front, on a core of its own.

Rounds are interleaved so that the machine's drift falls on every system alike: at one stream
each round sends one request to each system, the order rotating from round to round; at
``CONCURRENT`` streams each repetition runs one batch per system, the order rotating per
repetition. Per repetition and system: TTFT p50/p99 and tokens/s, and the TTFT
overhead over direct of the same repetition. Before the repetitions, one round and one
concurrent batch per system are not measured (the engine's first batch of a size is slow, and
the system going first would pay for it).

Targets (issue 13): the gateway's throughput ≥ the router's and its TTFT p50 overhead ≤ the
router's + 1 ms, at 1 and at ``CONCURRENT`` streams; at ``CONCURRENT`` streams a miss counts
only when the min-max ranges do not overlap (2 cores: the spread is the machine's). The
≥ 0.98 x direct target stays for a GPU (``scripts/gpu-check.sh``).

Knobs: ``LLF_BENCH_GATEWAY_SINGLE`` (requests per system per repetition at one stream,
default 32), ``LLF_BENCH_GATEWAY_CONCURRENT`` (streams of the concurrent batches, default 32),
``LLF_BENCH_GATEWAY_SPLIT`` (1: the engine and the front ends on cores of their own, default).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil

from bench import load
from bench.context import Context
from bench.procs import VENV_BIN, Proc, Profiler, cpu_seconds, free_port, pin, wait_http
from bench.report import TIMES, Op, Result, Target, percentile
from tests.support.router import Router, start_router

MODEL = "bench/tiny"
TOKENS = 128
SINGLE_REQUESTS = int(os.environ.get("LLF_BENCH_GATEWAY_SINGLE", "32"))
CONCURRENT = int(os.environ.get("LLF_BENCH_GATEWAY_CONCURRENT", "32"))
SYSTEMS = ("gateway", "router", "direct")
SPLIT = os.environ.get("LLF_BENCH_GATEWAY_SPLIT", "1") == "1"


def split_cores(engine_pid: int, front_pids: Sequence[int]) -> dict[str, list[int]]:
    """The engine's processes on every core but the last, the fronts' and this process's threads on the last.

    Returns the layout for the results (empty on a machine with one core: nothing to split).
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return {}
    engine, front = set(cores[:-1]), {cores[-1]}
    pin(engine_pid, engine)  # the API server with its engine core and worker
    for pid in (*front_pids, os.getpid()):
        pin(pid, front, children=False)  # the gateway's own threads, not its engine's
    return {"engine": sorted(engine), "front (gateway, router, load client)": sorted(front)}


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


def start(ctx: Context) -> tuple[Proc, str, int, str, int]:
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
    engine = psutil.Process(int(replica["pid"]))
    return proc, url, int(replica["port"]), engine.environ().get("VLLM_API_KEY", ""), engine.pid


def one_stream_rep(urls: dict[str, str], auth: dict[str, str]) -> dict[str, list[load.StreamStats]]:
    """``SINGLE_REQUESTS`` rounds of one request per system, one at a time, the order rotating."""
    # The gateway (no LLF_API_KEY) ignores the engine's key the router passes on.
    return asyncio.run(load.one_at_a_time(urls, body(), SINGLE_REQUESTS, auth))


def record_single(result: Result, streams: dict[str, list[load.StreamStats]]) -> None:
    ttft = {name: [s.ttft_s or 0.0 for s in done] for name, done in streams.items()}
    for name, done in streams.items():
        for q in (50, 99):
            what = f"{name} TTFT p{q}, 1 stream"
            result.metric(f"{name}_ttft_p{q}_ms_c1", "ms", what).add(percentile(ttft[name], q) * 1e3)
        result.metric(f"{name}_tok_s_c1", "tok/s", f"{name} tokens/s, 1 stream").add(
            sum(s.tokens for s in done) / sum(s.total_s for s in done)
        )
    for name in ("gateway", "router"):
        for q in (50, 99):
            overhead = percentile(ttft[name], q) - percentile(ttft["direct"], q)
            what = f"{name} - direct TTFT p{q}, 1 stream"
            result.metric(f"{name}_ttft_overhead_p{q}_ms_c1", "ms", what).add(overhead * 1e3)
        result.metric(f"{name}_throughput_ratio_c1", TIMES, f"{name} / direct tokens/s, 1 stream").add(
            result.metrics[f"{name}_tok_s_c1"].samples[-1] / result.metrics["direct_tok_s_c1"].samples[-1]
        )


def concurrent_rep(
    result: Result, rep: int, urls: dict[str, str], auth: dict[str, str], fronts: dict[str, list[psutil.Process]]
) -> None:
    """One batch of ``CONCURRENT`` streams per system, in rotated order; CPU time of the front too."""
    ttft: dict[str, float] = {}
    tok_s: dict[str, float] = {}
    for name in load.rotated(rep, SYSTEMS):
        before = cpu_seconds(fronts.get(name, []))
        batch = load.batch("chat", f"{urls[name]}/v1/chat/completions", body(), CONCURRENT, headers=auth)
        if batch.errors:
            raise RuntimeError(f"{len(batch.errors)} failed streams ({name}): {batch.errors[:2]}")
        if name in fronts:
            what = f"{name} CPU time / wall, {CONCURRENT} streams"
            used = cpu_seconds(fronts[name]) - before
            result.metric(f"{name}_cpu_pct_c{CONCURRENT}", "%", what).add(100 * used / batch.wall_s)
        ttft[name], tok_s[name] = batch.ttft(50) * 1e3, batch.tokens_per_s
        result.metric(f"{name}_tok_s_c{CONCURRENT}", "tok/s", f"{name} tokens/s, {CONCURRENT} streams").add(tok_s[name])
        result.metric(f"{name}_ttft_p50_ms_c{CONCURRENT}", "ms", f"{name} TTFT p50, {CONCURRENT} streams").add(
            ttft[name]
        )
    for name in ("gateway", "router"):
        what = f"{name} - direct TTFT p50, {CONCURRENT} streams"
        result.metric(f"{name}_ttft_overhead_p50_ms_c{CONCURRENT}", "ms", what).add(ttft[name] - ttft["direct"])
        result.metric(f"{name}_throughput_ratio_c{CONCURRENT}", TIMES, f"{name} / direct tokens/s").add(
            tok_s[name] / tok_s["direct"]
        )


def describe(result: Result, url: str, router: Router, direct: str) -> None:
    n = CONCURRENT
    result.params.update({"model": "generated tiny Llama (llf_models.tinymodel, seed 0)", "tokens": TOKENS,
                          "single_requests_per_rep": SINGLE_REQUESTS, "concurrent": n, "systems": list(SYSTEMS),
                          "engine": "vLLM CPU (.venv-engine), --enforce-eager"})  # fmt: skip
    result.commands["gateway"] = f"llf-inference (LLF_INFERENCE_MODEL_PATHS={MODEL}); POST {url}/v1/chat/completions"
    result.commands["router"] = f"vllm-router --policy round_robin --worker-urls {direct}; POST {router.url}/v1/..."
    result.commands["direct"] = f"POST {direct}/v1/chat/completions (the gateway's own engine)"

    def rival(figure: str, metric: str, op: Op, value: float, overlap: bool = False) -> Target:
        router_metric = metric.replace("gateway_", "router_")
        return Target(figure, metric, op, value, router_metric, "router" if value == 0 else "router's", overlap)

    result.targets += [
        rival("throughput, gateway vs router, 1 stream", "gateway_tok_s_c1", ">=", 0.0),
        rival("TTFT p50 overhead over direct, gateway vs router, 1 stream",
              "gateway_ttft_overhead_p50_ms_c1", "<=", 1.0),
        rival(f"throughput, gateway vs router, {n} streams", f"gateway_tok_s_c{n}", ">=", 0.0, True),
        rival(f"TTFT p50 overhead over direct, gateway vs router, {n} streams",
              f"gateway_ttft_overhead_p50_ms_c{n}", "<=", 1.0, True),
    ]  # fmt: skip
    result.reported += [
        ("gateway CPU time per request, 1 stream", "gateway_cpu_ms_per_request_c1"),
        ("router CPU time per request, 1 stream", "router_cpu_ms_per_request_c1"),
        ("router tokens/s, 1 stream", "router_tok_s_c1"),
        ("direct tokens/s, 1 stream", "direct_tok_s_c1"),
        ("router TTFT p50 overhead over direct, 1 stream", "router_ttft_overhead_p50_ms_c1"),
        ("gateway TTFT p99 overhead over direct, 1 stream", "gateway_ttft_overhead_p99_ms_c1"),
        ("router TTFT p99 overhead over direct, 1 stream", "router_ttft_overhead_p99_ms_c1"),
        ("direct TTFT p50, 1 stream", "direct_ttft_p50_ms_c1"),
        (f"router tokens/s, {n} streams", f"router_tok_s_c{n}"),
        (f"direct tokens/s, {n} streams", f"direct_tok_s_c{n}"),
        (f"router TTFT p50 overhead over direct, {n} streams", f"router_ttft_overhead_p50_ms_c{n}"),
        (f"gateway TTFT p50, {n} streams", f"gateway_ttft_p50_ms_c{n}"),
        (f"router TTFT p50, {n} streams", f"router_ttft_p50_ms_c{n}"),
        (f"direct TTFT p50, {n} streams", f"direct_ttft_p50_ms_c{n}"),
        (f"gateway CPU (% of one core), {n} streams", f"gateway_cpu_pct_c{n}"),
        (f"router CPU (% of one core), {n} streams", f"router_cpu_pct_c{n}"),
    ]


def run(ctx: Context, result: Result) -> None:
    proc, url, engine_port, engine_key, engine_pid = start(ctx)
    direct = f"http://127.0.0.1:{engine_port}"
    auth = {"Authorization": f"Bearer {engine_key}"}  # the router passes it on to the engine
    router: Router | None = None
    try:
        router = start_router([direct], "round_robin", log=ctx.path("gateway") / "router.log")
        urls = {"gateway": url, "router": router.url, "direct": direct}
        fronts = {"gateway": [psutil.Process(proc.pid)], "router": [psutil.Process(router.process.pid)]}
        if SPLIT:
            result.params["cores"] = split_cores(engine_pid, [proc.pid, router.process.pid])
        one_stream_rep(urls, auth)  # warm-up (compiles, caches, connections)
        for name in SYSTEMS:  # the engine's first concurrent batch is slow: charged to nobody
            load.batch("chat", f"{urls[name]}/v1/chat/completions", body(), CONCURRENT, headers=auth)
        for rep in range(ctx.reps):
            used = {name: cpu_seconds(front) for name, front in fronts.items()}
            record_single(result, one_stream_rep(urls, auth))
            # The process's CPU over the repetition ÷ its own requests: its background work (health
            # checks) is included, and it is otherwise idle while the other systems answer.
            for name, front in fronts.items():
                what = f"{name} CPU time per request, 1 stream"
                per_request = (cpu_seconds(front) - used[name]) / SINGLE_REQUESTS
                result.metric(f"{name}_cpu_ms_per_request_c1", "ms", what).add(per_request * 1e3)
            concurrent_rep(result, rep, urls, auth, fronts)
        describe(result, url, router, direct)
        if result.missed():
            with Profiler(proc.pid, "gateway-vllm", duration=60, subprocesses=False) as profiler:
                load.batch("chat", f"{url}/v1/chat/completions", body(), CONCURRENT, headers=auth)
                one_stream_rep({"gateway": url}, auth)
            result.profile = profiler.result()
    finally:
        if router is not None:
            router.stop()
        proc.stop(timeout=30)
