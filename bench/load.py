"""Load clients: stream OpenAI-style SSE and measure chunks/s, time to first token, tokens/s.

The counting is deliberately cheap (bytes, not JSON) where the benchmark is about rate, so the
client is not what limits the figure; per-token parsing is only done for the engine benchmark,
where a CPU engine produces a few hundred tokens per second.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource

from bench.report import percentile


@dataclass
class StreamStats:
    """What one streamed request measured."""

    ok: bool
    status: int = 0
    chunks: int = 0
    bytes: int = 0
    ttft_s: float | None = None
    total_s: float = 0.0
    tokens: int = 0
    error: str | None = None


def client(concurrency: int, timeout: float = 600.0, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10), limits=limits, headers=headers or {})


async def count_chunks(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> StreamStats:
    """Stream one response, counting SSE events (``\\n\\n``) without parsing them."""
    start = time.perf_counter()
    stats = StreamStats(ok=False)
    carry = b""
    try:
        async with http.stream("POST", url, json=body) as response:
            stats.status = response.status_code
            async for raw in response.aiter_raw():
                if stats.ttft_s is None:
                    stats.ttft_s = time.perf_counter() - start
                stats.bytes += len(raw)
                stats.chunks += (carry + raw[:1]).count(b"\n\n") + raw.count(b"\n\n")
                carry = raw[-1:]
            stats.ok = response.is_success
    except httpx.HTTPError as exc:
        stats.error = f"{type(exc).__name__}: {exc}"
    stats.total_s = time.perf_counter() - start
    # The [DONE] sentinel and the usage chunk are events too, but not content chunks.
    stats.chunks = max(0, stats.chunks - 2)
    return stats


async def chat_stream(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> StreamStats:
    """Stream one chat completion: time to the first content token, and completion tokens."""
    start = time.perf_counter()
    stats = StreamStats(ok=False)
    try:
        async with http.stream("POST", url, json=body) as response:
            stats.status = response.status_code
            if not response.is_success:
                stats.error = (await response.aread()).decode(errors="replace")[:300]
                stats.total_s = time.perf_counter() - start
                return stats
            async for sse in EventSource(response).aiter_sse():  # not aiter_lines(): see tests/soak
                if sse.data == "[DONE]":
                    continue
                event = json.loads(sse.data)
                if "error" in event:
                    stats.error = str(event["error"])[:300]
                    break
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if text:
                        if stats.ttft_s is None:
                            stats.ttft_s = time.perf_counter() - start
                        stats.chunks += 1
                usage = event.get("usage")
                if usage:
                    stats.tokens = int(usage.get("completion_tokens") or 0)
            stats.ok = stats.error is None
    except (httpx.HTTPError, ValueError) as exc:
        stats.error = f"{type(exc).__name__}: {exc}"
    stats.total_s = time.perf_counter() - start
    if not stats.tokens:
        stats.tokens = stats.chunks
    return stats


@dataclass
class Batch:
    """Results of ``concurrency`` streams started together."""

    wall_s: float
    streams: list[StreamStats] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [s.error or f"HTTP {s.status}" for s in self.streams if not s.ok]

    @property
    def chunks_per_s(self) -> float:
        return sum(s.chunks for s in self.streams) / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.streams) / self.wall_s

    def ttft(self, q: float) -> float:
        values = [s.ttft_s for s in self.streams if s.ttft_s is not None]
        return percentile(values, q) if values else float("nan")


async def run_batch(kind: str, url: str, body: dict[str, Any], concurrency: int, rounds: int = 1,
                    headers: dict[str, str] | None = None) -> Batch:
    """``rounds`` times, ``concurrency`` streams at once (closed loop per slot)."""
    measure = count_chunks if kind == "relay" else chat_stream
    async with client(concurrency, headers=headers) as http:

        async def slot() -> list[StreamStats]:
            return [await measure(http, url, body) for _ in range(rounds)]

        start = time.perf_counter()
        per_slot = await asyncio.gather(*(slot() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return Batch(wall, [s for stats in per_slot for s in stats])


def batch(kind: str, url: str, body: dict[str, Any], concurrency: int, rounds: int = 1,
          headers: dict[str, str] | None = None) -> Batch:
    return asyncio.run(run_batch(kind, url, body, concurrency, rounds, headers))


def rotated(index: int, names: Sequence[str]) -> list[str]:
    """``names`` in the order of round ``index``: each one goes first, second, … and last in turn."""
    shift = index % len(names)
    return [*names[shift:], *names[:shift]]


async def one_at_a_time(
    urls: Mapping[str, str], body: dict[str, Any], rounds: int, headers: dict[str, str] | None = None
) -> dict[str, list[StreamStats]]:
    """``rounds`` rounds of one chat stream per system (``urls``: name -> base URL), one stream at a
    time and the order rotating, so that each system meets the same engine; a failed stream raises."""
    streams: dict[str, list[StreamStats]] = {name: [] for name in urls}
    async with client(2, headers=headers) as http:
        for index in range(rounds):
            for name in rotated(index, list(urls)):
                stats = await chat_stream(http, f"{urls[name]}/v1/chat/completions", body)
                if not stats.ok:
                    raise RuntimeError(f"stream failed ({name}): {stats.error or stats.status}")
                streams[name].append(stats)
    return streams
