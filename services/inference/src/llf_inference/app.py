"""``create_app(settings, gateway=None)``: the gateway's FastAPI app, its lifespan and error shape.

The app is wiring only: the ``Gateway`` (built from the settings unless a test hands one in)
holds the domain, and routers reach it through ``GatewayDep``. The lifespan removes the engine
socket directories a killed gateway left behind, loads the ``serve_on_start`` models (and those
loaded before a restart) and, on the way out, closes the gateway (drains, stops engines).

Errors on every route are OpenAI-shaped (``{"error": {"message", "type", "code"}}``), since
OpenAI clients are the main callers. The API key guards everything but ``/healthz`` and
``/readyz``. Only plain-ASGI middlewares are installed (``llf_common.web``), so streamed
responses are not wrapped per chunk; the relay endpoints are one of them (``api.data_plane``),
served before FastAPI's routing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from llf_common.web import api_key_dependency, base_app, openai_body
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware

from llf_inference import __version__
from llf_inference.api import control, data_plane, openai
from llf_inference.gateway import FORM_ENDPOINTS, Gateway
from llf_inference.settings import InferenceSettings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: InferenceSettings | None = None, gateway: Gateway | None = None) -> FastAPI:
    settings = settings or (gateway.settings if gateway is not None else get_settings())
    gateway = gateway if gateway is not None else Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "gateway started",
            extra={
                "device": settings.resolved_device,
                "swap": settings.resolved_swap_strategy,
                "engine": " ".join(settings.launcher),
            },
        )
        gateway.sweep_engine_leftovers()
        gateway.serve_on_start(settings.serve_on_start_models)
        try:
            yield
        finally:
            log.info("gateway stopping: draining streams and stopping engines")
            await gateway.close()

    app = base_app(
        "llf inference gateway",
        __version__,
        body=openai_body,
        max_body_bytes=settings.max_body_bytes,
        path_body_bytes=dict.fromkeys(FORM_ENDPOINTS, settings.max_audio_body_bytes),
        api_key=settings.api_key,
        inner=[Middleware(data_plane.DataPlane, gateway=gateway, api_key=settings.api_key)],
        lifespan=lifespan,
    )
    data_plane.document(app)
    app.state.gateway = gateway
    auth = [Depends(api_key_dependency(settings.api_key))]
    app.include_router(openai.router, dependencies=auth)
    app.include_router(control.router, dependencies=auth)
    app.include_router(control.health)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            openai_body(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    return app
