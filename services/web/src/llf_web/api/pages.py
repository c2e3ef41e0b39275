"""The three pages and the login form (server-rendered; their scripts are static files)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from llf_web.api.deps import GuardDep, SettingsDep, TemplatesDep, check_origin, logged_in
from llf_web.security import SESSION_COOKIE

router = APIRouter(include_in_schema=False)
PAGES = {"/": "chat", "/models": "models", "/status": "status"}
MAX_FORM_BYTES = 4096


def _render(request: Request, templates: TemplatesDep, guard: GuardDep, settings: SettingsDep, page: str) -> Response:
    if not logged_in(request, guard):
        return RedirectResponse("/login", status_code=303)
    context = {
        "page": page,
        "csrf": guard.csrf_token(),
        "login": guard.required,
        "status_interval_ms": int(settings.status_interval_s * 1000),
    }
    return templates.TemplateResponse(request, f"{page}.html", context, headers={"Cache-Control": "no-store"})


@router.get("/")
async def chat_page(request: Request, templates: TemplatesDep, guard: GuardDep, settings: SettingsDep) -> Response:
    return _render(request, templates, guard, settings, "chat")


@router.get("/models")
async def models_page(request: Request, templates: TemplatesDep, guard: GuardDep, settings: SettingsDep) -> Response:
    return _render(request, templates, guard, settings, "models")


@router.get("/status")
async def status_page(request: Request, templates: TemplatesDep, guard: GuardDep, settings: SettingsDep) -> Response:
    return _render(request, templates, guard, settings, "status")


@router.get("/login")
async def login_page(request: Request, templates: TemplatesDep, guard: GuardDep) -> Response:
    if not guard.required or logged_in(request, guard):
        return RedirectResponse("/", status_code=303)
    return _login_form(request, templates, guard, error=None, status=200)


def _login_form(
    request: Request, templates: TemplatesDep, guard: GuardDep, *, error: str | None, status: int
) -> Response:
    context = {"page": "login", "csrf": guard.csrf_token(), "login": True, "error": error}
    return templates.TemplateResponse(
        request, "login.html", context, status_code=status, headers={"Cache-Control": "no-store"}
    )


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form, first value of each field (no multipart parser needed for two fields)."""
    raw = await request.body()
    return {key: values[0] for key, values in parse_qs(raw[:MAX_FORM_BYTES].decode("utf-8", "replace")).items()}


@router.post("/login")
async def login(request: Request, templates: TemplatesDep, guard: GuardDep, settings: SettingsDep) -> Response:
    """Check the key once; on success the session cookie replaces it (the key is not stored)."""
    check_origin(request)
    form = await _form(request)
    if not guard.csrf_ok(form.get("csrf")):
        return _login_form(request, templates, guard, error="The form expired: enter the key again.", status=403)
    if not guard.required:
        return RedirectResponse("/", status_code=303)
    if not guard.key_matches(form.get("key") or ""):
        return _login_form(request, templates, guard, error="Wrong API key.", status=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        guard.session_token(),
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookie,
        path="/",
        max_age=30 * 86400,
    )
    return response


@router.post("/logout")
async def logout(request: Request, guard: GuardDep) -> Response:
    check_origin(request)
    form = await _form(request)
    response = RedirectResponse("/login" if guard.required else "/", status_code=303)
    if guard.csrf_ok(form.get("csrf")):
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
