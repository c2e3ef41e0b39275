"""Several models behind one endpoint, in-process: routing without ``model``, keep_alive, listings, sleep.

Replicas are in-process fake engines (``fakes.ready_replica``); loading a model for real
(engine processes) is covered by the component and integration tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from llf_inference.app import create_app
from llf_inference.gateway import Gateway
from llf_inference.replica import Replica
from llf_inference.settings import InferenceSettings

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
    replica.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=engine), base_url="http://engine")
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


async def test_stop_unloads_one_model_and_an_unknown_one_is_a_404(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
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
