"""The supervisor's side of placement: how a wanted model is sized and placed, and what its engines are told.

``estimate.py`` says how much memory a replica needs and ``placement.py`` where replicas fit; this
module joins them for the supervisor. It turns a ``Want`` (how a model is to be served) into a
``PlacementRequest`` with its memory estimate and asks ``place()`` against a ledger of what the
live replicas hold, tells whether an asleep model's GPU memory is free again to wake it, and
writes a placement's devices, memory share and environment into the spec its engine starts
with. It adds and removes nothing: the supervisor does, with the answers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llf_common.errors import BadRequest

from llf_inference.allocation import Allocation, Placement
from llf_inference.devices import GIB, Inventory
from llf_inference.engine.spec import EngineSpec
from llf_inference.estimate import DEFAULT_CPU_OVERHEAD_BYTES, DEFAULT_GPU_OVERHEAD_BYTES, KvShape, estimate_memory
from llf_inference.placement import PlacementRequest, gib, place
from llf_inference.settings import InferenceSettings


@dataclass(frozen=True)
class Want:
    """How a model is to be served when it is loaded: its spec, replica count, GPUs and size."""

    spec: EngineSpec
    replicas: int | Literal["auto"] = 1
    gpus: tuple[int, ...] | None = None
    weight_bytes: int = 0

    @property
    def model(self) -> str:
        return self.spec.model


class Placer:
    """Places wanted models on the devices this gateway found when it started."""

    def __init__(self, settings: InferenceSettings, inventory: Inventory | Callable[[], Inventory]) -> None:
        self.settings = settings
        self._inventory = inventory

    def devices(self) -> Inventory:
        if callable(self._inventory):  # taken once: "free" is measured before our own engines use it
            self._inventory = self._inventory()
        return self._inventory

    def place(self, want: Want, live: Allocation, first_id: int) -> tuple[Placement, ...]:
        """Placements for ``want``'s replicas on what ``live`` leaves free, named ``r<first_id>`` on.

        Raises ``DoesNotFit`` with the one-line reason.
        """
        inventory = self.devices()
        options = want.spec.options
        cuda = self.settings.resolved_device == "cuda"
        memory = estimate_memory(
            want.weight_bytes,
            kv_shape=_kv_shape(want.spec.path),
            max_model_len=options.max_model_len if cuda else None,
            kv_budget_bytes=(options.cpu_kvcache_space or 1) * GIB if not cuda else GIB,
            overhead_bytes=DEFAULT_GPU_OVERHEAD_BYTES if cuda else DEFAULT_CPU_OVERHEAD_BYTES,
        )
        request = PlacementRequest(
            model=want.model,
            memory=memory,
            replicas=want.replicas,
            tensor_parallel_size=options.tensor_parallel_size or 1,
            gpus=want.gpus,
            device="cuda" if cuda else "cpu",
            min_gpu_share=options.gpu_memory_utilization,
        )
        try:
            return place(inventory, live, request, new_id=lambda k: f"r{first_id + k}")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    def room_to_wake(self, model: str, held: Iterable[Placement], others: Allocation) -> str | None:
        """None if the GPU memory ``model``'s replicas held (``held``) is free beside ``others``, else why not."""
        inventory = self.devices()
        for where in held:
            for index, need in zip(where.gpus, where.gpu_reserved_bytes, strict=True):
                free = inventory.gpu(index).free_bytes - others.gpu_reserved(index)
                if free < need:
                    needed, left = gib(need, up=True), gib(max(free, 0))
                    return f"{model} needs {needed} GiB on GPU{index} to wake; free: {left} GiB"
        return None

    def engine_spec(self, spec: EngineSpec, where: Placement) -> EngineSpec:
        """``spec`` with the placement's devices, memory share and environment (and sleep mode on GPU)."""
        options = spec.options.model_copy(update={k: v for k, v in where.engine_options().items() if v is not None})
        env = {**spec.env, **where.env()}
        if where.device == "cuda" and self.settings.sleep_mode:
            options = options.model_copy(update={"extra_args": [*(options.extra_args or []), "--enable-sleep-mode"]})
            env["VLLM_SERVER_DEV_MODE"] = "1"  # vLLM serves /sleep and /wake_up only in dev mode
        return dataclasses.replace(spec, options=options, env=env)


def _kv_shape(path: str) -> KvShape | None:
    """The KV-cache shape from the model's ``config.json`` (``None`` if it cannot be read)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return KvShape.from_config(config) if isinstance(config, dict) else None
