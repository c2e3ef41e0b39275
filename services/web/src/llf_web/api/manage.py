"""The models and status pages' calls: registry list, pulls and their events, delete; serve, stop, status."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from llf_web.api.deps import PartsDep, require_csrf
from llf_web.api.relay import as_response, stream

router = APIRouter(prefix="/api", tags=["manage"])
csrf = [Depends(require_csrf)]
Segment = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")]
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,200}$")]


class Pull(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo: str = Field(min_length=3, max_length=200)
    revision: str = Field("main", min_length=1, max_length=200)


class Serve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=3, max_length=200)


@router.get("/registry/models", summary="The registry's models (size, verified, served).")
async def registry_models(parts: PartsDep) -> Response:
    return as_response(await parts.registry.call("GET", "/v1/models"))


@router.get("/jobs", summary="The registry's jobs, newest first.")
async def jobs(parts: PartsDep) -> Response:
    return as_response(await parts.registry.call("GET", "/v1/jobs"))


@router.post("/pulls", dependencies=csrf, summary="Start (or join) a pull.")
async def pull(body: Pull, parts: PartsDep) -> Response:
    return as_response(await parts.registry.call("POST", "/v1/pulls", json_body=body.model_dump()))


@router.get("/jobs/{job_id}/events", summary="The registry's job events (SSE relay), until the job ends.")
async def job_events(job_id: JobId, parts: PartsDep) -> Response:
    return await stream(parts.registry, "GET", f"/v1/jobs/{job_id}/events")


@router.delete("/jobs/{job_id}", dependencies=csrf, summary="Cancel a job.")
async def cancel(job_id: JobId, parts: PartsDep, purge: Annotated[bool, Query()] = False) -> Response:
    return as_response(await parts.registry.call("DELETE", f"/v1/jobs/{job_id}", params={"purge": str(purge).lower()}))


@router.delete("/registry/models/{owner}/{name}", dependencies=csrf, summary="Delete a model from the store.")
async def delete_model(owner: Segment, name: Segment, parts: PartsDep) -> Response:
    return as_response(await parts.registry.call("DELETE", f"/v1/models/{owner}/{name}"))


@router.post("/serve", dependencies=csrf, summary="Load a model beside the others (gateway POST /v1/serve).")
async def serve(body: Serve, parts: PartsDep) -> Response:
    return as_response(await parts.gateway.call("POST", "/v1/serve", json_body={"model": body.model}))


@router.delete("/serve/{owner}/{name}", dependencies=csrf, summary="Drain and unload one model.")
async def stop(owner: Segment, name: Segment, parts: PartsDep) -> Response:
    return as_response(await parts.gateway.call("DELETE", f"/v1/serve/{owner}/{name}"))


@router.get("/status", summary="Both services up or not, and the gateway's /v1/status.")
async def status(parts: PartsDep) -> Response:
    registry_up, gateway_up, gateway = await asyncio.gather(
        parts.registry.up("/healthz"), parts.gateway.up("/healthz"), parts.gateway.call("GET", "/v1/status")
    )
    body: dict[str, Any] = {
        "registry": {"up": registry_up, "url": parts.registry.base_url},
        "gateway": {"up": gateway_up, "url": parts.gateway.base_url},
        "status": gateway.body if gateway.status == 200 else None,
        "error": None if gateway.status == 200 else _detail(gateway.body),
    }
    return JSONResponse(body)


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(body)[:300]
