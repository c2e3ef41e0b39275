"""The chat page's calls: the gateway's model list, and one streamed chat completion."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from llf_web.api.deps import PartsDep, require_csrf
from llf_web.api.relay import as_response, stream

router = APIRouter(prefix="/api", tags=["chat"])


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=200_000)


class ChatRequest(BaseModel):
    """What the page sends; the gateway validates the sampling values itself (its words reach the page)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=500)
    temperature: float | None = None
    max_tokens: int | None = None
    session_id: str | None = Field(None, max_length=64)


@router.get("/models", summary="The gateway's /v1/models: loaded and available models with their state.")
async def models(parts: PartsDep) -> Response:
    return as_response(await parts.gateway.call("GET", "/v1/models"))


@router.post("/chat", dependencies=[Depends(require_csrf)], summary="A streamed chat completion (SSE relay).")
async def chat(body: ChatRequest, parts: PartsDep) -> Response:
    payload: dict[str, object] = {
        "model": body.model,
        "messages": [m.model_dump() for m in body.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if body.temperature is not None:
        payload["temperature"] = body.temperature
    if body.max_tokens is not None:
        payload["max_tokens"] = body.max_tokens
    if body.session_id:
        payload["user"] = body.session_id
    return await stream(parts.gateway, "POST", "/v1/chat/completions", payload)
