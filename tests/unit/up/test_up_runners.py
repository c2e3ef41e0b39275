"""Compose mode publishes the ports the settings' URLs name and passes the model to re-serve."""

from __future__ import annotations

from llf_common.settings import LLFSettings

from scripts.up.runners import ComposeRunner


def test_compose_env_carries_ports_from_urls_and_the_model_to_serve(tmp_path, monkeypatch):
    monkeypatch.setenv("LLF_HOME", str(tmp_path))
    settings = LLFSettings(models_url="http://127.0.0.1:9101", inference_url="http://127.0.0.1:9100")
    runner = ComposeRunner(settings, {"HF_TOKEN": "t", "LLF_SERVE_ON_START": "stale/model"}, "cpu")
    env = runner.env("llf/demo-tiny")
    assert env["LLF_MODELS_PORT"] == "9101" and env["LLF_INFERENCE_PORT"] == "9100"
    assert env["LLF_INFERENCE_SERVE_ON_START"] == "llf/demo-tiny" and env["HF_TOKEN"] == "t"
    assert "LLF_SERVE_ON_START" not in env
    assert "LLF_INFERENCE_SERVE_ON_START" not in runner.env(None)
