"""The OpenAI-compatible data plane: every model-addressed vLLM endpoint relayed to a replica.

The handlers take the raw ``Request`` (no pydantic body model): the gateway parses the body
once for routing and checks (``llf_inference.checks``) and sends its original bytes to the
engine, unknown fields included. ``X-Session-ID`` is handed over for the affinity routing.
Audio uploads are multipart: the form is read for its ``model`` and the bytes go on as they came.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from llf_inference.api import GatewayDep
from llf_inference.gateway import CHECKS, FORM_ENDPOINTS
from llf_inference.multipart import form_fields

router = APIRouter(tags=["openai"])
SESSION_HEADER = "x-session-id"


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI), streamed or not.")
async def chat_completions(request: Request, gateway: GatewayDep) -> Response:
    started = time.monotonic()
    return await gateway.complete("/v1/chat/completions", await request.body(), started, _session(request))


@router.post("/v1/completions", summary="Text completion (OpenAI), streamed or not.")
async def completions(request: Request, gateway: GatewayDep) -> Response:
    started = time.monotonic()
    return await gateway.complete("/v1/completions", await request.body(), started, _session(request))


@router.get("/v1/models", summary="Loaded models and every verified local one, with `state` (OpenAI list format).")
async def list_models(gateway: GatewayDep) -> dict[str, Any]:
    return await gateway.model_list()


def _session(request: Request) -> str | None:
    return request.headers.get(SESSION_HEADER) or None


def _relay(endpoint: str) -> None:
    async def relay(request: Request, gateway: GatewayDep) -> Response:
        started = time.monotonic()
        return await gateway.complete(endpoint, await request.body(), started, _session(request))

    router.add_api_route(
        endpoint, relay, methods=["POST"], name=endpoint, summary=f"vLLM's {endpoint}, relayed by the body's model."
    )


def _relay_form(endpoint: str) -> None:
    async def relay(request: Request, gateway: GatewayDep) -> Response:
        started = time.monotonic()
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        fields = form_fields(raw, content_type)
        return await gateway.complete_form(endpoint, raw, content_type, fields, started, _session(request))

    router.add_api_route(
        endpoint, relay, methods=["POST"], name=endpoint, summary=f"vLLM's {endpoint} (multipart), relayed by model."
    )


for _endpoint in CHECKS:
    if _endpoint not in ("/v1/chat/completions", "/v1/completions"):
        _relay(_endpoint)
for _endpoint in FORM_ENDPOINTS:
    _relay_form(_endpoint)
