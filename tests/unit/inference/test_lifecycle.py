"""The model lifecycle (load on demand, room made never stolen, idle unload, sleep) over fake engines.

``FakeEngines`` stands in for the supervisor: starts are gated by events the test opens,
every action is logged, and each wait on the log has a deadline. Nothing here sleeps to
synchronise: waits are on events, and the only short real-time values are the timeouts
and ``keep_alive`` durations under test.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from llf_common.errors import LLFError, Unavailable
from llf_inference.keepalive import UNSET, InvalidKeepAlive, parse_keep_alive, strip_keep_alive
from llf_inference.lifecycle import Lease, Lifecycle, Policy
from llf_inference.placement import DoesNotFit
from llf_inference.room import NoRoom

pytestmark = pytest.mark.anyio
DEADLINE = 5.0


class EngineFailed(LLFError):
    status_code = 503


class FakeEngines:
    """The supervisor's side of ``Engines``: ``slots`` models fit; starts wait for ``open(model)``."""

    def __init__(self, slots: int | None = None, *, sleepy: bool = False, gated: bool = False) -> None:
        self.slots = slots
        self.sleepy = sleepy
        self.gated = gated
        self.log: list[str] = []
        self.running: set[str] = set()
        self.asleep: set[str] = set()
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: dict[str, str] = {}
        self.busy: dict[str, int] = {}
        self.stop_gate: asyncio.Event | None = None
        self.too_big: set[str] = set()
        self._logged = asyncio.Event()

    def _note(self, line: str) -> None:
        self.log.append(line)
        self._logged.set()
        self._logged = asyncio.Event()

    def open(self, model: str) -> None:
        self.gates.setdefault(model, asyncio.Event()).set()

    async def seen(self, line: str, count: int = 1) -> None:
        """Wait (with a deadline) until ``line`` was logged ``count`` times."""
        try:
            async with asyncio.timeout(DEADLINE):
                while self.log.count(line) < count:
                    await self._logged.wait()
        except TimeoutError:
            raise AssertionError(f"never saw {line!r} x{count}; log: {self.log}") from None

    def awake(self) -> int:
        return len(self.running - self.asleep)

    # ------------------------------------------------------------- Engines
    def place(self, model: str) -> str | None:
        if model in self.too_big:
            return f"{model} is bigger than every device"
        if self.slots is not None and self.awake() >= self.slots:
            return f"{self.slots} slot(s), all taken"
        return None

    def fits_alone(self, model: str) -> str | None:
        if model in self.too_big:
            return f"{model} is bigger than every device"
        return "0 slot(s), all taken" if self.slots == 0 else None

    def start(self, model: str) -> None:
        assert model not in self.running, f"{model} started twice"
        self.running.add(model)
        self._note(f"start {model}")

    async def wait_ready(self, model: str) -> None:
        if self.gated:
            await self.gates.setdefault(model, asyncio.Event()).wait()
        if model in self.fail:
            raise EngineFailed(self.fail[model])
        self._note(f"ready {model}")

    async def stop(self, model: str) -> None:
        assert self.busy.get(model, 0) == 0, f"{model} stopped with requests in flight"
        if self.stop_gate is not None:
            self._note(f"stopping {model}")
            await self.stop_gate.wait()
        self.running.discard(model)
        self.asleep.discard(model)
        self._note(f"stop {model}")

    def in_flight(self, model: str) -> int:
        return self.busy.get(model, 0)

    def has(self, model: str) -> bool:
        return model in self.running

    def can_sleep(self, model: str) -> bool:
        return self.sleepy

    async def sleep(self, model: str) -> None:
        self.asleep.add(model)
        self._note(f"sleep {model}")

    async def wake(self, model: str) -> None:
        self.asleep.discard(model)
        self._note(f"wake {model}")


def lifecycle(engines: FakeEngines, **policy: object) -> Lifecycle:
    return Lifecycle(engines, Policy(**{"load_timeout_s": DEADLINE, **policy}))  # type: ignore[arg-type]


async def within(awaitable: object, what: str) -> object:
    try:
        async with asyncio.timeout(DEADLINE):
            return await awaitable  # type: ignore[misc]
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def use(life: Lifecycle, model: str, **kw: object) -> Lease:
    return await within(life.acquire(model, **kw), f"a lease on {model}")  # type: ignore[return-value]


async def settled(*tasks: asyncio.Task[object]) -> None:
    await within(asyncio.gather(*tasks, return_exceptions=True), "the requests to end")


# ----------------------------------------------------------------- load on demand
async def test_concurrent_requests_for_an_unloaded_model_share_one_load() -> None:
    engines = FakeEngines(gated=True)
    life = lifecycle(engines)
    requests = [asyncio.create_task(life.acquire("a/x")) for _ in range(5)]
    await engines.seen("start a/x")
    assert life.state("a/x") == "loading"
    assert life.models()[0].waiting == 5
    engines.open("a/x")
    leases = await within(asyncio.gather(*requests), "the five leases")
    assert engines.log == ["start a/x", "ready a/x"]
    assert {lease.model for lease in leases} == {"a/x"}  # type: ignore[union-attr]
    assert life.models()[0].in_flight == 5 and life.state("a/x") == "loaded"
    await life.close()


async def test_a_load_slower_than_load_timeout_is_a_503_with_retry_after_and_keeps_loading() -> None:
    engines = FakeEngines(gated=True)
    life = lifecycle(engines, load_timeout_s=0.05, retry_after_s=7)
    with pytest.raises(Unavailable) as caught:
        await within(life.acquire("a/x"), "the load timeout")
    assert caught.value.headers == {"Retry-After": "7"}
    assert "load_timeout_s" in caught.value.detail
    assert life.state("a/x") == "loading"  # the load goes on; the next request finds it further along
    engines.open("a/x")
    await engines.seen("ready a/x")
    (await use(life, "a/x")).release()
    assert engines.log.count("start a/x") == 1
    await life.close()


async def test_waiting_requests_beyond_max_waiting_requests_get_a_503_at_once() -> None:
    engines = FakeEngines(gated=True)
    life = lifecycle(engines, max_waiting_requests=2, retry_after_s=3)
    waiting = [asyncio.create_task(life.acquire(m)) for m in ("a/x", "b/y")]
    await engines.seen("start b/y")
    with pytest.raises(Unavailable) as caught:
        await within(life.acquire("a/x"), "the queue refusal")
    assert "max_waiting_requests" in caught.value.detail and caught.value.headers["Retry-After"] == "3"
    engines.open("a/x")
    engines.open("b/y")
    for lease in await within(asyncio.gather(*waiting), "the two queued requests"):  # type: ignore[union-attr]
        lease.release()
    (await use(life, "a/x")).release()  # a loaded model takes requests without queueing
    await life.close()


async def test_a_failed_load_reaches_every_waiter_and_the_next_request_retries() -> None:
    engines = FakeEngines(gated=True)
    engines.fail["a/x"] = "out of memory"
    life = lifecycle(engines)
    requests = [asyncio.create_task(life.acquire("a/x")) for _ in range(2)]
    await engines.seen("start a/x")
    engines.open("a/x")
    results = await within(asyncio.gather(*requests, return_exceptions=True), "the failed load")
    assert [str(r) for r in results] == ["out of memory", "out of memory"]  # type: ignore[union-attr]
    assert life.state("a/x") == "failed" and life.models()[0].error == "out of memory"
    del engines.fail["a/x"]
    (await use(life, "a/x")).release()
    assert engines.log == ["start a/x", "stop a/x", "start a/x", "ready a/x"]
    await life.close()


# ----------------------------------------------------------------- room is made, never stolen
async def test_the_least_recently_used_idle_model_makes_room() -> None:
    engines = FakeEngines()
    life = lifecycle(engines, max_loaded_models=2)
    for model in ("a/x", "b/y", "a/x"):  # b/y is now the least recently used
        (await use(life, model)).release()
    (await use(life, "c/z")).release()
    assert engines.log[-3:] == ["stop b/y", "start c/z", "ready c/z"]
    assert sorted(m.model for m in life.models()) == ["a/x", "c/z"]
    await life.close()


async def test_placement_refusal_evicts_like_the_cap_does() -> None:
    engines = FakeEngines(slots=1)
    life = lifecycle(engines)
    (await use(life, "a/x")).release()
    (await use(life, "b/y")).release()
    assert engines.log == ["start a/x", "ready a/x", "stop a/x", "start b/y", "ready b/y"]
    await life.close()


async def test_a_model_with_a_request_in_flight_is_never_evicted() -> None:
    engines = FakeEngines()
    life = lifecycle(engines, max_loaded_models=1)
    holding = await use(life, "a/x")
    other = asyncio.create_task(life.acquire("b/y"))
    await within(_until(lambda: life.state("b/y") == "loading"), "b/y to wait for room")
    for _ in range(3):
        await asyncio.sleep(0)  # give an eviction every chance to happen (it must not)
    assert "stop a/x" not in engines.log and "start b/y" not in engines.log
    holding.release()
    lease = await within(other, "b/y once a/x is idle")
    assert engines.log[-3:] == ["stop a/x", "start b/y", "ready b/y"]
    lease.release()  # type: ignore[union-attr]
    await life.close()


async def test_requests_waiting_for_a_load_protect_the_model_from_eviction() -> None:
    engines = FakeEngines(gated=True)
    life = lifecycle(engines, max_loaded_models=1)
    first = asyncio.create_task(life.acquire("a/x"))
    await engines.seen("start a/x")
    second = asyncio.create_task(life.acquire("b/y"))
    await within(_until(lambda: life.state("b/y") == "loading"), "b/y to queue")
    engines.open("a/x")
    engines.open("b/y")
    lease = await within(first, "a/x for its waiter")
    assert "stop a/x" not in engines.log  # its waiter was served before anything could evict it
    lease.release()  # type: ignore[union-attr]
    (await within(second, "b/y")).release()  # type: ignore[union-attr]
    assert engines.log == ["start a/x", "ready a/x", "stop a/x", "start b/y", "ready b/y"]
    await life.close()


async def test_two_clients_alternating_models_on_a_one_model_budget_swap_once_per_turn() -> None:
    engines = FakeEngines(gated=True)
    life = lifecycle(engines, max_loaded_models=1)
    served: list[str] = []

    async def client(model: str) -> None:
        lease = await life.acquire(model)
        served.append(model)
        lease.release()

    turn = [asyncio.create_task(client(m)) for m in ("a/x", "b/y", "a/x", "b/y")]
    await engines.seen("start a/x")
    engines.open("a/x")
    engines.open("b/y")
    await settled(*turn)
    assert [t.exception() for t in turn] == [None] * 4
    assert served == ["a/x", "a/x", "b/y", "b/y"]  # each load served everything queued for it
    assert engines.log == ["start a/x", "ready a/x", "stop a/x", "start b/y", "ready b/y"]
    turn = [asyncio.create_task(client(m)) for m in ("a/x", "b/y", "a/x", "b/y")]
    await settled(*turn)
    assert engines.log.count("start a/x") + engines.log.count("start b/y") <= 4  # one swap per turn at most
    await life.close()


async def test_two_clients_looping_on_two_models_never_waste_a_load() -> None:
    engines = FakeEngines()
    life = lifecycle(engines, max_loaded_models=1)
    served: list[str] = []

    async def client(model: str) -> None:
        for _ in range(5):
            lease = await life.acquire(model)
            served.append(model)
            await asyncio.sleep(0)  # the answer takes a moment
            lease.release()

    await settled(*(asyncio.create_task(client(m)) for m in ("a/x", "b/y")))
    assert sorted(served) == ["a/x"] * 5 + ["b/y"] * 5
    starts = [line.split()[1] for line in engines.log if line.startswith("start")]
    runs = [m for i, m in enumerate(served) if i == 0 or served[i - 1] != m]
    assert starts == runs  # one load per run of answers: every load served before its model left
    await life.close()


async def test_a_model_that_fits_nowhere_is_refused_with_the_reason_and_nothing_starts() -> None:
    engines = FakeEngines(slots=0)
    life = lifecycle(engines)
    with pytest.raises(DoesNotFit, match=r"cannot load a/x: 0 slot\(s\), all taken"):
        await within(life.acquire("a/x"), "the refusal")
    assert engines.log == [] and life.models() == []
    await life.close()


async def test_a_model_too_big_for_an_empty_machine_evicts_nothing() -> None:
    engines = FakeEngines(slots=1)
    engines.too_big.add("big/z")
    life = lifecycle(engines)
    (await use(life, "a/x")).release()  # idle, and the LRU victim if eviction could help
    with pytest.raises(DoesNotFit, match=r"cannot load big/z: big/z is bigger than every device"):
        await within(life.acquire("big/z"), "the refusal")
    assert engines.log == ["start a/x", "ready a/x"]  # a/x was not unloaded for nothing
    assert "a/x" in engines.running
    await life.close()


async def test_no_room_while_every_holder_stays_busy_is_a_503_after_load_timeout() -> None:
    engines = FakeEngines()
    life = lifecycle(engines, max_loaded_models=1, load_timeout_s=0.05)
    holding = await use(life, "a/x")
    with pytest.raises(Unavailable) as caught:
        await within(life.acquire("b/y"), "the timeout")
    assert "Retry-After" in caught.value.headers
    assert engines.log == ["start a/x", "ready a/x"]
    holding.release()
    await within(_until(lambda: life.state("b/y") is None), "the abandoned load to give up")
    await life.close()


async def test_a_load_that_finds_no_room_in_time_names_the_models_in_use() -> None:
    engines = FakeEngines()
    life = lifecycle(engines, max_loaded_models=1, load_timeout_s=0.05)
    holding = await use(life, "a/x")
    load = life.load("b/y")
    assert load is not None
    with pytest.raises(NoRoom, match=r"no room for b/y within 0.05 s: max_loaded_models=1 are loaded; in use: a/x"):
        await within(load, "the load to give up")
    holding.release()
    assert life.load("a/x") is None  # loaded already: nothing to wait for
    await life.close()


# ----------------------------------------------------------------- idle unload
async def test_keep_alive_0_unloads_once_the_last_request_is_done() -> None:
    engines = FakeEngines()
    life = lifecycle(engines)
    one, two = await use(life, "a/x", keep_alive=0.0), await use(life, "a/x")
    one.release()
    assert life.state("a/x") == "loaded"  # the other request is still in flight
    two.release()
    await engines.seen("stop a/x")
    await within(_until(lambda: life.models() == []), "a/x to be forgotten")
    await life.close()


async def test_keep_alive_minus_1_never_unloads_by_time() -> None:
    engines = FakeEngines()
    life = lifecycle(engines, keep_alive=0.0)
    (await use(life, "a/x", keep_alive=parse_keep_alive(-1))).release()
    (view,) = life.models()
    assert view.state == "loaded" and view.until is None and view.keep_alive is None
    await life.close()


async def test_keep_alive_duration_unloads_after_it_and_the_next_request_loads_again() -> None:
    engines = FakeEngines()
    life = lifecycle(engines)
    before = time.time()
    (await use(life, "a/x", keep_alive=parse_keep_alive("50ms"))).release()
    (view,) = life.models()
    assert view.until is not None and before + 0.05 <= view.until <= time.time() + 0.05
    await engines.seen("stop a/x")
    (await use(life, "a/x")).release()
    assert engines.log == ["start a/x", "ready a/x", "stop a/x", "start a/x", "ready a/x"]
    await life.close()


async def test_a_request_cancels_the_idle_timer_and_the_default_comes_from_the_policy() -> None:
    engines = FakeEngines()
    life = lifecycle(engines, keep_alive=3600.0, keep_alive_overrides={"b/y": None})
    (await use(life, "a/x")).release()
    (await use(life, "b/y")).release()
    views = {v.model: v for v in life.models()}
    assert views["a/x"].until is not None and views["b/y"].until is None
    lease = await use(life, "a/x")
    assert life.models()[0].until is None  # busy: no unload time
    lease.release()
    await life.close()


async def test_a_request_during_an_idle_unload_waits_and_loads_the_model_again() -> None:
    engines = FakeEngines()
    engines.stop_gate = asyncio.Event()
    life = lifecycle(engines)
    (await use(life, "a/x", keep_alive=0.0)).release()
    await engines.seen("stopping a/x")
    assert life.state("a/x") == "unloading"
    request = asyncio.create_task(life.acquire("a/x"))
    await within(_until(lambda: life.models()[0].waiting == 1), "the request to wait")
    engines.stop_gate.set()
    (await within(request, "a/x loaded again")).release()  # type: ignore[union-attr]
    assert engines.log == ["start a/x", "ready a/x", "stopping a/x", "stop a/x", "start a/x", "ready a/x"]
    await life.close()


async def test_unload_stops_a_model_now() -> None:
    engines = FakeEngines()
    life = lifecycle(engines)
    (await use(life, "a/x")).release()
    assert await within(life.unload("a/x"), "the unload") is True
    assert await within(life.unload("a/x"), "a second unload") is False
    assert engines.log[-1] == "stop a/x" and life.models() == []
    await life.close()


# ----------------------------------------------------------------- GPU sleep mode
async def test_an_idle_model_that_can_sleep_sleeps_and_its_next_request_wakes_it() -> None:
    engines = FakeEngines(sleepy=True)
    life = lifecycle(engines, keep_alive=0.0)
    (await use(life, "a/x")).release()
    await engines.seen("sleep a/x")
    await within(_until(lambda: life.state("a/x") == "asleep"), "a/x to be asleep")
    (await use(life, "a/x")).release()
    assert engines.log[:4] == ["start a/x", "ready a/x", "sleep a/x", "wake a/x"]
    await life.close()


async def test_room_short_on_device_memory_is_made_by_sleeping_the_idle_model() -> None:
    engines = FakeEngines(slots=1, sleepy=True)
    life = lifecycle(engines)
    (await use(life, "a/x")).release()
    (await use(life, "b/y")).release()
    assert engines.log == ["start a/x", "ready a/x", "sleep a/x", "start b/y", "ready b/y"]
    (await use(life, "a/x")).release()  # wakes a/x; b/y sleeps to give it the device
    assert engines.log[-2:] == ["sleep b/y", "wake a/x"]
    await life.close()


# ----------------------------------------------------------------- keep_alive on the wire
def test_keep_alive_accepts_ollama_durations_numbers_0_and_negatives() -> None:
    assert parse_keep_alive("5m") == 300.0
    assert parse_keep_alive("1h30m") == 5400.0
    assert parse_keep_alive("1.5s") == 1.5 and parse_keep_alive("500ms") == 0.5
    assert parse_keep_alive(300) == 300.0 and parse_keep_alive("300") == 300.0
    assert parse_keep_alive(0) == 0.0 and parse_keep_alive("0") == 0.0
    assert parse_keep_alive(-1) is None and parse_keep_alive("-1") is None and parse_keep_alive("-5m") is None
    for bad in ("soon", "5 m", "", "m", "5mm", True, None, [1], float("inf")):
        with pytest.raises(InvalidKeepAlive, match="keep_alive must be"):
            parse_keep_alive(bad)


def test_the_keep_alive_field_is_removed_before_the_body_reaches_the_engine() -> None:
    raw = b'{"model": "a/x", "messages": [{"role": "user", "content": "h\xc3\xa9"}]}'
    assert strip_keep_alive(raw, json.loads(raw)) == (raw, UNSET)
    assert strip_keep_alive(raw, json.loads(raw))[0] is raw  # untouched bytes, no re-encoding
    body = {"model": "a/x", "keep_alive": "10m", "messages": [{"role": "user", "content": "hé"}]}
    sent, keep_alive = strip_keep_alive(json.dumps(body).encode(), body)
    assert keep_alive == 600.0
    assert json.loads(sent) == {"model": "a/x", "messages": [{"role": "user", "content": "hé"}]}
    assert "keep_alive" in body  # the caller's dict is not modified


async def _until(predicate: object) -> None:
    """Yield to the loop until ``predicate()`` holds (callers bound it with ``within``)."""
    while not predicate():  # type: ignore[operator]
        await asyncio.sleep(0)


# ----------------------------------------------------------------- models the supervisor changed itself
async def test_requests_for_a_model_being_swapped_in_wait_for_the_swap() -> None:
    engines = FakeEngines()
    life = lifecycle(engines)
    swapped = asyncio.Event()

    async def swap() -> None:
        await swapped.wait()
        engines.running.add("b/y")

    done = life.adopt("b/y", swap())
    request = asyncio.create_task(life.acquire("b/y"))
    await within(_until(lambda: life.models()[0].waiting == 1), "the request to wait for the swap")
    assert life.state("b/y") == "loading" and engines.log == []  # no second load of its own
    swapped.set()
    (await within(request, "the swapped-in model")).release()  # type: ignore[union-attr]
    await within(done, "the swap task")
    assert life.state("b/y") == "loaded" and life.held() == ["b/y"]
    await life.close()


async def test_a_failed_swap_leaves_a_failed_model_only_if_its_replicas_exist() -> None:
    engines = FakeEngines()
    life = lifecycle(engines)

    async def fails() -> None:
        raise EngineFailed("bad weights")

    with pytest.raises(EngineFailed):
        await within(life.adopt("b/y", fails()), "the failed swap")
    assert life.models() == []  # nothing was started: nothing to show
    engines.running.add("c/z")
    with pytest.raises(EngineFailed):
        await within(life.adopt("c/z", fails()), "the failed swap")
    assert life.state("c/z") == "failed" and life.models()[0].error == "bad weights"
    await life.close()


async def test_a_model_the_supervisor_dropped_is_forgotten_and_loads_again_on_demand() -> None:
    engines = FakeEngines()
    life = lifecycle(engines)
    engines.running.add("a/x")
    life.track("a/x")
    assert life.state("a/x") == "loaded" and life.held() == ["a/x"]
    engines.running.discard("a/x")
    life.dropped("a/x")
    assert life.models() == []
    (await use(life, "a/x")).release()
    assert engines.log == ["start a/x", "ready a/x"]
    await life.close()
