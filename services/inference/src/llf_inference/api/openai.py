"""The OpenAI model list. The relay endpoints (completions and the rest) are ``api.data_plane``'s."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llf_inference.api import GatewayDep

router = APIRouter(tags=["openai"])


@router.get("/v1/models", summary="Loaded models and every verified local one, with `state` (OpenAI list format).")
async def list_models(gateway: GatewayDep) -> dict[str, Any]:
    return await gateway.model_list()
