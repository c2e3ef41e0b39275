"""Which models the gateway agrees to serve: the registry's answer, mapped to clear errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from llf_common.errors import Conflict, NotFound, UpstreamError
from llf_inference import registry
from llf_inference.settings import InferenceSettings

from tests.unit.inference.helpers import model_dir

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]


def record(path: Path, **overrides: Any) -> dict[str, Any]:
    base = {"name": "o/m", "revision": "main", "sha": "abc", "path": str(path), "size_bytes": 10, "verified": True}
    return {**base, "future_field_the_gateway_does_not_know": 1, **overrides}


@pytest.fixture
def registry_answers(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[httpx.Request], httpx.Response]], list]:
    """Route the gateway's registry calls to a handler; returns the list of requests seen."""
    seen: list[httpx.Request] = []

    def install(handler: Callable[[httpx.Request], httpx.Response]) -> list[httpx.Request]:
        def recording(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        transport = httpx.MockTransport(recording)
        monkeypatch.setattr(httpx, "AsyncClient", functools.partial(httpx.AsyncClient, transport=transport))
        return seen

    return install


async def test_a_verified_model_resolves_to_its_path_with_the_api_key(
    make_settings: MakeSettings, registry_answers: Any, tmp_path: Path
) -> None:
    directory = model_dir(tmp_path, "o/m")
    seen = registry_answers(lambda request: httpx.Response(200, json=record(directory)))
    settings = make_settings(api_key="k", models_url="http://registry.test")
    info = await registry.resolve(settings, "o/m")
    assert info.path == str(directory) and info.verified
    assert str(seen[0].url) == "http://registry.test/v1/models/o/m"
    assert seen[0].headers["authorization"] == "Bearer k"


async def test_an_unverified_model_is_refused_with_409(
    make_settings: MakeSettings, registry_answers: Any, tmp_path: Path
) -> None:
    registry_answers(lambda request: httpx.Response(200, json=record(model_dir(tmp_path, "o/m"), verified=False)))
    with pytest.raises(Conflict, match="llf verify o/m"):
        await registry.resolve(make_settings(), "o/m")


async def test_a_model_not_in_the_registry_is_a_404_that_says_pull(
    make_settings: MakeSettings, registry_answers: Any
) -> None:
    registry_answers(lambda request: httpx.Response(404, json={"detail": "no such model"}))
    with pytest.raises(NotFound, match="llf pull o/m"):
        await registry.resolve(make_settings(), "o/m")


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (httpx.Response(500, json={"detail": "redis is down"}), "answered 500 for o/m: redis is down"),
        (httpx.Response(503, text="<html>bad gateway</html>"), "answered 503 for o/m: <html>"),
        (httpx.Response(200, json={"name": "o/m"}), "unreadable record"),
        (httpx.Response(200, text="not json"), "unreadable record"),
    ],
)
async def test_registry_trouble_is_a_502_with_the_reason(
    make_settings: MakeSettings, registry_answers: Any, response: httpx.Response, fragment: str
) -> None:
    registry_answers(lambda request: response)
    with pytest.raises(UpstreamError, match=fragment):
        await registry.resolve(make_settings(), "o/m")


async def test_a_path_the_gateway_cannot_read_is_refused(
    make_settings: MakeSettings, registry_answers: Any, tmp_path: Path
) -> None:
    registry_answers(lambda request: httpx.Response(200, json=record(tmp_path / "elsewhere")))
    with pytest.raises(Conflict, match="cannot read"):
        await registry.resolve(make_settings(), "o/m")
    empty = tmp_path / "empty"
    empty.mkdir()
    registry_answers(lambda request: httpx.Response(200, json=record(empty)))
    with pytest.raises(Conflict, match=r"no config\.json"):
        await registry.resolve(make_settings(), "o/m")


async def test_pinned_model_paths_need_no_registry(make_settings: MakeSettings, registry_answers: Any) -> None:
    seen = registry_answers(lambda request: httpx.Response(500))
    settings = make_settings()
    info = await registry.resolve(settings, "test/tiny")
    assert info.path == settings.model_paths["test/tiny"] and seen == []
