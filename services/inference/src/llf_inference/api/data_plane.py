"""The relay endpoints (``/v1/chat/completions`` and every other model-addressed one) as plain ASGI.

Why not FastAPI routes, as everywhere else: the relay needs nothing FastAPI offers (the body goes
on as bytes, the checks are the gateway's own), and FastAPI's routing, exit stack, dependency
solving and exception layer around every request were what kept the gateway's time to first
token behind vllm-router's in benchmark #1 (the README's reading of #1 has the figures). So
``DataPlane`` runs innermost among the shared middlewares (``base_app(inner=...)``: the request
id, the body limit and the logged 500 still apply), answers the relay paths itself and passes
everything else on to FastAPI. ``document`` puts those paths in the OpenAPI document.

The contract is the one the routes had: ``POST`` only (else 405), the API key when one is set
(401), errors OpenAI-shaped, ``X-Session-ID`` handed to the gateway for the affinity routing,
multipart audio routed by its form's ``model`` field.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from llf_common.errors import LLFError, MethodNotAllowed
from llf_common.web import ApiKeyCheck, amend_openapi, error_response, openai_body
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llf_inference.gateway import CHECKS, FORM_ENDPOINTS, Gateway
from llf_inference.multipart import form_fields

SESSION_HEADER = "x-session-id"
SUMMARIES: dict[str, str] = {
    **{endpoint: f"vLLM's {endpoint}, relayed by the body's model." for endpoint in CHECKS},
    **{endpoint: f"vLLM's {endpoint} (multipart), relayed by the form's model." for endpoint in FORM_ENDPOINTS},
    "/v1/chat/completions": "Chat completion (OpenAI), streamed or not.",
    "/v1/completions": "Text completion (OpenAI), streamed or not.",
}
"""Every path the data plane answers, with its line in the API documents."""


class DataPlane:
    """An ASGI middleware answering ``POST`` on the relay paths through ``Gateway.complete``."""

    def __init__(self, app: ASGIApp, gateway: Gateway, api_key: SecretStr | None) -> None:
        self.app = app
        self.gateway = gateway
        self.key = ApiKeyCheck(api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SUMMARIES:
            await self.app(scope, receive, send)
            return
        response = await self._answer(scope, receive)
        if response is not None:
            await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Response | None:
        """The gateway's answer, an error's, or None when the client left before its body was in."""
        started = time.monotonic()
        path: str = scope["path"]
        headers = Headers(scope=scope)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{path} takes POST", headers={"Allow": "POST"})
            self.key.require(headers.get("authorization"))
            raw = await _read_body(receive)
            if raw is None:
                return None
            session = headers.get(SESSION_HEADER) or None
            if path in FORM_ENDPOINTS:
                content_type = headers.get("content-type", "")
                fields = form_fields(raw, content_type)
                return await self.gateway.complete_form(path, raw, content_type, fields, started, session)
            return await self.gateway.complete(path, raw, started, session)
        except LLFError as exc:
            return error_response(exc, openai_body)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def document(app: FastAPI) -> None:
    """Add the data plane's paths to the app's OpenAPI document (FastAPI knows only its own routes)."""

    def amend(schema: dict[str, Any]) -> None:
        schema["paths"].update({path: {"post": _operation(path, summary)} for path, summary in SUMMARIES.items()})
        schema.setdefault("components", {}).setdefault("schemas", {})["OpenAIError"] = _ERROR

    amend_openapi(app, amend)


_ERROR: dict[str, Any] = {
    "title": "OpenAIError",
    "type": "object",
    "description": "The gateway's errors carry ``error`` and ``detail``; an engine's come as the engine sent them.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {}},
        },
        "detail": {},
    },
}


def _operation(path: str, summary: str) -> dict[str, Any]:
    form = path in FORM_ENDPOINTS
    request_schema: dict[str, Any] = {
        "type": "object",
        "required": ["model"],
        "properties": {"model": {"type": "string"}, "stream": {"type": "boolean"}},
    }
    error = {"$ref": "#/components/schemas/OpenAIError"}
    return {
        "tags": ["openai"],
        "summary": summary,
        "operationId": "relay" + path.replace("/", "_"),
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data" if form else "application/json": {"schema": request_schema}},
        },
        "responses": {
            "200": {
                "description": "The engine's answer: JSON, or server-sent events when the request streams.",
                "content": {"application/json": {"schema": {}}, "text/event-stream": {"schema": {"type": "string"}}},
            },
            "default": {
                "description": "An error, OpenAI-shaped (the engine's own errors are passed through as they came).",
                "content": {"application/json": {"schema": error}},
            },
        },
    }
