"""The ``llf-inference`` entry point: configuration errors are one line and exit code 2."""

from __future__ import annotations

from typing import Any

import pytest
from llf_inference import __main__ as entry
from llf_inference.settings import get_settings


def test_a_broken_configuration_exits_2_with_one_readable_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLF_INFERENCE_PORT", "not-a-port")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as caught:
            entry.main()
    finally:
        get_settings.cache_clear()
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("llf-inference: invalid configuration: environment variable LLF_INFERENCE_PORT")
    assert len(err.strip().splitlines()) == 1


def test_the_gateway_trusts_no_forwarded_headers(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Clients reach the gateway directly: an ``X-Forwarded-For`` is the client's claim, not a proxy's
    word (and uvicorn's proxy-header middleware would cost every request a layer)."""
    monkeypatch.setenv("LLF_HOME", str(tmp_path))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(entry, "serve", lambda factory, settings, **options: calls.append(options))
    get_settings.cache_clear()
    try:
        entry.main()
    finally:
        get_settings.cache_clear()
    assert len(calls) == 1
    assert calls[0].get("proxy_headers", False) is False
