"""The pool as clients see it: model states for ``/v1/status``, ``/v1/models``, and the loaded set on disk.

Kept apart from ``gateway.py`` so that the shape of these listings is read in one place: the
lifecycle's view of each model (state, unload time, waiting requests) joined with what the
supervisor holds (replicas, context length).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llf_common.wire import ModelStatus

from llf_inference.model_state import ModelView
from llf_inference.supervisor import Supervisor

log = logging.getLogger(__name__)


def model_states(views: Iterable[ModelView], supervisor: Supervisor) -> list[ModelStatus]:
    """Every model in the pool with its state, replicas and unload time (``ollama ps``'s UNTIL)."""
    return [
        ModelStatus(
            model=view.model,
            state=_state(view, supervisor),
            replicas=sum(r.model == view.model for r in supervisor.replicas),
            in_flight=view.in_flight,
            waiting=view.waiting,
            keep_alive_s=view.keep_alive,
            until=datetime.fromtimestamp(view.until, UTC) if view.until is not None else None,
            error=view.error,
        )
        for view in views
    ]


def _state(view: ModelView, supervisor: Supervisor) -> str:
    """The lifecycle's state, corrected by the replicas: "loaded" needs a ready one."""
    if view.state != "loaded":
        return view.state
    mine = [r.state for r in supervisor.replicas if r.model == view.model]
    if not mine or "ready" in mine:
        return "loaded"
    return "failed" if all(s == "failed" for s in mine) else "loading"


def model_entries(supervisor: Supervisor, views: Iterable[ModelView], available: Iterable[str]) -> list[dict[str, Any]]:
    """OpenAI's model list: the pool's models, then every other verified local one as ``available``."""
    data: list[dict[str, Any]] = []
    seen: set[str] = set()
    for view in views:
        ready = supervisor.ready(view.model)
        state = _state(view, supervisor)
        created = int(min(r.created_at for r in ready)) if ready else 0
        entry: dict[str, Any] = {"id": view.model, "object": "model", "created": created, "owned_by": "llf"}
        if ready:
            entry.update(max_model_len=ready[0].max_model_len, replicas=len(ready))
            entry.update(runner=ready[0].spec.runner, tool_call_parser=ready[0].spec.tool_parser)
        entry["state"] = state
        data.append(entry)
        seen.add(view.model)
    for model in available:
        if model not in seen:
            seen.add(model)
            data.append({"id": model, "object": "model", "created": 0, "owned_by": "llf", "state": "available"})
    return data


class LoadedSet:
    """The models loaded now, kept in a file so that a restarted gateway loads them again.

    Written whenever the set changes (atomically: a crash leaves the old or the new file);
    ``freeze()`` at shutdown keeps the last set, since stopping the engines is not unloading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: list[str] | None = None
        self._frozen = False

    def load(self) -> list[str]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if isinstance(data, dict) and isinstance(data.get("models"), list):
                return [m for m in data["models"] if isinstance(m, str)]
        return []

    def save(self, models: list[str]) -> None:
        if self._frozen or models == self._last:
            return
        self._last = list(models)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps({"models": models}))
            os.replace(scratch, self.path)
        except OSError as exc:
            log.warning("cannot record the loaded models", extra={"path": str(self.path), "reason": str(exc)})

    def freeze(self) -> None:
        self._frozen = True
