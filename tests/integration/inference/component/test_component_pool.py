"""The replica state machine and the pool, driven directly (no HTTP API) over fake-engine processes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest
from llf_inference.engine.process import group_members
from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica
from llf_inference.router import pick
from llf_inference.settings import InferenceSettings
from llf_inference.supervisor import Supervisor

from tests.support.fake_gateway import MODEL, OTHER
from tests.support.net import async_wait_for

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]


NewReplica = Callable[..., Replica]
NewSupervisor = Callable[[InferenceSettings], Supervisor]


def spec(settings: InferenceSettings, model: str = MODEL) -> EngineSpec:
    return EngineSpec.from_settings(settings, model, settings.model_paths[model])


def with_engine_env(settings: InferenceSettings, **env: str) -> InferenceSettings:
    """``settings`` whose engines start with ``env`` (the fake engine's ``FAKE_*`` misbehaviour)."""
    return InferenceSettings(**{**settings.model_dump(), "engine_env": env})


async def serving_then_switching(make_settings: MakeSettings, new_supervisor: NewSupervisor) -> Supervisor:
    """A start-then-switch pool serving MODEL, ready: the old model a switch keeps serving."""
    settings = make_settings(swap_strategy="start-then-switch")
    supervisor = new_supervisor(settings)
    await supervisor.serve(spec(settings))
    await supervisor.wait(20)
    return supervisor


@pytest.fixture
async def new_replica() -> AsyncIterator[NewReplica]:
    """``new_replica(settings, on_restart=None)``: replica ``r0`` of MODEL; every one made is stopped at the end."""
    made: list[Replica] = []

    def make(settings: InferenceSettings, on_restart: Callable[[str], None] | None = None) -> Replica:
        replica = Replica("r0", spec(settings), settings, on_restart=on_restart)
        made.append(replica)
        return replica

    try:
        yield make
    finally:
        for replica in made:
            await replica.stop()


@pytest.fixture
async def new_supervisor() -> AsyncIterator[NewSupervisor]:
    """``new_supervisor(settings)``: a pool whose engines are all stopped at the end, whatever happened."""
    made: list[Supervisor] = []

    def make(settings: InferenceSettings) -> Supervisor:
        supervisor = Supervisor(settings)
        made.append(supervisor)
        return supervisor

    try:
        yield make
    finally:
        for supervisor in made:
            await supervisor.shutdown(drain_timeout=0)


async def test_a_replica_goes_starting_then_ready_and_stops_its_whole_group(
    make_settings: MakeSettings, new_replica: NewReplica
) -> None:
    settings = make_settings(engine_env={"FAKE_STUBBORN_CHILD": "1"}, stop_timeout_s=1.0)
    replica = new_replica(settings)
    replica.start()
    assert replica.state == "starting"
    assert await replica.wait_settled(20) == "ready"
    assert replica.max_model_len == 256 and replica.process is not None
    pgid = replica.process.pgid
    assert len(group_members(pgid)) == 2  # the engine and its child that ignores SIGTERM
    await replica.stop()
    assert replica.state == "stopped"
    assert group_members(pgid) == []
    assert replica.status().pid is None


async def test_the_engine_log_is_kept_as_a_tail_and_in_a_file(
    make_settings: MakeSettings, new_replica: NewReplica
) -> None:
    settings = make_settings()
    replica = new_replica(settings)
    replica.start()
    await replica.wait_settled(20)
    await replica.stop()
    assert replica.process is not None
    assert any("fake engine argv=" in line for line in replica.process.log_tail())
    assert "--served-model-name" in (settings.run_path / "engines" / "test--tiny-r0.log").read_text()
    assert "kvcache=1" in replica.process.log_tail()[0]


async def test_a_crashed_engine_is_restarted_and_counted(make_settings: MakeSettings, new_replica: NewReplica) -> None:
    restarted: list[str] = []
    settings = make_settings()
    replica = new_replica(settings, on_restart=restarted.append)
    replica.start()
    await replica.wait_settled(20)
    assert replica.process is not None
    first_pid = replica.process.pid
    os.kill(first_pid, signal.SIGKILL)
    await async_wait_for(lambda: replica.state == "restarting", 10, "replica.state == 'restarting'")
    assert replica.dead.is_set()
    await async_wait_for(lambda: replica.state == "ready", 10, "replica.state == 'ready'")
    assert replica.process.pid != first_pid
    assert replica.restarts == 1 and restarted == [MODEL]
    assert replica.failure is not None and replica.failure.kind == "killed"
    await replica.stop()


async def test_a_replica_gives_up_after_restart_max_failures_and_says_why(
    make_settings: MakeSettings, new_replica: NewReplica
) -> None:
    settings = make_settings(restart_max=2, engine_env={"FAKE_FAIL": "RuntimeError: boom", "FAKE_EXIT_CODE": "3"})
    replica = new_replica(settings)
    replica.start()
    assert await replica.wait_settled(30) == "failed"
    assert replica.restarts == 2
    assert replica.failure is not None
    assert "gave up after 3 failures in a row" in replica.failure.message
    assert "exited with code 3: RuntimeError: boom" in replica.failure.message
    await replica.stop()
    assert replica.state == "failed"


@pytest.mark.parametrize(
    ("log", "kind"),
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out_of_memory"),
        ("ValueError: Model architectures ['FooForCausalLM'] are not supported for now.", "unsupported_architecture"),
        ("safetensors_rust.SafetensorError: Error while deserializing header: invalid header length", "bad_weights"),
    ],
)
async def test_a_failure_no_restart_can_fix_fails_at_once(
    make_settings: MakeSettings, log: str, kind: str, new_replica: NewReplica
) -> None:
    settings = make_settings(engine_env={"FAKE_FAIL": log})
    replica = new_replica(settings)
    replica.start()
    assert await replica.wait_settled(20) == "failed"
    assert replica.restarts == 0
    assert replica.failure is not None and replica.failure.kind == kind
    status = replica.status()
    assert status.last_error == replica.failure.message and any(log in line for line in status.log_tail)


async def test_an_engine_that_never_gets_healthy_times_out(
    make_settings: MakeSettings, new_replica: NewReplica
) -> None:
    settings = make_settings(readiness_timeout_s=0.5, engine_env={"FAKE_START_DELAY": "30"})
    replica = new_replica(settings)
    replica.start()
    assert await replica.wait_settled(20) == "failed"
    assert replica.failure is not None and replica.failure.kind == "timeout"
    assert replica.process is not None and group_members(replica.process.pgid) == []


async def test_an_engine_that_stops_answering_health_is_restarted(
    make_settings: MakeSettings, tmp_path: Path, new_replica: NewReplica
) -> None:
    settings = make_settings(
        restart_max=0, engine_env={"FAKE_UNHEALTHY_AFTER": "0.5"}, liveness_interval_s=0.1, liveness_failures=2
    )
    replica = new_replica(settings)
    replica.start()
    assert await replica.wait_settled(20) == "ready"
    await async_wait_for(lambda: replica.state == "failed", 20, "replica.state == 'failed'")
    assert replica.failure is not None and replica.failure.kind == "unresponsive"


async def test_a_missing_engine_python_fails_with_a_readable_reason(
    make_settings: MakeSettings, new_replica: NewReplica
) -> None:
    settings = make_settings(engine_command=["/nonexistent/python", "-m", "vllm"])
    replica = new_replica(settings)
    replica.start()
    assert await replica.wait_settled(10) == "failed"
    assert replica.failure is not None and "cannot start the engine (/nonexistent/python)" in replica.failure.message


async def test_a_successful_start_after_a_crash_resets_nothing_but_recovers(
    make_settings: MakeSettings, tmp_path: Path, new_replica: NewReplica
) -> None:
    settings = make_settings(engine_env={"FAKE_STATE": str(tmp_path / "state"), "FAKE_FAIL_ONCE": "1"})
    replica = new_replica(settings)
    replica.start()
    assert await replica.wait_settled(20) == "ready"
    assert replica.restarts == 1 and replica.failure is not None and "crashed once" in replica.failure.message
    await replica.stop()


async def test_drain_waits_for_requests_in_flight_up_to_a_bound(
    make_settings: MakeSettings, new_replica: NewReplica
) -> None:
    settings = make_settings()
    replica = new_replica(settings)
    replica.acquire()
    assert await replica.drain(0.05) is False and replica.state == "draining"
    asyncio.get_running_loop().call_later(0.05, replica.release)
    assert await replica.drain(5) is True


# ------------------------------------------------------------------ the pool
async def test_supervisor_serves_then_swaps_stop_then_start(
    make_settings: MakeSettings, new_supervisor: NewSupervisor
) -> None:
    settings = make_settings()
    supervisor = new_supervisor(settings)
    assert supervisor.state() == "idle"
    await supervisor.serve(spec(settings))
    assert supervisor.state() == "starting"
    status = await supervisor.wait(20)
    assert status.state == "ready" and status.models == [MODEL]
    old = supervisor.replicas[0]
    old.acquire()  # a request in flight on the old model: the swap waits for it (bounded)
    await supervisor.serve(spec(settings, OTHER))
    await async_wait_for(lambda: supervisor.state() == "switching", 10, "supervisor.state() == 'switching'")
    assert old.state == "draining"
    old.release()
    status = await supervisor.wait(20)
    assert status.state == "ready" and status.models == [OTHER] and old.state == "stopped"
    await supervisor.shutdown()
    assert supervisor.replicas == []


async def test_supervisor_start_then_switch_keeps_the_old_model_until_the_new_one_is_ready(
    make_settings: MakeSettings, new_supervisor: NewSupervisor
) -> None:
    supervisor = await serving_then_switching(make_settings, new_supervisor)
    slow = with_engine_env(supervisor.settings, FAKE_START_DELAY="0.5")
    await supervisor.serve(spec(slow, OTHER))
    await async_wait_for(lambda: any(r.model == OTHER for r in supervisor.replicas), 5, "the new model's replica")
    assert supervisor.served_models() == [MODEL]  # still serving while the new engine starts
    assert supervisor.state() == "switching"
    assert pick(supervisor, None).model == MODEL  # no model named: the old one answers meanwhile
    status = await supervisor.wait(20)
    assert status.models == [OTHER] and len(supervisor.replicas) == 1
    await supervisor.shutdown()


async def test_start_then_switch_keeps_serving_the_old_model_when_the_new_one_fails(
    make_settings: MakeSettings, new_supervisor: NewSupervisor
) -> None:
    supervisor = await serving_then_switching(make_settings, new_supervisor)
    broken = with_engine_env(supervisor.settings, FAKE_FAIL="SafetensorError: bad")
    await supervisor.serve(spec(broken, OTHER))
    status = await supervisor.wait(20)
    assert status.models == [MODEL] and status.target == MODEL and status.state == "ready"
    assert status.message is not None and "switch to test/other failed, still serving test/tiny" in status.message
    await supervisor.shutdown()


async def test_a_new_serve_cancels_a_swap_in_progress(
    make_settings: MakeSettings, new_supervisor: NewSupervisor
) -> None:
    settings = make_settings()
    slow = with_engine_env(settings, FAKE_START_DELAY="30")
    supervisor = new_supervisor(settings)
    await supervisor.serve(spec(slow))
    starting = await async_wait_for(
        lambda: supervisor.replicas and supervisor.replicas[0].process, 5, "the slow engine's process"
    )
    pgid = starting.pgid
    await supervisor.serve(spec(settings, OTHER))
    status = await supervisor.wait(20)
    assert status.models == [OTHER] and [r.model for r in status.replicas] == [OTHER]
    assert group_members(pgid) == []
    await supervisor.unserve()
    assert supervisor.status().state == "idle"


async def test_a_failed_model_makes_the_gateway_failed_with_a_message(
    make_settings: MakeSettings, new_supervisor: NewSupervisor
) -> None:
    settings = make_settings(engine_env={"FAKE_FAIL": "Unsupported CPU attention configuration: head_dim=16"})
    supervisor = new_supervisor(settings)
    await supervisor.serve(spec(settings))
    status = await supervisor.wait(20)
    assert status.state == "failed"
    assert status.message is not None and status.message.startswith("test/tiny failed to start: unsupported model")
    await supervisor.shutdown()


async def test_shutdown_leaves_no_engine_process(make_settings: MakeSettings, new_supervisor: NewSupervisor) -> None:
    settings = make_settings(engine_env={"FAKE_STUBBORN_CHILD": "1"}, stop_timeout_s=0.5)
    supervisor = new_supervisor(settings)
    await supervisor.serve(spec(settings), replicas=2)
    await supervisor.wait(20)
    groups = [r.process.pgid for r in supervisor.replicas if r.process]
    assert len(groups) == 2
    await supervisor.shutdown(drain_timeout=0.1)
    assert all(group_members(g) == [] for g in groups)
    children = [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    assert not [p for p in children if "fake_engine" in " ".join(p.cmdline())]
