"""``POST /v1/imports``: bring a local directory into the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from llf_common.wire import ImportRequest, JobInfo

from llf_models.api.deps import get_registry
from llf_models.registry import Registry

router = APIRouter(prefix="/v1/imports", tags=["models"])


@router.post("", response_model=JobInfo, status_code=202, summary="Import a local model directory (as a job).")
def create_import(body: ImportRequest, registry: Annotated[Registry, Depends(get_registry)]) -> JobInfo:
    return registry.import_dir(body)
