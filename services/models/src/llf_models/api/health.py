"""``/readyz``: Redis reachable and the models directory writable (``/healthz`` is in base_app)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from llf_models.api.deps import get_registry
from llf_models.registry import Registry

router = APIRouter(tags=["health"])


@router.get("/readyz", summary="Ready to take work: Redis reachable, models directory writable.")
async def readyz(registry: Annotated[Registry, Depends(get_registry)]) -> Any:
    checks = await run_in_threadpool(registry.readiness)
    ok = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": checks}
    if not ok:
        body["detail"] = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    return JSONResponse(body, status_code=200 if ok else 503)
