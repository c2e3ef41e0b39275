"""``/v1/models``: list, show, delete and verify stored models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from llf_common.wire import JobInfo, ModelInfo

from llf_models.api.deps import get_registry, model_id
from llf_models.registry import Registry

router = APIRouter(prefix="/v1/models", tags=["models"])
RegistryDep = Annotated[Registry, Depends(get_registry)]


@router.get("", response_model=list[ModelInfo], summary="Models in the store.")
def list_models(registry: RegistryDep) -> list[ModelInfo]:
    return registry.models()


@router.post("/{repo:path}/verify", response_model=JobInfo, status_code=202, summary="Re-hash a model (as a job).")
def verify_model(repo: str, registry: RegistryDep) -> JobInfo:
    return registry.verify(model_id(repo))


@router.get("/{repo:path}", response_model=ModelInfo, summary="One model.")
def get_model(repo: str, registry: RegistryDep) -> ModelInfo:
    return registry.model(model_id(repo))


@router.delete(
    "/{repo:path}",
    status_code=204,
    summary="Delete a model (409 while it is served or a job works on it; 503 if the gateway cannot say).",
)
def delete_model(repo: str, registry: RegistryDep, force: bool = False) -> Response:
    registry.delete_model(model_id(repo), force=force)
    return Response(status_code=204)
