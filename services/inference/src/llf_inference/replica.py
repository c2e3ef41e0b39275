"""One replica of the engine pool: an engine that starts, becomes ready, crashes, restarts, stops.

A task keeps the replica's engine running: ``starting → ready`` once /health answers and a
pre-flight generation (one token for the prompt "hi") succeeded; a crash (exit, or /health
failing several times) → ``restarting`` with exponential backoff; ``failed`` after too many
crashes in a row or at once for a failure a restart cannot fix (bad weights, out of memory,
unsupported architecture or CPU, a failed pre-flight, readiness timeout), with the reason and
the engine's last log lines. Nothing here knows HTTP routes: the router reads the state, the
relay holds the replica (``acquire``/``release``) while it streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from llf_common.wire import ReplicaState, ReplicaStatus

from llf_inference.engine.address import EngineAddress
from llf_inference.engine.failure import Failure, classify_failure
from llf_inference.engine.process import EngineProcess
from llf_inference.engine.spec import EngineSpec
from llf_inference.link import ClientLink, EngineLink, TransportLink
from llf_inference.metrics import RateMeter
from llf_inference.settings import InferenceSettings
from llf_inference.transport import EngineTransport

log = logging.getLogger(__name__)

SETTLED: frozenset[ReplicaState] = frozenset({"ready", "failed", "stopped"})
PREFLIGHT_PROMPT = "hi"  # one token: the shortest first prefill, the one that found SIGILL on AMX CPUs


class Replica:
    """One engine slot: state, counters and the current engine incarnation.

    ``client`` (control calls), ``link`` (the relay's requests) and ``dead`` belong to the running
    incarnation: a request captures its link and ``dead`` when it is routed, so a restart never
    sends a request to a new engine on an old connection, and every stream of a dead engine is
    told at once (``dead`` is set) instead of hanging.
    """

    preflight_exit_grace_s = 5.0  # how long a pre-flight error may take to become the engine's exit

    def __init__(
        self, rid: str, spec: EngineSpec, settings: InferenceSettings, on_restart: Callable[[str], None] | None = None
    ) -> None:
        self.id = rid
        self.spec = spec
        self.model = spec.model
        self.settings = settings
        self.state: ReplicaState = "starting"
        self.process: EngineProcess | None = None
        self.client: httpx.AsyncClient | None = None
        self.link: EngineLink | None = None
        self.dead = asyncio.Event()
        self.streams: set[asyncio.Future[Any]] = set()
        self.in_flight = 0
        self.restarts = 0
        self.failures = 0
        self.failure: Failure | None = None
        self.max_model_len: int | None = None
        self.ready_since: float | None = None
        self.created_at = time.time()
        self.tokens = RateMeter()
        self._on_restart = on_restart
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def attach(self, client: httpx.AsyncClient) -> None:
        """Talk to an engine through ``client`` (control calls and relay alike): an in-process fake in tests."""
        self.client = client
        self.link = ClientLink(client)

    # ------------------------------------------------------------- requests
    def acquire(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        # A fresh context: the replica outlives the request that created it (and its request id).
        self._task = asyncio.create_task(self._run(), name=f"replica-{self.id}", context=contextvars.Context())

    async def wait_settled(self, timeout: float | None = None) -> ReplicaState:
        """Wait until the replica is ready, failed or stopped (or ``timeout`` passes)."""
        async with asyncio.timeout(timeout):
            while self.state not in SETTLED:
                await self._changed.wait()
        return self.state

    async def drain(self, timeout: float) -> bool:
        """Take no new requests; wait up to ``timeout`` for those in flight. True if none are left."""
        if self.state not in ("failed", "stopped"):
            self._set_state("draining")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return self.in_flight == 0

    async def stop(self) -> None:
        """Stop the engine for good (its whole process group); idempotent."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._kill_engine()
        if self.state != "failed":
            self._set_state("stopped")

    def _set_state(self, state: ReplicaState) -> None:
        if state != self.state:
            log.info("replica state", extra={"replica": self.id, "model": self.model, "state": state})
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        while True:
            failure = await self._run_once()
            self.failure = failure
            self.failures += 1
            log.warning(
                "engine failed",
                extra={"replica": self.id, "model": self.model, "kind": failure.kind, "reason": failure.message},
            )
            if self.state == "ready":  # at once: new requests get 503 + Retry-After, not a dead port
                self._set_state("restarting")
            await self._kill_engine()
            if failure.permanent or self.failures > self.settings.restart_max:
                if not failure.permanent:
                    reason = f"gave up after {self.failures} failures in a row; last: {failure}"
                    self.failure = Failure(failure.kind, reason, True)
                self._set_state("failed")
                return
            self._set_state("restarting")
            self.restarts += 1
            if self._on_restart is not None:
                self._on_restart(self.model)
            delay = min(self.settings.restart_backoff_s * 2 ** (self.failures - 1), self.settings.restart_backoff_max_s)
            await asyncio.sleep(delay)

    async def _run_once(self) -> Failure:
        """Start one engine incarnation and return why it ended (it always ends in a failure)."""
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()

        def on_exit(_: int) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed at interpreter exit
                loop.call_soon_threadsafe(exited.set)

        self.dead = asyncio.Event()
        self.max_model_len = None
        self.ready_since = None
        api_key = secrets.token_urlsafe(32)  # per start, known only to this gateway (engine/process.py)
        self.process = None
        log_dir = self.settings.run_path / "engines"
        log_dir.mkdir(parents=True, exist_ok=True)
        address: EngineAddress | None = None
        try:
            # A fresh private socket (or port) per start: engine/address.py says why.
            address = EngineAddress.allocate(self.settings.engine_listen, self.settings.run_path)
            self.process = EngineProcess(
                self.spec,
                address,
                tail_lines=self.settings.log_tail_lines,
                log_file=log_dir / f"{self.model.replace('/', '--')}-{self.id}.log",
                on_exit=on_exit,
                api_key=api_key,
            )
        except OSError as exc:  # pragma: no cover - the launcher is our own interpreter
            if address is not None:
                address.remove()
            return Failure("engine_missing", f"cannot start the engine: {exc.strerror or exc}", True)
        log.info(
            "engine started",
            extra={
                "replica": self.id,
                "model": self.model,
                "pid": self.process.pid,
                "address": str(address),
                "dtype": self.spec.options.dtype,
            },
        )
        # pooled without httpcore's per-request pool scan (transport.py), over the engine's socket;
        # the key goes with every call: relay, health, pre-flight, metrics, sleep
        transport = EngineTransport(connect=address.connect)
        headers = {"Authorization": f"Bearer {api_key}"}
        connect_s, read_s = self.settings.upstream_connect_timeout_s, self.settings.upstream_read_timeout_s
        self.client = httpx.AsyncClient(
            base_url=address.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(read_s, connect=connect_s),
        )
        self.link = TransportLink(
            transport, address.base_url, headers, connect_timeout_s=connect_s, read_timeout_s=read_s
        )
        try:
            failure = await self._wait_ready(exited)
            if failure is None:
                failure = await self._preflight(exited)
            if failure is None:
                await self._fetch_max_model_len()
                self.ready_since = time.monotonic()
                self.created_at = time.time()
                self._set_state("ready")
                failure = await self._watch(exited)
            return failure
        finally:
            self._abort_streams()

    async def _wait_ready(self, exited: asyncio.Event) -> Failure | None:
        assert self.process is not None and self.client is not None
        deadline = time.monotonic() + self.settings.readiness_timeout_s
        while time.monotonic() < deadline:
            if exited.is_set() or not self.process.alive:
                return await self._exit_failure()
            if await self._healthy(timeout=2.0):
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.health_interval_s):
                    await exited.wait()
        return Failure(
            "timeout", f"the engine did not become ready within {self.settings.readiness_timeout_s:.0f} s", True
        )

    async def _preflight(self, exited: asyncio.Event) -> Failure | None:
        """One generation before ``ready``: a 1-token completion of a 1-token prompt.

        /health answers before any forward pass has run. An engine whose kernels cannot run on
        this CPU (SIGILL), or that cannot generate at all, fails here with its reason instead of
        saying ``ready`` and then losing every request.
        """
        assert self.process is not None and self.client is not None
        path, body = self.spec.preflight_request(PREFLIGHT_PROMPT)
        timeout = self.settings.readiness_timeout_s
        request = asyncio.ensure_future(self.client.post(path, json=body, timeout=timeout))
        died = asyncio.ensure_future(exited.wait())
        try:
            done, _ = await asyncio.wait({request, died}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            died.cancel()
            if not request.done():
                request.cancel()
        detail = _preflight_problem(request) if request in done else f"no answer within {timeout:.0f} s"
        if detail is None:
            return None
        with contextlib.suppress(TimeoutError):  # an engine that errs on its first request is often dying
            async with asyncio.timeout(self.preflight_exit_grace_s):
                await exited.wait()
        if exited.is_set() or not self.process.alive:
            return await self._exit_failure()
        known = classify_failure(self.process.log_tail(), None)
        if known.permanent:  # e.g. a worker that died of SIGILL under a still-running API server
            return known
        hint = (
            "; if this CPU cannot run the engine's kernels, set LLF_INFERENCE_DTYPE=float32 (engine option `dtype`)"
            if self.spec.device == "cpu"
            else "; the engine log says more"
        )
        return Failure(
            "preflight_failed",
            f"the engine failed its first generation (a 1-token completion of {PREFLIGHT_PROMPT!r}): {detail}{hint}",
            True,
        )

    async def _watch(self, exited: asyncio.Event) -> Failure:
        """Wait for the engine to exit or stop answering /health; reset the failure count once stable."""
        misses = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.liveness_interval_s):
                    await exited.wait()
            if exited.is_set():
                return await self._exit_failure()
            if self.ready_since and time.monotonic() - self.ready_since >= self.settings.stable_after_s:
                self.failures = 0
            misses = 0 if await self._healthy(timeout=max(2.0, self.settings.liveness_interval_s)) else misses + 1
            if misses >= self.settings.liveness_failures:
                return Failure(
                    "unresponsive", f"the engine stopped answering /health ({misses} checks in a row)", False
                )

    async def _exit_failure(self) -> Failure:
        assert self.process is not None
        self._abort_streams()
        if self.state == "ready":  # before anything else: stop routing requests to a dead port
            self._set_state("restarting")
        await asyncio.sleep(0.2)  # let the log reader catch the last lines written before the exit
        self.process.popen.poll()
        return classify_failure(self.process.log_tail(), self.process.popen.returncode)

    async def _healthy(self, timeout: float) -> bool:
        assert self.client is not None
        try:
            response = await self.client.get("/health", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _fetch_max_model_len(self) -> None:
        """The context length the engine enforces, so the gateway can reject oversized max_tokens."""
        assert self.client is not None
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            response = await self.client.get("/v1/models", timeout=5.0)
            for entry in response.json()["data"]:
                if entry.get("id") == self.model and isinstance(entry.get("max_model_len"), int):
                    self.max_model_len = entry["max_model_len"]
        if self.max_model_len is None:
            self.max_model_len = self.spec.options.max_model_len

    def _abort_streams(self) -> None:
        """Tell every request on this engine that it is gone, so none of them waits for it."""
        self.dead.set()
        for task in list(self.streams):
            task.cancel()

    async def _kill_engine(self) -> None:
        process, client = self.process, self.client
        self.client = self.link = None
        self._abort_streams()
        if process is not None:
            await asyncio.to_thread(process.stop, self.settings.stop_timeout_s)
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------- reporting
    def status(self) -> ReplicaStatus:
        process = self.process
        running = process is not None and process.alive
        return ReplicaStatus(
            id=self.id,
            model=self.model,
            state=self.state,
            pid=process.pid if running and process else None,
            port=process.port if running and process else None,
            uptime_s=round(time.monotonic() - self.ready_since, 1) if self.ready_since and running else None,
            in_flight=self.in_flight,
            tokens_per_s=round(self.tokens.rate(), 2),
            restarts=self.restarts,
            last_error=self.failure.message if self.failure else None,
            log_tail=process.log_tail(20) if process is not None and (self.failure or self.state != "ready") else [],
            memory_bytes=process.memory_bytes() if running and process else None,
            max_model_len=self.max_model_len,
            runner=self.spec.runner,
            tool_call_parser=self.spec.tool_parser,
        )


def _preflight_problem(request: asyncio.Future[httpx.Response]) -> str | None:
    """What was wrong with the pre-flight answer, or ``None`` when it generated."""
    error = request.exception()
    if error is not None:
        return f"{type(error).__name__}: {error}".rstrip(": ")
    response = request.result()
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    try:
        answer = response.json()
        choices = answer.get("choices") or answer.get("data")  # generated text, or pooled vectors
    except (ValueError, AttributeError):
        choices = None
    return None if choices else f"an answer without choices: {response.text[:300]}"
