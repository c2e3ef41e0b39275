"""#10 Routing for the prefix cache: the gateway's policies against vllm-router, same two engines.

Why: with several replicas of a model, turn n of a chat should reach the engine that already
holds turns 1..n-1 in its prefix cache; least-in-flight routing sends it anywhere and vLLM
recomputes the prefix. The issue asks the gateway's ``affinity`` policy to keep as much of the
cache as the best ``vllm-router`` policy, close to the limit of one engine serving everything.

Set-up: two vLLM CPU engines of the tiny model, each bound to its own core, started once with
the gateway's own command line (``EngineSpec``: prefix caching on). In front of them, one after
the other, each system of ``SYSTEMS``: the gateway's app attached to both engines
(``bench.attached``) with ``affinity`` and with ``least_loaded``; ``vllm-router`` with
``consistent_hash`` (keyed on ``X-Session-ID``), ``cache_aware``, ``sticky_least_loaded`` and
``round_robin``; and engine 0 alone (the limit). Workload: ``CONVERSATIONS`` conversations run
at once, each ``TURNS`` turns resending its whole history after a shared system prompt, answers
of ``TOKENS`` tokens, every request with the conversation's ``X-Session-ID``. Each system's run
gets a system prompt of its own (a salt at its start), so no system is served from a cache
another one filled; every salt has the same length in tokens (``salt_for``), since vLLM caches whole
blocks (128 tokens on CPU) and a longer prompt would change the best hit rate a system can reach.
Figures per system: prefix-cache hit rate (delta of both engines'
``vllm:prefix_cache_hits`` over ``vllm:prefix_cache_queries``), TTFT p50/p99, tokens/s.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx

from bench import load
from bench.context import Context
from bench.procs import ENGINE_PYTHON, VENV_BIN, Proc, free_port, wait_http
from bench.report import Result, percentile
from tests.support.router import Router, start_router

MODEL = "bench/routing-tiny"
CONVERSATIONS = 16
TURNS = 6
TOKENS = 32
SYSTEM = (
    "You are a careful assistant for questions about software licences. Permission is hereby granted, free of "
    "charge, to any person obtaining a copy of this software, to deal in the Software without restriction. "
) * 4
ROUTER_POLICIES = ("consistent_hash", "cache_aware", "sticky_least_loaded", "round_robin")
SYSTEMS = ("gateway_affinity", "gateway_least_loaded", *(f"router_{p}" for p in ROUTER_POLICIES), "one_engine")


def start_engines(ctx: Context, model_dir: Path) -> tuple[list[Proc], list[str]]:
    """Two engines, each on its own core, with the gateway's command line and environment."""
    from llf_inference.engine.spec import EngineSpec
    from llf_inference.settings import InferenceSettings

    settings = InferenceSettings(home=ctx.path("routing", "settings"), device="cpu", engine_python=str(ENGINE_PYTHON))
    spec = EngineSpec.from_settings(settings, MODEL, str(model_dir))
    procs: list[Proc] = []
    urls: list[str] = []
    try:
        for core in (0, 1):
            port = free_port()
            env = spec.environment()
            env["VLLM_CPU_OMP_THREADS_BIND"] = str(core)
            procs.append(Proc(spec.command(port), ctx.path("routing") / f"engine-{core}.log", env=env, cpus={core}))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            wait_http(f"{url}/health", proc, timeout=900)
    except BaseException:
        for proc in procs:
            proc.stop(timeout=30)
        raise
    return procs, urls


def start_front(ctx: Context, system: str, engines: list[str]) -> tuple[Proc | Router | None, str]:
    """The system under test in front of the engines: (its process or None, its base URL)."""
    if system == "one_engine":
        return None, engines[0]
    log = ctx.path("routing") / f"{system}.log"
    if system.startswith("gateway_"):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [str(VENV_BIN / "python"), "-m", "bench.attached", "--port", str(port), "--model", MODEL]
        argv += ["--routing", system.removeprefix("gateway_"), "--home", str(ctx.path("routing", system))]
        for engine in engines:
            argv += ["--engine", engine]
        proc = Proc(argv, log)
        wait_http(f"{url}/healthz", proc, timeout=60)
        return proc, url
    router = start_router(engines, system.removeprefix("router_"), log=log, timeout=120)
    return router, router.url


def counters(engines: list[str]) -> dict[str, float]:
    """Both engines' prefix-cache hits and queries (tokens), summed."""
    totals = {"hits": 0.0, "queries": 0.0}
    for engine in engines:
        text = httpx.get(f"{engine}/metrics", timeout=10).text
        for key in totals:
            pattern = rf"^vllm:prefix_cache_{key}_total(?:\{{[^}}]*\}})? (\S+)$"
            totals[key] += sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))
    return totals


def salt_for(system: str, rep: int) -> str:
    """A system's salt for one repetition: unique, and as many tokens long as every other one."""
    return f"run {rep:02d}{SYSTEMS.index(system):02d}"


async def conversations(url: str, salt: str) -> tuple[list[load.StreamStats], float]:
    """``CONVERSATIONS`` chats at once, ``TURNS`` turns each, every turn resending the history."""

    async def one(index: int, http: httpx.AsyncClient) -> list[load.StreamStats]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": f"[{salt}] {SYSTEM}"}]
        done = []
        for turn in range(TURNS):
            messages.append({"role": "user", "content": f"Conversation {index}, question {turn}: what may I do?"})
            body = {"model": MODEL, "messages": messages, "max_tokens": TOKENS, "ignore_eos": True,
                    "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
            http.headers["X-Session-ID"] = f"{salt}-conversation-{index}"
            stats = await load.chat_stream(http, f"{url}/v1/chat/completions", body)
            if not stats.ok:
                raise RuntimeError(f"turn {turn} of conversation {index} failed: {stats.error or stats.status}")
            done.append(stats)
            messages.append({"role": "assistant", "content": "ok " * TOKENS})
        return done

    started = time.perf_counter()
    clients = [load.client(2) for _ in range(CONVERSATIONS)]  # one per conversation: its own session header
    try:
        results = await asyncio.gather(*(one(i, http) for i, http in enumerate(clients)))
    finally:
        for http in clients:
            await http.aclose()
    return [s for stats in results for s in stats], time.perf_counter() - started


def run(ctx: Context, result: Result) -> None:
    from llf_models.tinymodel import write_tiny_model

    model_dir = Path(write_tiny_model(ctx.path("routing", "model"), seed=0))
    engines_procs, engines = start_engines(ctx, model_dir)
    try:
        asyncio.run(conversations(engines[0], "warm-up-0"))  # first requests compile/allocate; not measured
        asyncio.run(conversations(engines[1], "warm-up-1"))
        for rep in range(ctx.reps):
            order = SYSTEMS if rep % 2 == 0 else tuple(reversed(SYSTEMS))
            for system in order:
                proc, url = start_front(ctx, system, engines)
                try:
                    before = counters(engines)
                    streams, wall = asyncio.run(conversations(url, salt_for(system, rep)))
                    after = counters(engines)
                finally:
                    if proc is not None:
                        proc.stop(timeout=30)
                queries = after["queries"] - before["queries"]
                hit_rate = (after["hits"] - before["hits"]) / queries if queries else 0.0
                ttfts = [s.ttft_s for s in streams if s.ttft_s is not None]
                result.metric(f"{system}_hit_rate", "", f"prefix-cache hit rate, {system}").add(hit_rate)
                result.metric(f"{system}_ttft_p50_ms", "ms", f"TTFT p50, {system}").add(percentile(ttfts, 50) * 1e3)
                result.metric(f"{system}_ttft_p99_ms", "ms", f"TTFT p99, {system}").add(percentile(ttfts, 99) * 1e3)
                result.metric(f"{system}_tok_s", "tok/s", f"tokens/s, {system}").add(
                    sum(s.tokens for s in streams) / wall
                )
    finally:
        for proc in engines_procs:
            proc.stop(timeout=30)
    for system in SYSTEMS:
        result.reported += [
            (f"{system}: prefix-cache hit rate", f"{system}_hit_rate"),
            (f"{system}: TTFT p50", f"{system}_ttft_p50_ms"),
            (f"{system}: TTFT p99", f"{system}_ttft_p99_ms"),
            (f"{system}: tokens/s", f"{system}_tok_s"),
        ]
    result.params.update({"model": "generated tiny Llama (llf_models.tinymodel, seed 0)", "engines": 2,
                          "conversations": CONVERSATIONS, "turns": TURNS, "tokens": TOKENS,
                          "systems": list(SYSTEMS), "engine": "vLLM CPU (.venv-engine), one core each, "
                          "the gateway's command line (prefix caching on)"})  # fmt: skip
    result.commands["gateway"] = "python -m bench.attached --routing <affinity|least_loaded> --engine URL --engine URL"
    result.commands["router"] = "vllm-router --policy <policy> --worker-urls URL URL"
