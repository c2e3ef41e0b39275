"""What the routers get through ``Depends``: the services, the guard, and the two checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from llf_common.errors import LLFError, Unauthorized

from llf_web.security import CSRF_HEADER, SESSION_COOKIE, Guard, same_origin
from llf_web.settings import WebSettings
from llf_web.upstream import Parts


class Forbidden(LLFError):
    status_code = 403
    code = "forbidden"


def get_parts(request: Request) -> Parts:
    return request.app.state.parts  # type: ignore[no-any-return]


def get_guard(request: Request) -> Guard:
    return request.app.state.guard  # type: ignore[no-any-return]


def get_settings(request: Request) -> WebSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates  # type: ignore[no-any-return]


PartsDep = Annotated[Parts, Depends(get_parts)]
GuardDep = Annotated[Guard, Depends(get_guard)]
SettingsDep = Annotated[WebSettings, Depends(get_settings)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


def logged_in(request: Request, guard: Guard) -> bool:
    return guard.session_ok(request.cookies.get(SESSION_COOKIE))


async def require_session(request: Request, guard: GuardDep) -> None:
    """Every ``/api`` call: refused (401) without the session cookie when a key is set."""
    if not logged_in(request, guard):
        raise Unauthorized("not logged in: open the page and enter the API key")


def check_origin(request: Request) -> None:
    if not same_origin(
        request.headers.get("origin"), request.headers.get("host"), request.headers.get("sec-fetch-site")
    ):
        raise Forbidden("cross-origin request refused")


async def require_csrf(request: Request, guard: GuardDep) -> None:
    """State-changing calls: same origin and the page's CSRF token in ``X-CSRF-Token``."""
    check_origin(request)
    if not guard.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise Forbidden("missing or stale CSRF token: reload the page")
