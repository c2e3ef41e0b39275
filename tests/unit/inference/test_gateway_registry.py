"""Which models the gateway agrees to serve: the registry's answer, mapped to clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from llf_common.errors import Conflict, NotFound, UpstreamError
from llf_inference.registry import RegistryResolver
from llf_inference.settings import InferenceSettings

from tests.support.fake_gateway import model_dir

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]


def record(path: Path, **overrides: Any) -> dict[str, Any]:
    base = {"name": "o/m", "revision": "main", "sha": "abc", "path": str(path), "size_bytes": 10, "verified": True}
    return {**base, "future_field_the_gateway_does_not_know": 1, **overrides}


Handler = Callable[[httpx.Request], httpx.Response]


def answering(settings: InferenceSettings, handler: Handler) -> tuple[RegistryResolver, list[httpx.Request]]:
    """A resolver whose registry calls go to ``handler``, and the list of requests it made."""
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return RegistryResolver(settings, transport=httpx.MockTransport(recording)), seen


async def test_a_verified_model_resolves_to_its_path_with_the_api_key(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    directory = model_dir(tmp_path, "o/m")
    settings = make_settings(api_key="k", models_url="http://registry.test")
    resolver, seen = answering(settings, lambda request: httpx.Response(200, json=record(directory)))
    info = await resolver.resolve("o/m")
    assert info.path == str(directory) and info.verified
    assert str(seen[0].url) == "http://registry.test/v1/models/o/m"
    assert seen[0].headers["authorization"] == "Bearer k"


async def test_a_newer_registrys_record_with_unknown_keys_at_any_depth_still_resolves(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    directory = model_dir(tmp_path, "o/m")
    newer = record(directory, files=[{"path": "config.json", "size": 2, "storage_class": "hot"}], lineage={"a": 1})
    resolver, _ = answering(make_settings(), lambda request: httpx.Response(200, json=newer))
    info = await resolver.resolve("o/m")
    assert info.path == str(directory) and info.files[0].path == "config.json"


async def test_a_record_that_is_not_an_object_is_an_upstream_error(make_settings: MakeSettings) -> None:
    resolver, _ = answering(make_settings(), lambda request: httpx.Response(200, json=["o/m"]))
    with pytest.raises(UpstreamError, match="unreadable record"):
        await resolver.resolve("o/m")


async def test_an_unverified_model_is_refused_with_409_naming_the_verify_command(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    unverified = record(model_dir(tmp_path, "o/m"), verified=False)
    resolver, _ = answering(make_settings(), lambda request: httpx.Response(200, json=unverified))
    with pytest.raises(Conflict, match="llf models verify o/m"):
        await resolver.resolve("o/m")


async def test_a_model_not_in_the_registry_is_a_404_that_says_pull(make_settings: MakeSettings) -> None:
    resolver, _ = answering(make_settings(), lambda request: httpx.Response(404, json={"detail": "no such model"}))
    with pytest.raises(NotFound, match="llf pull o/m"):
        await resolver.resolve("o/m")


@pytest.mark.parametrize("name", ["o/m\x1f", "o/../../v1/jobs/x", "o/m?purge=true", "o/m#x", "nobody", "a b/c"])
async def test_a_name_that_is_no_repo_id_is_not_in_the_registry_and_is_never_sent_to_it(
    make_settings: MakeSettings, name: str
) -> None:
    resolver, seen = answering(make_settings(), lambda request: httpx.Response(200, json={}))
    with pytest.raises(NotFound, match="owner/name"):
        await resolver.resolve(name)
    assert seen == []


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
    make_settings: MakeSettings, response: httpx.Response, fragment: str
) -> None:
    resolver, _ = answering(make_settings(), lambda request: response)
    with pytest.raises(UpstreamError, match=fragment):
        await resolver.resolve("o/m")


async def test_an_unreachable_registry_is_a_502_that_names_it(make_settings: MakeSettings) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    resolver, _ = answering(make_settings(models_url="http://registry.test"), refuse)
    with pytest.raises(UpstreamError, match=r"cannot reach the model registry at http://registry\.test"):
        await resolver.resolve("o/m")


async def test_a_path_the_gateway_cannot_read_is_refused(make_settings: MakeSettings, tmp_path: Path) -> None:
    resolver, _ = answering(make_settings(), lambda request: httpx.Response(200, json=record(tmp_path / "elsewhere")))
    with pytest.raises(Conflict, match="cannot read"):
        await resolver.resolve("o/m")
    empty = tmp_path / "empty"
    empty.mkdir()
    resolver, _ = answering(make_settings(), lambda request: httpx.Response(200, json=record(empty)))
    with pytest.raises(Conflict, match=r"no config\.json"):
        await resolver.resolve("o/m")


async def test_pinned_model_paths_need_no_registry(make_settings: MakeSettings) -> None:
    settings = make_settings()
    resolver, seen = answering(settings, lambda request: httpx.Response(500))
    info = await resolver.resolve("test/tiny")
    assert info.path == settings.model_paths["test/tiny"] and seen == []
