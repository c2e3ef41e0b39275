"""In-process stand-ins for the gateway's unit tests: a resolver, and replicas on the fake engine.

A ``ready_replica`` is a real ``Replica`` in the ``ready`` state whose HTTP client talks to
``FakeEngine`` through ``httpx.ASGITransport``: the router, checks, relay and metrics run for
real, and no process or port exists. What needs a real engine process (start, crash, restart,
stop, disconnects) is covered by the component tests in ``tests/integration/inference``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
from llf_common.errors import NotFound
from llf_common.wire import ModelInfo
from llf_inference.engine.spec import EngineSpec
from llf_inference.gateway import Gateway
from llf_inference.replica import Replica

from tests.support.fake_engine import FakeEngine

MAX_MODEL_LEN = 256


@dataclass
class FakeResolver:
    """A ``ModelResolver`` with fixed answers: ``paths`` resolve, anything else is a 404.

    ``script``, when given, is consumed first, one answer (a path or an exception) per call;
    ``gated`` makes each call wait for one ``release()`` (a test then knows which
    call the gateway is in). ``asked`` records every model asked for.
    """

    paths: dict[str, str] = field(default_factory=dict)
    script: list[str | Exception] = field(default_factory=list)
    gated: bool = False
    asked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._gate: asyncio.Queue[None] = asyncio.Queue()

    def release(self) -> None:
        self._gate.put_nowait(None)

    async def resolve(self, model: str) -> ModelInfo:
        self.asked.append(model)
        if self.gated:
            await self._gate.get()
        answer: str | Exception | None = self.script.pop(0) if self.script else self.paths.get(model)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            raise NotFound(f"model {model} is not in the registry; pull it first: `llf pull {model}`")
        return ModelInfo(name=model, revision="main", sha="", path=answer, size_bytes=0, verified=True)


def ready_replica(gateway: Gateway, model: str, rid: str = "r0", *, target: bool = True) -> Replica:
    """Put a ready replica of ``model`` in the gateway's pool, answering from an in-process fake engine."""
    settings = gateway.settings
    replica = Replica(rid, EngineSpec.from_settings(settings, model, f"/models/{model}"), settings)
    replica.attach(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=FakeEngine(model, MAX_MODEL_LEN)), base_url="http://engine")
    )
    replica.max_model_len = MAX_MODEL_LEN
    replica.state = "ready"
    gateway.supervisor.replicas.append(replica)
    if target:
        gateway.supervisor.target = model
    return replica
