"""The control plane: serve a model (hot swap), status for `llf status`, readiness, metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from llf_common.wire import GatewayStatus, ServeRequest

from llf_inference.api import GatewayDep
from llf_inference.metrics import CONTENT_TYPE
from llf_inference.settings import EngineOptions

router = APIRouter(tags=["control"])
health = APIRouter(tags=["health"])


@router.post(
    "/v1/serve",
    status_code=202,
    response_model=GatewayStatus,
    summary="Load a model from the registry beside the others, or in place of `replace` (hot swap).",
)
async def serve(body: ServeRequest, gateway: GatewayDep, response: Response) -> GatewayStatus:
    engine = EngineOptions(runner=body.runner, convert=body.convert) if body.runner or body.convert else None
    status = await gateway.serve(
        body.model, body.replicas, wait=body.wait, replace=body.replace, gpus=body.gpus, engine=engine
    )
    if body.wait:
        response.status_code = 200
    return status


@router.delete("/v1/serve", response_model=GatewayStatus, summary="Stop serving: drain and stop every engine.")
async def unserve(gateway: GatewayDep) -> GatewayStatus:
    return await gateway.unserve()


@router.delete("/v1/serve/{model:path}", response_model=GatewayStatus, summary="Drain and unload one model.")
async def stop(model: str, gateway: GatewayDep) -> GatewayStatus:
    return await gateway.stop(model)


@router.get("/v1/status", response_model=GatewayStatus, summary="Gateway and replica states for `llf status`.")
async def status(gateway: GatewayDep) -> GatewayStatus:
    return gateway.status()


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics of the gateway.")
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.exposition(), media_type=CONTENT_TYPE)


@router.get("/metrics/engine/{replica}", summary="The engine's own Prometheus metrics, passed through.")
async def engine_metrics(replica: str, gateway: GatewayDep) -> Response:
    found = await gateway.engine_metrics(replica)
    return Response(found.body, found.status_code, media_type=found.content_type)


@health.get("/readyz", summary="At least one engine is ready.")
async def readyz(gateway: GatewayDep) -> Any:
    readiness = gateway.readiness()
    if readiness.ready:
        return {"status": "ready", "models": readiness.models}
    return JSONResponse(
        {"status": readiness.state, "models": [], "detail": "no engine is ready"},
        status_code=503,
        headers={"Retry-After": str(readiness.retry_after_s)},
    )
