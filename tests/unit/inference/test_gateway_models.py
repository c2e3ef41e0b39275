"""Several models behind one endpoint, in-process: routing without ``model``, keep_alive, listings, sleep.

Replicas are in-process fake engines (``fakes.ready_replica``); loading a model for real
(engine processes) is covered by the component and integration tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from llf_inference.allocation import Placement
from llf_inference.app import create_app
from llf_inference.devices import GIB, CpuDevice, GpuDevice, Inventory
from llf_inference.engine.spec import EngineSpec
from llf_inference.gateway import Gateway
from llf_inference.placer import Want
from llf_inference.registry import ModelInfo
from llf_inference.replica import Replica
from llf_inference.settings import InferenceSettings
from llf_inference.supervisor import Supervisor

from tests.support.fake_engine import FakeEngine
from tests.support.fake_gateway import MODEL, OTHER
from tests.unit.inference.fakes import MAX_MODEL_LEN, FakeResolver, ready_replica

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


class ListingResolver(FakeResolver):
    async def list_verified(self) -> list[str]:
        return [*self.paths, "test/on-disk"]


@pytest.fixture
def gateway(make_settings: MakeSettings) -> Gateway:
    return Gateway(make_settings(default_model="test/default"), resolver=ListingResolver())


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway.settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


def engine_of(replica: Replica) -> FakeEngine:
    """Give ``replica`` its own in-process engine and return it (to look at what it received)."""
    engine = FakeEngine(replica.model, MAX_MODEL_LEN)
    replica.attach(httpx.AsyncClient(transport=httpx.ASGITransport(app=engine), base_url="http://engine"))
    return engine


async def test_the_keep_alive_field_never_reaches_the_engine_and_sets_the_unload_time(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    engine = engine_of(ready_replica(gateway, MODEL))
    response = await client.post("/v1/chat/completions", json={**HI, "model": MODEL, "keep_alive": "10m"})
    assert response.status_code == 200, response.text
    assert engine.requests == [{**HI, "model": MODEL}]
    [state] = (await client.get("/v1/status")).json()["model_states"]
    assert state["model"] == MODEL and state["state"] == "loaded" and state["keep_alive_s"] == 600.0
    assert state["until"] is not None


async def test_a_keep_alive_that_is_not_a_duration_is_a_400(gateway: Gateway, client: httpx.AsyncClient) -> None:
    ready_replica(gateway, MODEL)
    response = await client.post("/v1/chat/completions", json={**HI, "model": MODEL, "keep_alive": "soon"})
    assert response.status_code == 400 and "keep_alive must be" in response.json()["error"]["message"]


async def test_a_request_without_model_goes_to_the_only_loaded_model(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    ready_replica(gateway, OTHER)
    response = await client.post("/v1/chat/completions", json=HI)
    assert response.status_code == 200 and response.json()["model"] == OTHER


async def test_a_request_without_model_among_several_is_a_400_naming_them(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    ready_replica(gateway, MODEL)
    ready_replica(gateway, OTHER, "r1")
    response = await client.post("/v1/chat/completions", json=HI)
    assert response.status_code == 400
    assert f"several models are loaded ({MODEL}, {OTHER}); name one" in response.json()["error"]["message"]


async def test_a_request_without_model_among_several_goes_to_default_model_when_loaded(
    make_settings: MakeSettings,
) -> None:
    gateway = Gateway(make_settings(default_model=OTHER), resolver=FakeResolver())
    ready_replica(gateway, MODEL)
    ready_replica(gateway, OTHER, "r1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway.settings, gateway)), base_url="http://gateway"
    ) as http:
        response = await http.post("/v1/chat/completions", json=HI)
    assert response.status_code == 200 and response.json()["model"] == OTHER


async def test_nothing_loaded_and_an_unknown_default_model_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=HI)
    assert response.status_code == 404 and "no model is being served" in response.json()["error"]["message"]


async def test_a_model_neither_loaded_nor_in_the_registry_is_a_404_naming_the_loaded_ones(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    ready_replica(gateway, MODEL)
    response = await client.post("/v1/chat/completions", json={**HI, "model": "test/none"})
    error = response.json()["error"]
    assert response.status_code == 404 and error["code"] == "model_not_found" and MODEL in error["message"]


async def test_models_lists_the_pool_then_every_verified_local_model_as_available(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    ready_replica(gateway, MODEL)
    data = (await client.get("/v1/models")).json()["data"]
    assert [(m["id"], m["state"]) for m in data] == [(MODEL, "loaded"), ("test/on-disk", "available")]
    assert data[0]["max_model_len"] == MAX_MODEL_LEN and data[0]["replicas"] == 1


async def test_stop_unloads_one_model_and_an_unknown_one_is_a_404(gateway: Gateway, client: httpx.AsyncClient) -> None:
    ready_replica(gateway, MODEL)
    ready_replica(gateway, OTHER, "r1")
    status = (await client.delete(f"/v1/serve/{OTHER}")).json()
    assert status["models"] == [MODEL] and [m["model"] for m in status["model_states"]] == [MODEL]
    assert (await client.delete(f"/v1/serve/{OTHER}")).status_code == 404


async def test_sleep_and_wake_use_the_engines_sleep_mode_endpoints(gateway: Gateway) -> None:
    engine = engine_of(ready_replica(gateway, MODEL))
    await gateway.supervisor.sleep(MODEL)
    assert engine.sleeping
    await gateway.supervisor.wake(MODEL)
    assert not engine.sleeping


async def test_serve_validates_replicas_and_gpus(client: httpx.AsyncClient) -> None:
    for body in ({"replicas": 0}, {"replicas": "many"}, {"gpus": [-1]}):
        response = await client.post("/v1/serve", json={"model": MODEL, **body})
        assert response.status_code == 422, body


# ----------------------------------------------------------------- GPU: placement and sleep mode (fake inventory)
def gpu_pool(make_settings: MakeSettings) -> tuple[Supervisor, InferenceSettings]:
    settings = make_settings(device="cuda", sleep_mode=True)
    one_gpu = Inventory(
        gpus=(GpuDevice(0, "Fake 16G", "GPU-0", 16 * GIB, 16 * GIB),), cpu=CpuDevice((0, 1), 32 * GIB, 32 * GIB)
    )
    return Supervisor(settings, inventory=one_gpu), settings


def hold(supervisor: Supervisor, settings: InferenceSettings, model: str, rid: str) -> Placement:
    """``model`` (10 GiB of weights) placed and ready, as if its engine had started."""
    spec = EngineSpec.from_settings(settings, model, settings.model_paths[model])
    supervisor.want(Want(spec, 1, None, 10 * GIB))
    assert supervisor.place(model) is None
    [where] = supervisor._placed.pop(model)
    replica = Replica(rid, supervisor._placer.engine_spec(spec, where), settings)
    replica.state = "ready"
    supervisor.replicas.append(replica)
    supervisor.placements[rid] = where
    return where


async def test_a_gpu_replica_gets_its_share_and_sleep_mode_on_the_command_line(make_settings: MakeSettings) -> None:
    supervisor, settings = gpu_pool(make_settings)
    where = hold(supervisor, settings, MODEL, "r0")
    [replica] = supervisor.replicas
    argv = replica.spec.command(8000)
    assert where.gpus == (0,) and "--enable-sleep-mode" in argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == str(where.gpu_memory_utilization)
    env = replica.spec.environment({})
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["VLLM_SERVER_DEV_MODE"] == "1"


async def test_an_asleep_model_frees_its_gpu_memory_for_placement_and_must_find_it_again_to_wake(
    make_settings: MakeSettings,
) -> None:
    supervisor, settings = gpu_pool(make_settings)
    hold(supervisor, settings, MODEL, "r0")
    spec = EngineSpec.from_settings(settings, OTHER, settings.model_paths[OTHER])
    supervisor.want(Want(spec, 1, None, 10 * GIB))
    refusal = supervisor.place(OTHER)
    assert refusal is not None and refusal.startswith(f"{OTHER} needs 1 GPU with") and "GPU0" in refusal
    supervisor.asleep.add(MODEL)
    assert supervisor.place(OTHER) is None  # the sleeping model's share is free
    hold(supervisor, settings, OTHER, "r1")
    refusal = supervisor.place(MODEL)
    assert refusal is not None and refusal.startswith(f"{MODEL} needs") and "to wake" in refusal


class HeavyResolver(FakeResolver):
    """Every model weighs 40 GiB: more than the one fake 16 GiB GPU holds with nothing else on it."""

    async def resolve(self, model: str) -> ModelInfo:
        info = await super().resolve(model)
        return info.model_copy(update={"size_bytes": 40 * GIB})


async def test_serve_refuses_a_model_that_fits_nowhere_at_once_and_unloads_nothing(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(device="cuda")
    one_gpu = Inventory(
        gpus=(GpuDevice(0, "Fake 16G", "GPU-0", 16 * GIB, 16 * GIB),), cpu=CpuDevice((0, 1), 32 * GIB, 32 * GIB)
    )
    gateway = Gateway(settings, resolver=HeavyResolver(paths=dict(settings.model_paths)), inventory=one_gpu)
    ready_replica(gateway, OTHER)
    transport = httpx.ASGITransport(app=create_app(settings, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        response = await http.post("/v1/serve", json={"model": MODEL})  # no wait: still refused before 202
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["code"] == "does_not_fit"
    message = error["message"]
    assert message.startswith(f"cannot load {MODEL}: {MODEL} needs 1 GPU with") and "\n" not in message
    assert [r.model for r in gateway.supervisor.replicas] == [OTHER]  # nothing started, nothing evicted
    await gateway.close()
