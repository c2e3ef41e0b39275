"""Dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from llf_common.wire import check_repo_id

from llf_models.registry import Registry


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def model_id(repo: str) -> str:
    """The ``{repo:path}`` of a model URL as a validated repo id (422 otherwise)."""
    try:
        return check_repo_id(repo)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("path", "repo"), "msg": str(exc), "type": "value_error", "input": repo}]
        ) from None
