"""Redis's password reaches the services through a file, and never shows in output or repr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llf_common.settings import LLFSettings, mask_url_password


def test_the_password_file_is_added_to_a_url_that_names_no_password(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "redis.password"
    secret.write_text("p4ss/w:rd\n")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("LLF_REDIS_PASSWORD_FILE", str(secret))
    settings = LLFSettings.load()
    assert settings.redis_url == "redis://127.0.0.1:6390/0"  # the setting itself stays password-free
    assert settings.redis_connection_url() == "redis://:p4ss%2Fw%3Ard@127.0.0.1:6390/0"


def test_a_password_in_the_url_wins_and_no_file_means_the_url_as_is(clean_env: Path, tmp_path: Path) -> None:
    secret = tmp_path / "redis.password"
    secret.write_text("from-file")
    given = LLFSettings.load(redis_url="redis://:inline@redis:6379/0", redis_password_file=secret)
    assert given.redis_connection_url() == "redis://:inline@redis:6379/0"
    assert LLFSettings.load(redis_url="redis://redis:6379/0").redis_connection_url() == "redis://redis:6379/0"


def test_config_show_and_repr_mask_a_password_inside_redis_url(clean_env: Path) -> None:
    settings = LLFSettings.load(redis_url="redis://:s3cret@redis:6379/0")
    dumped = json.dumps(settings.model_dump(mode="json"))
    assert "s3cret" not in dumped and "redis://:***@redis:6379/0" in dumped
    assert "s3cret" not in repr(settings)
    assert settings.redis_url == "redis://:s3cret@redis:6379/0"  # what the services connect with
    assert mask_url_password("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
