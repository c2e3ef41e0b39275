"""``POST /v1/pulls``: start (or join) a download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from llf_common.wire import PullRequest, PullResponse

from llf_models.api.deps import get_registry
from llf_models.registry import Registry

router = APIRouter(prefix="/v1/pulls", tags=["pulls"])


@router.post(
    "",
    response_model=PullResponse,
    status_code=202,
    summary="Pull a model from the hub (202 with its job; 200 if already present and verified).",
    responses={200: {"model": PullResponse}, 404: {}, 507: {}},
)
def create_pull(
    body: PullRequest, response: Response, registry: Annotated[Registry, Depends(get_registry)]
) -> PullResponse:
    status, reply = registry.pull(body)
    response.status_code = status
    return reply
