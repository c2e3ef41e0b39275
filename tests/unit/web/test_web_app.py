"""The web service over fake services: pages, security headers, session cookie, CSRF, relays."""

from __future__ import annotations

import re

import httpx
import pytest
from llf_web.security import CONTENT_SECURITY_POLICY, SESSION_COOKIE, Guard, same_origin
from pydantic import SecretStr

from tests.unit.web.conftest import KEY, Build, FakeServices

pytestmark = pytest.mark.anyio


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def token(client: httpx.AsyncClient) -> str:
    return csrf_of(await client.get("/"))


async def test_pages_render_with_a_strict_csp_and_no_inline_script(web: Build) -> None:
    client = web()
    for path in ("/", "/models", "/status"):
        page = await client.get(path)
        assert page.status_code == 200, path
        csp = page.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        # every script is a file of this origin; no inline code and no on* handler attributes
        assert re.findall(r"<script(?![^>]*\bsrc=\"/static/)", page.text) == []
        assert not re.search(r"\son[a-z]+=", page.text)
    static = await client.get("/static/chat.js")
    assert static.status_code == 200 and "textContent" in static.text
    assert "innerHTML" not in static.text


async def test_every_asset_is_vendored(web: Build) -> None:
    client = web()
    page = await client.get("/")
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert url.startswith("/"), f"{url} is not served by the web service"
        if url.startswith("/static/"):
            assert (await client.get(url)).status_code == 200, url


async def test_chat_relays_the_gateways_stream_untouched_with_the_services_key(
    web: Build, services: FakeServices
) -> None:
    client = web()
    csrf = await token(client)
    body = {"model": "a/b", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.3}
    reply = await client.post("/api/chat", json=body, headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    # the model's markup is relayed as data; the page renders it with textContent
    assert '"content": "<script>alert(1)</script>"' in reply.text
    assert reply.text.endswith("data: [DONE]\n\n")
    sent = services.requests[-1]
    assert sent.url.path == "/v1/chat/completions"
    forwarded = httpx.Response(200, content=sent.content).json()
    assert forwarded["stream"] is True and forwarded["temperature"] == 0.3
    assert "authorization" not in sent.headers


async def test_an_error_reply_reaches_the_page_as_the_service_worded_it(web: Build, services: FakeServices) -> None:
    client = web()
    csrf = await token(client)
    message = {"error": {"message": "temperature must be >= 0", "type": "invalid_request_error", "code": "x"}}
    services.overrides[("gateway", "POST /v1/chat/completions")] = lambda r: httpx.Response(400, json=message)
    reply = await client.post(
        "/api/chat",
        json={"model": "a/b", "messages": [{"role": "user", "content": "hi"}], "temperature": -1},
        headers={"X-CSRF-Token": csrf},
    )
    assert reply.status_code == 400 and reply.json() == message
    stop = await client.delete("/api/serve/x/y", headers={"X-CSRF-Token": csrf})
    assert stop.status_code == 404 and stop.json()["error"]["message"] == "model x/y is not loaded"
    delete = await client.delete("/api/registry/models/a/b", headers={"X-CSRF-Token": csrf})
    assert delete.status_code == 409 and delete.json() == {"detail": "a/b is served by the gateway"}


async def test_a_service_that_is_down_is_named(web: Build, services: FakeServices) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    services.overrides[("registry", "GET /v1/models")] = down
    services.overrides[("registry", "GET /healthz")] = down
    client = web()
    reply = await client.get("/api/registry/models")
    assert reply.status_code == 502
    assert reply.json()["detail"].startswith("registry not reachable at http://registry.test")
    status = (await client.get("/api/status")).json()
    assert status["registry"]["up"] is False and status["gateway"]["up"] is True
    assert status["status"]["state"] == "ready"


async def test_state_changing_calls_need_the_csrf_token_and_the_same_origin(web: Build, services: FakeServices) -> None:
    client = web()
    csrf = await token(client)
    pull = {"repo": "a/b"}
    assert (await client.post("/api/pulls", json=pull)).status_code == 403
    assert (await client.post("/api/pulls", json=pull, headers={"X-CSRF-Token": "0" * 64})).status_code == 403
    cross = {"X-CSRF-Token": csrf, "Origin": "http://evil.test"}
    assert (await client.post("/api/pulls", json=pull, headers=cross)).status_code == 403
    site = {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    assert (await client.delete("/api/jobs/pull-a--b", headers=site)).status_code == 403
    assert not any(r.method in {"POST", "DELETE"} for r in services.requests), "a refused call reached a service"
    ok = await client.post("/api/pulls", json=pull, headers={"X-CSRF-Token": csrf, "Origin": "http://web.test"})
    assert ok.status_code == 202 and ok.json()["job_id"] == "pull-a--b"


async def test_pull_events_are_relayed_as_sse(web: Build) -> None:
    client = web()
    reply = await client.get("/api/jobs/pull-a--b/events")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert '"state": "finished"' in reply.text
    missing = await client.get("/api/jobs/nope/events")
    assert missing.status_code == 404 and "no route" in missing.json()["detail"]


async def test_serve_and_models_are_forwarded(web: Build, services: FakeServices) -> None:
    client = web()
    csrf = await token(client)
    assert (await client.get("/api/models")).json()["data"][0]["state"] == "loaded"
    assert (await client.get("/api/registry/models")).json()[0]["verified"] is True
    served = await client.post("/api/serve", json={"model": "a/b"}, headers={"X-CSRF-Token": csrf})
    assert served.status_code == 202
    assert httpx.Response(200, content=services.requests[-1].content).json() == {"model": "a/b"}


async def test_with_a_key_every_call_is_refused_until_the_key_is_entered(web: Build, services: FakeServices) -> None:
    client = web(api_key=KEY)
    for path in ("/", "/models", "/status"):
        page = await client.get(path)
        assert page.status_code == 303 and page.headers["location"] == "/login", path
    for path in ("/api/models", "/api/registry/models", "/api/status", "/api/jobs/pull-a--b/events"):
        assert (await client.get(path)).status_code == 401, path
    assert services.requests == [], "a refused call reached a service"

    login = await client.get("/login")
    assert login.status_code == 200 and KEY not in login.text
    csrf = csrf_of(login)
    wrong = await client.post("/login", data={"key": "nope", "csrf": csrf})
    assert wrong.status_code == 401 and SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    stale = await client.post("/login", data={"key": KEY, "csrf": "0" * 64})
    assert stale.status_code == 403
    cross = await client.post("/login", data={"key": KEY, "csrf": csrf}, headers={"Origin": "http://evil.test"})
    assert cross.status_code == 403

    ok = await client.post("/login", data={"key": KEY, "csrf": csrf})
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert KEY not in cookie, "the key itself must not be stored in the browser"
    page = await client.get("/")
    assert page.status_code == 200 and KEY not in page.text
    assert (await client.get("/api/models")).status_code == 200
    # the web service speaks to the services with the key; the browser never sends it
    assert services.requests[-1].headers["authorization"] == f"Bearer {KEY}"


async def test_a_cookie_of_another_key_is_refused(web: Build) -> None:
    client = web(api_key=KEY)
    other = Guard(SecretStr("another-key")).session_token()
    client.cookies.set(SESSION_COOKIE, other)
    assert (await client.get("/api/models")).status_code == 401


def test_same_origin_rules() -> None:
    assert same_origin(None, "web.test")
    assert same_origin("http://web.test", "web.test")
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert not same_origin("http://127.0.0.1:9999", "127.0.0.1:8080")
    assert not same_origin("null", "web.test")
    assert same_origin("null", "web.test", "same-origin")
    assert not same_origin("http://web.test", "web.test", "same-site")
    assert not same_origin(None, "web.test", "cross-site")


def test_settings_follow_the_naming_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from llf_web.settings import WebSettings

    monkeypatch.setenv("LLF_WEB_PORT", "9090")
    monkeypatch.setenv("LLF_INFERENCE_URL", "http://gw.test:8000/")
    settings = WebSettings.load()
    assert settings.port == 9090 and settings.host == "127.0.0.1"
    assert settings.inference_url == "http://gw.test:8000"
