"""Local mode's Redis password: two 0600 files in the run dir, nowhere else."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml
from llf_common.settings import LLFSettings

from scripts.up import localplan, redisauth
from scripts.up.localconf import render
from tests.unit.up.test_up_localconf import parsed, plan_in

REPO = Path(__file__).resolve().parents[3]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_password_is_generated_once_into_an_owner_only_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = redisauth.ensure_password(run_dir)
    assert len(first) == 64 and mode(run_dir / redisauth.PASSWORD_FILE) == 0o600
    assert redisauth.ensure_password(run_dir) == first  # kept across `make up` runs


def test_redis_conf_holds_requirepass_and_is_owner_only(tmp_path: Path) -> None:
    conf = redisauth.write_conf(tmp_path, "abc123")
    assert "requirepass abc123\n" in conf.read_text() and mode(conf) == 0o600


def test_redis_starts_from_its_conf_file_and_the_password_is_in_no_supervisord_line(tmp_path: Path) -> None:
    plan = plan_in(tmp_path)
    password = redisauth.ensure_password(plan.run_dir)
    _, programs = parsed(plan)
    command = programs["redis"].command
    assert command.split()[1] == str(plan.redis_conf)
    assert password not in render(plan) and "requirepass" not in render(plan)


def test_the_services_get_the_password_files_path_not_the_password(tmp_path: Path) -> None:
    settings = LLFSettings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    plan = localplan.make_plan(settings, {}, None)
    assert plan.env["LLF_REDIS_PASSWORD_FILE"] == str(settings.run_path / redisauth.PASSWORD_FILE)
    assert "@" not in plan.env["REDIS_URL"]


def test_an_external_redis_gets_no_password_file(tmp_path: Path) -> None:
    settings = LLFSettings(home=tmp_path, redis_url="redis://:theirs@redis.example:6379/0")
    plan = localplan.make_plan(settings, {}, None)
    assert plan.redis_server is None and "LLF_REDIS_PASSWORD_FILE" not in plan.env


def test_a_given_password_wins_and_is_kept_for_the_next_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    redisauth.ensure_password(run_dir)
    assert redisauth.with_password({"LLF_REDIS_PASSWORD": "chosen"}, run_dir)["LLF_REDIS_PASSWORD"] == "chosen"
    assert redisauth.with_password({}, run_dir)["LLF_REDIS_PASSWORD"] == "chosen"
    assert mode(run_dir / redisauth.PASSWORD_FILE) == 0o600


def test_the_password_variable_is_not_written_into_supervisord_conf(tmp_path: Path) -> None:
    settings = LLFSettings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    plan = localplan.make_plan(settings, {"LLF_REDIS_PASSWORD": "n0t-in-the-conf"}, None)
    assert "LLF_REDIS_PASSWORD" not in plan.env and "n0t-in-the-conf" not in render(plan)


def test_compose_gives_redis_a_password_from_the_environment_and_the_services_a_url_with_it() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    redis = compose["services"]["redis"]
    script = redis["entrypoint"][2]
    assert "requirepass" in script and "exec redis-server /tmp/redis.conf" in script
    assert "requirepass" not in " ".join(redis["command"])  # not on the command line `ps` shows
    assert redis["environment"]["LLF_REDIS_PASSWORD"] == "${LLF_REDIS_PASSWORD:-}"
    assert compose["x-env"]["REDIS_URL"] == "redis://:${LLF_REDIS_PASSWORD:-}@redis:6379/0"
    assert "REDISCLI_AUTH" in redis["healthcheck"]["test"][1]
