"""Shared FastAPI plumbing: request ids, one error shape, a body limit, the API key, /healthz."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from llf_common.errors import Conflict, NotFound, Unavailable
from llf_common.logging import REQUEST_ID_HEADER, request_id_var
from llf_common.web import api_key_dependency, base_app, openai_body
from pydantic import BaseModel, SecretStr


class Item(BaseModel):
    name: str
    size: int


def make_app(*, api_key: str | None = None, max_body_bytes: int = 1024, openai: bool = False) -> FastAPI:
    kwargs: dict[str, Any] = {"body": openai_body} if openai else {}
    app = base_app("test", "0", max_body_bytes=max_body_bytes, **kwargs)
    auth = api_key_dependency(SecretStr(api_key) if api_key else None)

    @app.get("/request-id")
    async def current_request_id() -> dict[str, str | None]:
        return {"request_id": request_id_var.get()}

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("model a/b is not in the store: pull it first")

    @app.get("/busy")
    async def busy() -> None:
        raise Unavailable("engine restarting", retry_after=7)

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("model is being served")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.post("/items")
    async def create(item: Item) -> Item:
        return item

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/private", dependencies=[Depends(auth)])
    async def private() -> dict[str, bool]:
        return {"ok": True}

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as test_client:
        yield test_client


# ---------------------------------------------------------------- request ids
def test_a_given_request_id_is_echoed_and_visible_to_the_handler(client: TestClient) -> None:
    response = client.get("/request-id", headers={REQUEST_ID_HEADER: "abc-123"})
    assert response.headers[REQUEST_ID_HEADER] == "abc-123"
    assert response.json() == {"request_id": "abc-123"}


def test_a_missing_request_id_is_generated(client: TestClient) -> None:
    first = client.get("/request-id").headers[REQUEST_ID_HEADER]
    second = client.get("/request-id").headers[REQUEST_ID_HEADER]
    assert len(first) == 16 and first != second


def test_an_overlong_request_id_is_cut_to_64_characters(client: TestClient) -> None:
    assert len(client.get("/healthz", headers={REQUEST_ID_HEADER: "x" * 500}).headers[REQUEST_ID_HEADER]) == 64


def test_error_responses_carry_the_request_id_too(client: TestClient) -> None:
    assert client.get("/missing", headers={REQUEST_ID_HEADER: "r1"}).headers[REQUEST_ID_HEADER] == "r1"


def test_the_request_id_does_not_leak_out_of_the_request(client: TestClient) -> None:
    client.get("/request-id", headers={REQUEST_ID_HEADER: "inside"})
    assert request_id_var.get() is None


# ---------------------------------------------------------------- errors
def test_llf_errors_become_their_status_and_a_detail(client: TestClient) -> None:
    response = client.get("/missing")
    assert response.status_code == 404
    assert response.json() == {"detail": "model a/b is not in the store: pull it first"}
    assert client.get("/conflict").status_code == 409


def test_unavailable_says_when_to_retry(client: TestClient) -> None:
    response = client.get("/busy")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "7")


def test_an_unexpected_exception_is_a_500_without_internals(client: TestClient) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; see the service log"}
    assert "secret" not in response.text


def test_validation_errors_are_422_with_a_readable_detail(client: TestClient) -> None:
    response = client.post("/items", json={"name": "x", "size": "big"})
    assert response.status_code == 422
    body = response.json()
    assert "size" in body["detail"] and body["errors"][0]["loc"] == ["body", "size"]


def test_the_openai_shape_wraps_errors_in_an_error_object() -> None:
    with TestClient(make_app(openai=True), raise_server_exceptions=False) as client:
        missing = client.get("/missing").json()
        assert missing["error"] == {
            "message": "model a/b is not in the store: pull it first",
            "type": "invalid_request_error",
            "code": "not_found",
        }
        invalid = client.post("/items", json={"name": "x"}).json()
        assert invalid["error"]["code"] == "invalid_request" and "size" in invalid["error"]["message"]
        assert client.get("/boom").json()["error"]["type"] == "server_error"


# ---------------------------------------------------------------- body limit
def test_a_body_under_the_limit_passes(client: TestClient) -> None:
    assert client.post("/raw", content=b"x" * 1024).json() == {"received": 1024}


def test_a_declared_content_length_over_the_limit_is_refused_before_reading(client: TestClient) -> None:
    response = client.post("/raw", content=b"x" * 1025)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body larger than 1024 bytes"}


def test_a_chunked_body_over_the_limit_is_refused_while_streaming(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 512

    response = client.post("/raw", content=chunks())
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert response.json() == {"detail": "request body larger than 1024 bytes"}


def test_a_chunked_json_body_over_the_limit_is_refused_too(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        yield b"n" * 4096
        yield b'", "size": 1}'

    response = client.post("/items", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_the_body_limit_uses_the_openai_shape_on_the_gateway() -> None:
    with TestClient(make_app(openai=True)) as client:
        for content in (b"x" * 2048, iter([b"x" * 800, b"x" * 800])):
            response = client.post("/raw", content=content)
            assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


# ---------------------------------------------------------------- api key
@pytest.fixture
def locked() -> Iterator[TestClient]:
    with TestClient(make_app(api_key="s3cret-key")) as client:
        yield client


def test_without_a_configured_key_everything_is_open(client: TestClient) -> None:
    assert client.get("/private").status_code == 200


def test_the_right_key_opens_the_door(locked: TestClient) -> None:
    assert locked.get("/private", headers={"Authorization": "Bearer s3cret-key"}).json() == {"ok": True}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer s3cret-key-but-longer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic s3cret-key"},
        {"Authorization": "s3cret-key"},
    ],
    ids=["missing", "wrong", "prefix", "empty", "basic", "no-scheme"],
)
def test_a_missing_or_wrong_key_is_401_with_a_hint(locked: TestClient, headers: dict[str, str]) -> None:
    response = locked.get("/private", headers=headers)
    assert response.status_code == 401
    assert "LLF_API_KEY" in response.json()["detail"]
    assert "s3cret" not in response.text


def test_the_key_is_compared_in_constant_time(locked: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    locked.get("/private", headers={"Authorization": "Bearer nope"})
    locked.get("/private")
    assert calls == [(b"nope", b"s3cret-key"), (b"", b"s3cret-key")]


def test_healthz_is_open_even_with_a_key(locked: TestClient) -> None:
    response = locked.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
