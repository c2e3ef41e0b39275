"""The OpenAI-compatible data plane: completions relayed to a replica, and the served models.

The handlers take the raw ``Request`` (no pydantic body model): the gateway parses the body
once for routing and checks (``llf_inference.checks``) and sends its original bytes to the
engine.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from llf_inference.api import GatewayDep

router = APIRouter(tags=["openai"])


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI), streamed or not.")
async def chat_completions(request: Request, gateway: GatewayDep) -> Response:
    started = time.monotonic()
    return await gateway.complete("/v1/chat/completions", await request.body(), started)


@router.post("/v1/completions", summary="Text completion (OpenAI), streamed or not.")
async def completions(request: Request, gateway: GatewayDep) -> Response:
    started = time.monotonic()
    return await gateway.complete("/v1/completions", await request.body(), started)


@router.get("/v1/models", summary="Loaded models and every verified local one, with `state` (OpenAI list format).")
async def list_models(gateway: GatewayDep) -> dict[str, Any]:
    return await gateway.model_list()
