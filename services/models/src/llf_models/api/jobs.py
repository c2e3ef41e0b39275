"""``/v1/jobs``: list, show, follow (server-sent events) and cancel jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from llf_common.wire import TERMINAL_JOB_STATES, JobInfo
from sse_starlette import EventSourceResponse, ServerSentEvent

from llf_models.api.deps import get_registry
from llf_models.registry import Registry

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
RegistryDep = Annotated[Registry, Depends(get_registry)]


@router.get("", response_model=list[JobInfo], summary="Queued, running, finished and failed jobs, newest first.")
def list_jobs(registry: RegistryDep) -> list[JobInfo]:
    return registry.list_jobs()


@router.get("/{job_id}", response_model=JobInfo, summary="One job, with its progress and queue position.")
def get_job(job_id: str, registry: RegistryDep) -> JobInfo:
    return registry.job(job_id)


@router.get(
    "/{job_id}/events",
    summary="Server-sent events: the job's JobInfo each time it changes, until it ends.",
    response_class=EventSourceResponse,
)
async def job_events(job_id: str, request: Request, registry: RegistryDep) -> EventSourceResponse:
    first = await run_in_threadpool(registry.job, job_id)  # 404 before the stream starts
    interval = registry.settings.progress_interval_s
    return EventSourceResponse(_events(first, request, registry, interval), ping=15)


async def _events(
    first: JobInfo, request: Request, registry: Registry, interval: float
) -> AsyncIterator[ServerSentEvent]:
    info, last, seq = first, "", 0
    while True:
        data = info.model_dump_json()
        if data != last:
            seq += 1
            yield ServerSentEvent(data=data, id=str(seq))
            last = data
        if info.state in TERMINAL_JOB_STATES or await request.is_disconnected():
            return
        await asyncio.sleep(interval)
        info = await run_in_threadpool(registry.job, info.id)


@router.delete("/{job_id}", response_model=JobInfo, summary="Cancel a job (purge=true also removes partial files).")
def cancel_job(job_id: str, registry: RegistryDep, purge: Annotated[bool, Query()] = False) -> JobInfo:
    return registry.cancel(job_id, purge=purge)
