"""``/metrics``: the registry's Prometheus metrics (llf_models.metrics), behind the API key like the gateway's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from llf_models.metrics import CONTENT_TYPE, RegistryMetrics

router = APIRouter(tags=["metrics"])


def get_metrics(request: Request) -> RegistryMetrics:
    collector: RegistryMetrics = request.app.state.metrics
    return collector


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics of the registry.")
async def metrics(collector: Annotated[RegistryMetrics, Depends(get_metrics)]) -> Response:
    body = await run_in_threadpool(collector.exposition)  # reads the queue from Redis
    return Response(body, media_type=CONTENT_TYPE)
