"""The OpenAI-compatible data plane: completions relayed to a replica, and the served models.

The handlers take the raw ``Request`` (no pydantic body model): the body is parsed once for
routing and checks (``llf_inference.checks``) and its original bytes go to the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from llf_common.errors import LLFError

from llf_inference.api import get_gateway
from llf_inference.checks import check_chat, check_completion, check_context, parse_body
from llf_inference.router import pick

router = APIRouter(tags=["openai"])

Check = Callable[[dict[str, Any]], None]


async def _complete(request: Request, endpoint: str, check: Check) -> Response:
    started = time.monotonic()
    gateway = get_gateway(request)
    model: Any = None
    try:
        body = parse_body(await request.body())
        model = body.get("model")
        check(body)
        replica = pick(gateway.supervisor, model)
        check_context(body, replica.max_model_len)
    except LLFError as exc:
        label = model if isinstance(model, str) and model in gateway.supervisor.served_models() else "-"
        gateway.metrics.requests.labels(endpoint, label, str(exc.status_code)).inc()
        raise
    return await gateway.relay.forward(replica, endpoint, await request.body(), body.get("stream") is True, started)


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI), streamed or not.")
async def chat_completions(request: Request) -> Response:
    return await _complete(request, "/v1/chat/completions", check_chat)


@router.post("/v1/completions", summary="Text completion (OpenAI), streamed or not.")
async def completions(request: Request) -> Response:
    return await _complete(request, "/v1/completions", check_completion)


@router.get("/v1/models", summary="Models being served (OpenAI list format).")
async def list_models(request: Request) -> dict[str, Any]:
    supervisor = get_gateway(request).supervisor
    data = []
    for model in supervisor.served_models():
        replicas = supervisor.ready(model)
        data.append(
            {
                "id": model,
                "object": "model",
                "created": int(min(r.created_at for r in replicas)),
                "owned_by": "llf",
                "max_model_len": replicas[0].max_model_len,
                "replicas": len(replicas),
            }
        )
    return {"object": "list", "data": data}
