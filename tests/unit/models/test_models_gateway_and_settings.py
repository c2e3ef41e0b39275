"""What the gateway is asked before a delete, and the registry's settings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from llf_common.errors import ConfigError
from llf_models.gateway import GatewayProbe
from llf_models.settings import ModelsSettings, get_settings
from pydantic import SecretStr


def probe(handler: object, key: str | None = None) -> GatewayProbe:
    client = httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return GatewayProbe("http://gw/", SecretStr(key) if key else None, client=client)


def test_served_models_include_ready_loading_and_replica_models() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "state": "switching",
                "models": ["a/ready"],
                "target": "b/loading",
                "replicas": [
                    {"id": "r1", "model": "c/draining", "state": "draining"},
                    {"id": "r2", "model": "d/failed", "state": "failed"},
                ],
            },
        )

    assert probe(handler, "k").served() == {"a/ready", "b/loading", "c/draining"}
    assert str(seen[0].url) == "http://gw/v1/status" and seen[0].headers["authorization"] == "Bearer k"


def test_a_newer_gateways_status_with_keys_this_registry_does_not_know_still_protects_its_models() -> None:
    """Keys are only ever added: an unreadable status would read as "nothing served" and allow a delete."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "state": "ready",
                "models": ["a/served"],
                "accelerators": [{"id": "gpu0"}],
                "replicas": [{"id": "r1", "model": "b/replica", "state": "ready", "device": "gpu0", "queue": 3}],
            },
        )

    assert probe(handler).served() == {"a/served", "b/replica"}


@pytest.mark.parametrize(
    "handler",
    [
        lambda r: httpx.Response(500),
        lambda r: httpx.Response(200, content=b"not json"),
        lambda r: httpx.Response(200, json={"state": "??"}),
    ],
)
def test_a_gateway_that_cannot_answer_means_nothing_is_known_to_be_served(handler: object) -> None:
    assert probe(handler).served() is None


def test_an_unreachable_gateway_means_nothing_is_known_to_be_served() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    assert probe(refuse).served() is None


def test_settings_come_from_models_env_vars_and_the_config_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"models": {"port": 9100, "queue_name": "q"}, "default_model": "a/b"}))
    monkeypatch.setenv("LLF_CONFIG", str(config))
    monkeypatch.setenv("LLF_HOME", str(tmp_path))
    monkeypatch.setenv("LLF_MODELS_HOST", "0.0.0.0")
    settings = ModelsSettings.load()
    assert (settings.host, settings.port, settings.queue_name) == ("0.0.0.0", 9100, "q")
    assert settings.progress_interval_s == 0.25 and settings.models_path == tmp_path / "models"
    monkeypatch.setenv("LLF_MODELS_PORT", "8123")
    assert ModelsSettings.load().port == 8123
    monkeypatch.setenv("LLF_MODELS_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        ModelsSettings.load()
    monkeypatch.delenv("LLF_MODELS_PORT")
    config.write_text(json.dumps({"models": {"nonsense": 1}}))
    with pytest.raises(ConfigError, match="nonsense"):
        ModelsSettings.load()


def test_get_settings_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_HOME", str(tmp_path))
    monkeypatch.setenv("LLF_CONFIG", str(tmp_path / "none.json"))
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


# ---------------------------------------------------------------- "may I delete it?"
def test_only_a_refused_connection_means_the_gateway_serves_nothing() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    assert probe(refuse).in_use() == set()


@pytest.mark.parametrize(
    "handler",
    [
        lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow")),
        lambda r: (_ for _ in ()).throw(httpx.ConnectTimeout("slow")),
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("[Errno -2] Name or service not known")),
        lambda r: httpx.Response(401, json={"detail": "missing or wrong API key"}),
        lambda r: httpx.Response(500),
        lambda r: httpx.Response(503),
        lambda r: httpx.Response(200, content=b"not json"),
        lambda r: httpx.Response(200, json=["a list"]),
        lambda r: httpx.Response(200, json={"state": "ready", "models": "a/b"}),
        lambda r: httpx.Response(200, json={"state": "ready", "replicas": [{"id": "r1"}]}),
    ],
    ids=[
        "read-timeout",
        "connect-timeout",
        "dns",
        "401",
        "500",
        "503",
        "not-json",
        "not-an-object",
        "models-not-a-list",
        "replica-without-model",
    ],
)
def test_a_gateway_that_cannot_say_what_it_serves_blocks_a_delete_with_503(handler: object) -> None:
    from llf_common.errors import Unavailable

    with pytest.raises(Unavailable) as caught:
        probe(handler).in_use("o/n")
    assert caught.value.status_code == 503
    assert "cannot confirm the gateway is not serving o/n" in caught.value.detail
    assert "--force" in caught.value.detail


def test_every_model_the_gateway_lists_or_has_a_replica_of_is_in_use_whatever_its_state() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "state": "ready",
                "models": ["a/loaded"],
                "target": "b/target",
                "replicas": [
                    {"id": "r1", "model": "c/asleep", "state": "asleep"},
                    {"id": "r2", "model": "d/failed", "state": "failed"},
                    {"id": "r3", "model": "e/loading", "state": "loading"},
                ],
                "per_model": {"a/loaded": {"state": "loaded"}},
            },
        )

    assert probe(handler).in_use() == {"a/loaded", "c/asleep", "d/failed", "e/loading"}


def test_a_model_in_the_gateways_pool_without_a_replica_yet_is_in_use() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        states = [{"model": "f/waiting", "state": "loading"}, {"model": "g/on-disk", "state": "available"}]
        return httpx.Response(200, json={"state": "ready", "models": [], "replicas": [], "model_states": states})

    assert probe(handler).in_use() == {"f/waiting"}
