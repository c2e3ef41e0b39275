"""Where a model's files are: the ``ModelResolver`` seam, and its default that asks the registry.

The gateway serves only what the registry lists as present and verified (a model with
unchecked or corrupt files would fail in the engine with a far worse message), and only
from a directory the gateway can read itself (the engine runs beside it). ``model_paths``
in the settings pins models to local directories without a registry (trusted as is).

The gateway depends on the ``ModelResolver`` protocol only: tests hand it a fake, and the
pool can ask the same object about any model (e.g. one requested but not loaded yet).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import httpx
from llf_common.errors import Conflict, NotFound, UpstreamError
from llf_common.wire import ModelInfo, check_repo_id

from llf_inference.settings import InferenceSettings


class ModelResolver(Protocol):
    """Answers "where are the verified files of ``model``?" or raises the ``LLFError`` that says why not."""

    async def resolve(self, model: str) -> ModelInfo: ...


class RegistryResolver:
    """The production resolver: ``model_paths`` pins first, else the registry's record over HTTP.

    ``transport`` exists for tests (``httpx.MockTransport``); production uses the network.
    """

    def __init__(self, settings: InferenceSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.transport = transport

    async def resolve(self, model: str) -> ModelInfo:
        """The registry's record of ``model`` (``NotFound``/``Conflict``/``UpstreamError`` otherwise)."""
        pinned = self.settings.model_paths.get(model)
        if pinned is not None:
            info = ModelInfo(name=model, revision="local", sha="", path=pinned, size_bytes=0, verified=True)
        else:
            try:  # the registry holds repo ids only; anything else must not become part of its URL
                check_repo_id(model)
            except ValueError:
                raise NotFound(f"model {model!r} is not in the registry: model names look like 'owner/name'") from None
            info = await self._fetch(model)
            if not info.verified:
                raise Conflict(
                    f"model {model} is in the registry but not verified; run `llf models verify {model}` "
                    "(or wait for its pull to finish) before serving it"
                )
        check_readable(model, info.path)
        return info

    async def list_verified(self) -> list[str]:
        """Every model a request may name: the ``model_paths`` pins, then the registry's verified models.

        A registry that is down or answers nonsense lists nothing (the pins still count).
        """
        names = list(self.settings.model_paths)
        try:
            response = await self._get(f"{self.settings.models_url}/v1/models")
            records = response.json() if response.status_code == 200 else []
            names += [r["name"] for r in records if isinstance(r, dict) and r.get("verified") and "name" in r]
        except (UpstreamError, ValueError, TypeError):
            pass
        return list(dict.fromkeys(names))

    async def _get(self, url: str) -> httpx.Response:
        settings = self.settings
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        try:
            async with httpx.AsyncClient(timeout=settings.registry_timeout_s, transport=self.transport) as client:
                return await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"cannot reach the model registry at {settings.models_url} ({type(exc).__name__}); is it running?"
            ) from None

    async def _fetch(self, model: str) -> ModelInfo:
        settings = self.settings
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        url = f"{settings.models_url}/v1/models/{model}"
        try:
            async with httpx.AsyncClient(timeout=settings.registry_timeout_s, transport=self.transport) as client:
                response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"cannot reach the model registry at {settings.models_url} ({type(exc).__name__}); is it running?"
            ) from None
        if response.status_code == 404:
            raise NotFound(f"model {model} is not in the registry; pull it first: `llf pull {model}`")
        if response.status_code != 200:
            raise UpstreamError(f"the model registry answered {response.status_code} for {model}: {_detail(response)}")
        try:  # a newer registry's extra keys are ignored by the wire model (at every depth)
            return ModelInfo.model_validate_json(response.content)
        except ValueError as exc:
            raise UpstreamError(f"the model registry sent an unreadable record for {model}: {exc}") from None


def check_readable(model: str, path: str) -> None:
    """Refuse a directory the engine could not load (unreadable here, or not a model)."""
    directory = Path(path)
    if not directory.is_dir() or not os.access(directory, os.R_OK | os.X_OK):
        raise Conflict(
            f"the files of {model} are at {path}, which the gateway cannot read; "
            "run the gateway where the model store is mounted (same LLF_HOME / LLF_MODELS_DIR)"
        )
    if not (directory / "config.json").is_file():
        raise Conflict(f"{path} has no config.json; it is not a model directory an engine can load")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error") or body)[:200]
    return str(body)[:200]
