"""Configuration: env > JSON file > defaults, the ecosystem's own variable names, one clear error."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import pytest
from llf_common import settings as settings_module
from llf_common.errors import ConfigError
from llf_common.settings import LLFSettings, config_path, env_name, env_names
from pydantic import Field, SecretStr


class ModelsLikeSettings(LLFSettings):
    """A service's settings: own keys under the "models" section of the file."""

    section: ClassVar[str | None] = "models"
    workers: int = Field(2, ge=1)
    pull_timeout_s: float = 600.0


def write_config(home: Path, data: Any) -> Path:
    path = home / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def config_error(cls: type[LLFSettings] = LLFSettings) -> str:
    with pytest.raises(ConfigError) as caught:
        cls.load()
    return caught.value.detail


# ---------------------------------------------------------------- precedence
def test_defaults_work_out_of_the_box(clean_env: Path) -> None:
    settings = LLFSettings.load()
    assert settings.home == clean_env
    assert settings.inference_url == "http://127.0.0.1:8000"
    assert settings.models_url == "http://127.0.0.1:8001"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.hf_endpoint == "https://huggingface.co"
    assert settings.api_key is None and settings.hf_token is None
    assert settings.models_path == clean_env / "models"
    assert settings.run_path == clean_env / "run"
    assert (settings.log_format, settings.log_level) == ("console", "INFO")


def test_the_config_file_overrides_defaults(clean_env: Path) -> None:
    write_config(clean_env, {"inference_url": "http://gpu-box:9000/", "log_format": "json"})
    settings = LLFSettings.load()
    assert settings.inference_url == "http://gpu-box:9000"  # trailing slash dropped
    assert settings.log_format == "json"


def test_environment_variables_override_the_config_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(clean_env, {"inference_url": "http://from-file:1", "models_url": "http://from-file:2"})
    monkeypatch.setenv("LLF_INFERENCE_URL", "http://from-env:1")
    settings = LLFSettings.load()
    assert settings.inference_url == "http://from-env:1"
    assert settings.models_url == "http://from-file:2"


def test_llf_config_points_at_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = write_config(tmp_path / "etc", {"default_model": "org/other"})
    monkeypatch.setenv("LLF_CONFIG", str(elsewhere))
    assert config_path() == elsewhere
    assert LLFSettings.load().default_model == "org/other"


def test_a_missing_config_file_is_an_empty_config(clean_env: Path) -> None:
    assert not (clean_env / "config.json").exists()
    assert LLFSettings.load().default_model == "Qwen/Qwen2.5-0.5B-Instruct"


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_LOG_LEVEL", "debug")
    assert LLFSettings.load().log_level == "DEBUG"


def test_explicit_overrides_beat_everything(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_MODELS_URL", "http://env:1")
    assert LLFSettings.load(models_url="http://kwarg:1").models_url == "http://kwarg:1"


# ---------------------------------------------------------------- the ecosystem's names
@pytest.mark.parametrize("variable", ["REDIS_URL", "LLF_REDIS_URL"])
def test_redis_url_is_read_from_redis_url_or_llf_redis_url(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "redis://cache:6380/2")
    assert LLFSettings.load().redis_url == "redis://cache:6380/2"


def test_hf_endpoint_and_hf_token_use_the_hubs_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:5000/")
    monkeypatch.setenv("HF_TOKEN", "hf_abc")
    settings = LLFSettings.load()
    assert settings.hf_endpoint == "http://mirror.local:5000"
    assert settings.hf_token is not None and settings.hf_token.get_secret_value() == "hf_abc"


def test_aliased_keys_work_in_the_config_file_too(clean_env: Path) -> None:
    write_config(clean_env, {"redis_url": "redis://file:1/0", "hf_endpoint": "http://hub.file", "hf_token": "hf_f"})
    settings = LLFSettings.load()
    assert (settings.redis_url, settings.hf_endpoint) == ("redis://file:1/0", "http://hub.file")


def test_the_environment_beats_the_file_for_aliased_keys(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(clean_env, {"redis_url": "redis://file:1/0"})
    monkeypatch.setenv("REDIS_URL", "redis://env:1/0")
    assert LLFSettings.load().redis_url == "redis://env:1/0"


# ---------------------------------------------------------------- sections
def test_a_service_reads_its_own_section_and_the_common_keys(clean_env: Path) -> None:
    write_config(clean_env, {"api_key": "k", "models": {"workers": 4}, "inference": {"anything": 1}})
    settings = ModelsLikeSettings.load()
    assert settings.workers == 4
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k"


def test_the_environment_beats_the_section(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(clean_env, {"models": {"workers": 4}})
    monkeypatch.setenv("LLF_MODELS_WORKERS", "8")
    assert ModelsLikeSettings.load().workers == 8


# ---------------------------------------------------------------- one naming rule
class CliLikeSettings(LLFSettings):
    """A service whose keys an earlier release read from LLF_<KEY>."""

    section: ClassVar[str | None] = "cli"
    legacy_env_fields: ClassVar[frozenset[str]] = frozenset({"temperature"})
    temperature: float = 0.7
    port: int = 8000
    engine_command: list[str] = Field(default_factory=list)


def test_a_service_key_is_llf_service_key_and_a_shared_key_is_llf_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLF_CLI_TEMPERATURE", "0.2")
    monkeypatch.setenv("LLF_CLI_ENGINE_COMMAND", '["python", "-m", "x"]')
    monkeypatch.setenv("LLF_API_KEY", "k")
    settings = CliLikeSettings.load()
    assert (settings.temperature, settings.engine_command) == (0.2, ["python", "-m", "x"])
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k"
    assert (env_name(CliLikeSettings, "temperature"), env_name(CliLikeSettings, "api_key")) == (
        "LLF_CLI_TEMPERATURE",
        "LLF_API_KEY",
    )
    assert env_names(LLFSettings, "redis_url") == ("REDIS_URL", "LLF_REDIS_URL")


def test_no_variable_outside_the_rule_is_read(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell's HOST or PORT (zsh sets HOST to the machine's name) never moves a service."""
    for name in ("PORT", "port", "TEMPERATURE", "LLF_PORT", "LLF_WORKERS", "LLF_CLI_API_KEY"):
        monkeypatch.setenv(name, "9")
    settings = CliLikeSettings.load()
    assert (settings.port, settings.temperature, settings.api_key) == (8000, 0.7, None)
    assert ModelsLikeSettings.load().workers == 2


def test_an_old_spelling_still_works_with_one_warning_and_the_new_name_wins(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())
    monkeypatch.setenv("LLF_TEMPERATURE", "0.3")
    with caplog.at_level(logging.WARNING, logger="llf_common.settings"):
        assert CliLikeSettings.load().temperature == 0.3
        assert CliLikeSettings.load().temperature == 0.3
    warnings = [r.getMessage() for r in caplog.records if "LLF_TEMPERATURE" in r.getMessage()]
    assert warnings == [
        "environment variable LLF_TEMPERATURE is an old name: set LLF_CLI_TEMPERATURE instead "
        "(LLF_TEMPERATURE stops working in the next release)"
    ]
    monkeypatch.setenv("LLF_CLI_TEMPERATURE", "0.4")
    assert CliLikeSettings.load().temperature == 0.4


def test_a_bad_value_names_the_variable_that_was_set(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_CLI_TEMPERATURE", "hot")
    assert "environment variable LLF_CLI_TEMPERATURE: key 'temperature'" in config_error(CliLikeSettings)
    monkeypatch.delenv("LLF_CLI_TEMPERATURE")
    monkeypatch.setenv("LLF_TEMPERATURE", "hot")
    assert "environment variable LLF_TEMPERATURE: key 'temperature'" in config_error(CliLikeSettings)


def test_an_unknown_key_in_the_own_section_names_section_and_key(clean_env: Path) -> None:
    path = write_config(clean_env, {"models": {"wrokers": 4}})
    message = config_error(ModelsLikeSettings)
    assert str(path) in message and "'models.wrokers'" in message


def test_a_section_that_is_not_an_object_is_an_error_naming_the_file(clean_env: Path) -> None:
    path = write_config(clean_env, {"models": [1, 2]})
    message = config_error(ModelsLikeSettings)
    assert str(path) in message and "models" in message


def test_other_services_sections_are_not_this_services_business(clean_env: Path) -> None:
    write_config(clean_env, {"cli": {"color": "never"}})
    assert LLFSettings.load().inference_url.startswith("http://")
    assert ModelsLikeSettings.load().workers == 2


# ---------------------------------------------------------------- errors
def test_bad_json_names_the_file_and_the_position(clean_env: Path) -> None:
    path = write_config(clean_env, '{"inference_url": "http://x",\n  oops}')
    message = config_error()
    assert str(path) in message and "not valid JSON" in message and "line 2" in message


def test_a_json_document_that_is_not_an_object_is_rejected(clean_env: Path) -> None:
    path = write_config(clean_env, "[1, 2]")
    assert str(path) in config_error() and "JSON object" in config_error()


def test_an_unknown_key_names_the_file_and_the_key(clean_env: Path) -> None:
    path = write_config(clean_env, {"inferense_url": "http://x"})
    message = config_error()
    assert str(path) in message and "'inferense_url'" in message


def test_a_wrong_type_in_the_file_names_the_file_and_the_key(clean_env: Path) -> None:
    path = write_config(clean_env, {"models_url": 8001})
    message = config_error()
    assert str(path) in message and "'models_url'" in message


def test_a_wrong_type_in_a_section_names_the_section_key(clean_env: Path) -> None:
    path = write_config(clean_env, {"models": {"workers": "many"}})
    message = config_error(ModelsLikeSettings)
    assert str(path) in message and "'models.workers'" in message


def test_a_bad_environment_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_INFERENCE_URL", "localhost:8000")
    message = config_error()
    assert "environment variable LLF_INFERENCE_URL" in message and "http://" in message


def test_a_bad_hf_endpoint_names_hf_endpoint_not_an_invented_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "ftp://mirror")
    message = config_error()
    assert "environment variable HF_ENDPOINT:" in message
    assert "LLF_HF_ENDPOINT" not in message


def test_a_bad_variable_is_blamed_even_when_the_file_has_a_good_value(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(clean_env, {"log_level": "INFO"})
    monkeypatch.setenv("LLF_LOG_LEVEL", "verbose")
    message = config_error()
    assert "environment variable LLF_LOG_LEVEL" in message and "config file" not in message


def test_all_problems_come_back_as_one_config_error(clean_env: Path) -> None:
    write_config(clean_env, {"models_url": 1, "nope": True})
    message = config_error()
    assert message.count("config file") == 2 and message.startswith("invalid configuration:")


def test_an_unreadable_config_path_is_a_config_error(clean_env: Path) -> None:
    (clean_env / "config.json").mkdir(parents=True)
    assert "cannot read config file" in config_error()


# ---------------------------------------------------------------- directories and secrets
def test_ensure_dirs_creates_home_models_and_run(clean_env: Path, tmp_path: Path) -> None:
    settings = LLFSettings.load(models_dir=tmp_path / "store")
    settings.ensure_dirs()
    settings.ensure_dirs()  # idempotent
    assert clean_env.is_dir() and (tmp_path / "store").is_dir() and (clean_env / "run").is_dir()
    assert settings.models_path == tmp_path / "store"


def test_paths_expand_the_users_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LLF_MODELS_DIR", "~/weights")
    assert LLFSettings.load().models_path == tmp_path / "weights"


def test_secrets_never_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_API_KEY", "sk-very-secret")
    monkeypatch.setenv("HF_TOKEN", "hf_very_secret")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-very-secret@cache:6379/0")
    settings = LLFSettings.load()
    for text in (repr(settings), str(settings)):
        assert "very-secret" not in text and "very_secret" not in text
    assert isinstance(settings.api_key, SecretStr)
    assert settings.redis_url == "redis://:redis-very-secret@cache:6379/0"  # the value itself is intact
