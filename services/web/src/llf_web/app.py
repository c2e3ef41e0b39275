"""The web service's FastAPI app: pages, static files, the forwarded calls, and the security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from llf_common.web import base_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llf_web import __version__
from llf_web.api import chat, manage, pages
from llf_web.api.deps import require_session
from llf_web.security import SECURITY_HEADERS, Guard
from llf_web.settings import WebSettings
from llf_web.upstream import Parts, Upstream

HERE = Path(__file__).parent


class SecurityHeadersMiddleware:
    """Adds the Content-Security-Policy and friends to every response, pages and errors alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_parts(settings: WebSettings) -> Parts:
    """The production wiring: the gateway and the registry at their configured URLs, with the key."""
    common = {
        "api_key": settings.api_key,
        "timeout": settings.request_timeout_s,
        "connect_timeout": settings.connect_timeout_s,
    }
    return Parts(
        gateway=Upstream("gateway", settings.inference_url, **common),  # type: ignore[arg-type]
        registry=Upstream("registry", settings.models_url, **common),  # type: ignore[arg-type]
    )


def create_app(settings: WebSettings, parts: Parts | None = None) -> FastAPI:
    parts = parts or build_parts(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await parts.aclose()

    # The API documents would need the key as a bearer header, which a browser session does not
    # send: the web service documents nothing (its calls are the page's, not a public API).
    app = base_app(
        "llf web",
        __version__,
        api_key=settings.api_key,
        lifespan=lifespan,
        max_body_bytes=2 << 20,
        description="Chat, models and status pages in front of the llf gateway and registry.",
    )
    app.state.settings = settings
    app.state.parts = parts
    app.state.guard = Guard(settings.api_key)
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    session = [Depends(require_session)]
    app.include_router(chat.router, dependencies=session)
    app.include_router(manage.router, dependencies=session)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
