"""The ``llf-inference`` entry point: configuration errors are one line and exit code 2."""

from __future__ import annotations

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
