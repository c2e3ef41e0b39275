"""The control plane: serve a model (hot swap), status for `llf status`, readiness, metrics."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from llf_common.errors import NotFound, Unavailable, UpstreamError
from llf_common.wire import GatewayStatus, ServeRequest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llf_inference.api import get_gateway

router = APIRouter(tags=["control"])
health = APIRouter(tags=["health"])


@router.post(
    "/v1/serve",
    status_code=202,
    response_model=GatewayStatus,
    summary="Serve a model from the registry; swaps out the one being served.",
)
async def serve(body: ServeRequest, request: Request, response: Response) -> GatewayStatus:
    status = await get_gateway(request).serve(body.model, body.replicas, wait=body.wait)
    if body.wait:
        response.status_code = 200
    return status


@router.delete("/v1/serve", response_model=GatewayStatus, summary="Stop serving: drain and stop every engine.")
async def unserve(request: Request) -> GatewayStatus:
    gateway = get_gateway(request)
    await gateway.supervisor.unserve()
    return gateway.supervisor.status()


@router.get("/v1/status", response_model=GatewayStatus, summary="Gateway and replica states for `llf status`.")
async def status(request: Request) -> GatewayStatus:
    return get_gateway(request).supervisor.status()


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics of the gateway.")
async def metrics(request: Request) -> Response:
    gateway = get_gateway(request)
    gateway.update_gauges()
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/metrics/engine/{replica}", summary="The engine's own Prometheus metrics, passed through.")
async def engine_metrics(replica: str, request: Request) -> Response:
    found = get_gateway(request).supervisor.find(replica)
    if found is None:
        raise NotFound(f"no replica {replica!r}; see /v1/status for the replica ids")
    client = found.client
    if client is None or found.state not in ("ready", "draining"):
        raise Unavailable(f"replica {replica} is {found.state}; its engine has no metrics now")
    try:
        upstream = await client.get("/metrics", timeout=10.0)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"replica {replica}'s engine did not answer /metrics ({type(exc).__name__})") from None
    return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))


@health.get("/readyz", summary="At least one engine is ready.")
async def readyz(request: Request) -> Any:
    supervisor = get_gateway(request).supervisor
    models = supervisor.served_models()
    if models:
        return {"status": "ready", "models": models}
    retry_after = str(supervisor.settings.retry_after_s)
    return JSONResponse(
        {"status": supervisor.state(), "models": [], "detail": "no engine is ready"},
        status_code=503,
        headers={"Retry-After": retry_after},
    )
