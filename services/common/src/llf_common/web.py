"""FastAPI plumbing every service shares: request ids, error mapping, API key, body limit.

The middlewares are plain ASGI (not ``BaseHTTPMiddleware``) so that streamed responses pass
through untouched and add almost nothing per chunk.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import SecretStr
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llf_common.errors import LLFError, PayloadTooLarge, Unauthorized
from llf_common.logging import REQUEST_ID_HEADER, request_id_var

log = logging.getLogger(__name__)

ErrorBody = Callable[[int, str, str], dict[str, Any]]

# uvicorn closes an idle keep-alive connection after 5 s, exactly when httpx (and most clients)
# still consider it reusable: a request sent on it in that instant fails with a bare ReadError.
# A server that keeps connections longer than its clients do leaves that race to no one.
KEEP_ALIVE_S = 65


def detail_body(status: int, code: str, message: str) -> dict[str, Any]:
    """The registry's and default error shape: ``{"detail": ...}``."""
    return {"detail": message}


def openai_body(status: int, code: str, message: str) -> dict[str, Any]:
    """OpenAI's error shape, used by the gateway's ``/v1`` API."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": code}, "detail": message}


_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case, as ASGI gives names), or None."""
    return next((value for key, value in scope["headers"] if key == name), None)


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` from the request (or makes one) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, _REQUEST_ID_KEY)
        request_id = incoming.decode("latin-1")[:64] if incoming else os.urandom(8).hex()
        token = request_id_var.set(request_id)
        raw_header = (_REQUEST_ID_KEY, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), raw_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Rejects request bodies above ``max_bytes`` with 413 before they are parsed.

    ``path_limits`` gives some paths a limit of their own (audio uploads are larger than prompts).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        body: ErrorBody = detail_body,
        path_limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body = body
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.max_bytes)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(send, limit)
            return
        received = 0
        exceeded = started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLarge(self._message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns an exception raised while it parses a body into "400 error parsing the
            # body"; once the limit is crossed, whatever the app answers is replaced by the 413.
            nonlocal started
            if exceeded and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except PayloadTooLarge:
            if started:
                raise
        if exceeded and not started:
            await self._reject(send, limit)

    def _message(self, limit: int) -> str:
        return f"request body larger than {limit} bytes"

    async def _reject(self, send: Send, limit: int) -> None:
        response = JSONResponse(self.body(413, PayloadTooLarge.code, self._message(limit)), status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - never awaited for a plain response
    return {"type": "http.disconnect"}


def error_response(exc: LLFError, body: ErrorBody = detail_body) -> JSONResponse:
    """The JSON answer for an expected failure: its status, its headers, ``body``'s shape."""
    return JSONResponse(body(exc.status_code, exc.code, exc.detail), status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI, body: ErrorBody = detail_body) -> None:
    """Map ``LLFError`` and validation errors to JSON; anything else is a logged 500."""

    async def on_llf_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LLFError)
        return error_response(exc, body)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message = "; ".join(_describe(error) for error in exc.errors()) or "invalid request"
        payload = body(422, "invalid_request", message)
        if body is detail_body:
            payload = {"detail": message, "errors": _jsonable(exc.errors())}
        return JSONResponse(payload, status_code=422)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(body(500, "internal_error", "internal error; see the service log"), status_code=500)

    app.add_exception_handler(LLFError, on_llf_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg", "invalid"))


def _jsonable(errors: Any) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


class ApiKeyCheck:
    """``Authorization: Bearer <key>`` against the configured key (none configured: anything goes).

    One check for the FastAPI dependency and for plain-ASGI routes (the gateway's data plane).
    """

    def __init__(self, api_key: SecretStr | None) -> None:
        self.expected = api_key.get_secret_value().encode() if api_key else None

    def require(self, authorization: str | None) -> None:
        """Raise ``Unauthorized`` unless the header carries the key, compared in constant time."""
        if self.expected is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        given = token.encode() if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(given, self.expected):
            raise Unauthorized("missing or wrong API key: send 'Authorization: Bearer $LLF_API_KEY'")


def api_key_dependency(api_key: SecretStr | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency enforcing ``Authorization: Bearer <key>`` when a key is set."""
    check = ApiKeyCheck(api_key)

    async def require_api_key(request: Request) -> None:
        check.require(request.headers.get("authorization"))

    return require_api_key


_VALIDATION_ERROR_BODY: dict[str, Any] = {
    "title": "ValidationErrorBody",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "title": "Detail", "description": "One line naming each invalid field."},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
        "error": {"type": "object", "description": "The same, OpenAI-style (the gateway's API)."},
    },
}


def amend_openapi(app: FastAPI, amend: Callable[[dict[str, Any]], None]) -> None:
    """Have ``amend`` edit the app's OpenAPI document once, when FastAPI first builds it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            amend(build())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors_as_sent(app: FastAPI) -> None:
    """Make the OpenAPI document describe the 422 body ``install_error_handlers`` really sends.

    FastAPI documents its own ``HTTPValidationError`` (``detail`` as an array), which clients
    generated from the document would then fail to parse.
    """

    def amend(schema: dict[str, Any]) -> None:
        schemas = schema.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"] = _VALIDATION_ERROR_BODY

    amend_openapi(app, amend)


def install_docs(app: FastAPI, api_key: SecretStr | None) -> None:
    """``/openapi.json``, ``/docs`` and ``/redoc`` as FastAPI serves them, behind ``api_key`` when set."""
    guard = [Depends(api_key_dependency(api_key))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def base_app(
    title: str,
    version: str,
    *,
    body: ErrorBody = detail_body,
    max_body_bytes: int = 1 << 20,
    path_body_bytes: dict[str, int] | None = None,
    api_key: SecretStr | None = None,
    inner: Sequence[Middleware] = (),
    **kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the shared middlewares, error handlers, ``/healthz`` and the API documents.

    The documents (``/openapi.json``, ``/docs``, ``/redoc``) map every route, so they need the
    same key as the routes they describe: only ``/healthz`` and ``/readyz`` are open. ``inner``
    middlewares run inside the shared ones (request id, body limit) and before FastAPI's routing.
    """
    app = FastAPI(
        title=title, version=version, docs_url=None, redoc_url=None, openapi_url=None, middleware=inner, **kwargs
    )
    install_error_handlers(app, body)
    document_errors_as_sent(app)
    install_docs(app, api_key)
    # Each ``add_middleware`` wraps the ones before it (and ``inner``): the request id is outermost.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes, body=body, path_limits=path_body_bytes)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", tags=["health"], summary="The process is up.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
