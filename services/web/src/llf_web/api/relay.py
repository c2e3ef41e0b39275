"""Forwarding helpers: a service's reply goes back to the page as the service worded it."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from llf_web.upstream import Reply, Upstream, relay_bytes, unreachable

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def as_response(reply: Reply) -> Response:
    if reply.body is None:
        return Response(status_code=reply.status)
    return JSONResponse(reply.body, status_code=reply.status)


async def stream(upstream: Upstream, method: str, path: str, json_body: Any = None) -> Response:
    """Relay a server-sent event stream byte for byte; an error reply is passed on as JSON.

    When the browser goes away (stop button, closed tab) Starlette stops iterating, which closes
    the service's response: the gateway then aborts the generation in the engine.
    """
    try:
        response = await upstream.open_stream(method, path, json_body=json_body)
    except httpx.HTTPError as exc:
        return as_response(unreachable(upstream.name, upstream.base_url, exc))
    if response.status_code != 200 or not response.headers.get("content-type", "").startswith("text/event-stream"):
        body = await response.aread()
        await response.aclose()
        try:
            return JSONResponse(
                httpx.Response(response.status_code, content=body).json(), status_code=response.status_code
            )
        except ValueError:
            return JSONResponse({"detail": body.decode("utf-8", "replace")[:500]}, status_code=response.status_code)
    return StreamingResponse(relay_bytes(response), media_type="text/event-stream", headers=SSE_HEADERS)
