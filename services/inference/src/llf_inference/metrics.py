"""Prometheus metrics of the gateway, cheap enough for the streaming hot path.

Each app owns its ``CollectorRegistry`` (tests build many apps in one process), and the
per-model children are looked up once per request (``ModelMetrics``), never per chunk. The
streaming relay measures time to first byte and the gap between raw chunks as they arrive;
it never parses a chunk. Tokens are counted as SSE ``data:`` events (vLLM sends one event
per output token, minus the final ``[DONE]``), or read from ``usage`` in a non-streamed reply.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_REPLICA_STATES = ("starting", "ready", "draining", "restarting", "failed", "stopped")

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of ``Metrics.exposition()`` (Prometheus text format)."""


@dataclass(frozen=True)
class ModelMetrics:
    """The label-bound children for one model and endpoint (bound once per request)."""

    ttft: Histogram
    itl: Histogram
    tokens: Counter


class Metrics:
    """The gateway's collectors; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "llf_gateway_requests",
            "Requests answered by the gateway.",
            ["endpoint", "model", "status"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "llf_gateway_requests_in_flight", "Requests being relayed to an engine.", ["model"], registry=self.registry
        )
        self.ttft = Histogram(
            "llf_gateway_time_to_first_token_seconds",
            "Request received to first streamed chunk sent.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.itl = Histogram(
            "llf_gateway_inter_token_seconds",
            "Gap between streamed chunks from the engine.",
            ["model"],
            buckets=_ITL_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "llf_gateway_tokens_generated",
            "Output tokens relayed (SSE events or usage).",
            ["model"],
            registry=self.registry,
        )
        self.restarts = Counter(
            "llf_gateway_engine_restarts",
            "Engine restarts after a crash or a failed health check.",
            ["model"],
            registry=self.registry,
        )
        self.routing = Counter(
            "llf_gateway_routing_decisions",
            "Replica choices by why: affinity_hit, spill (key's replica past the load bound), no_key, "
            "least_loaded (that policy), pinned (previous_response_id).",
            ["model", "decision"],
            registry=self.registry,
        )
        self.replicas = Gauge("llf_gateway_replicas", "Engine replicas by state.", ["state"], registry=self.registry)
        self._bound: dict[str, ModelMetrics] = {}

    def set_replica_states(self, states: list[str]) -> None:
        """Set the replicas-by-state gauge from the pool's current states (every state, zeros too)."""
        for state in _REPLICA_STATES:
            self.replicas.labels(state).set(states.count(state))

    def exposition(self) -> bytes:
        """Everything in Prometheus text format (``CONTENT_TYPE``)."""
        return bytes(generate_latest(self.registry))

    def for_model(self, model: str) -> ModelMetrics:
        bound = self._bound.get(model)
        if bound is None:
            bound = ModelMetrics(self.ttft.labels(model), self.itl.labels(model), self.tokens.labels(model))
            self._bound[model] = bound
        return bound


class RateMeter:
    """Events per second over the last ``window`` seconds, in one-second buckets.

    Used for a replica's tokens/s in ``/v1/status``: ``add`` is O(1) and allocation-free in
    the common case (same second as the last call).
    """

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self._buckets: deque[list[int]] = deque()  # [second, count]

    def add(self, count: int, now: float | None = None) -> None:
        second = int(time.monotonic() if now is None else now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])
            self._trim(second)

    def rate(self, now: float | None = None) -> float:
        second = int(time.monotonic() if now is None else now)
        self._trim(second)
        total = sum(count for start, count in self._buckets if start < second)
        return total / self.window

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.window - 1:
            self._buckets.popleft()
