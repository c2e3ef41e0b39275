"""supervisord.conf generation, checked with supervisor's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from scripts.up.localconf import (
    ConfError,
    LocalPlan,
    render,
    secrets_fingerprint,
    service_env,
    socket_path_for,
    supervisord_env,
)


def plan_in(tmp_path: Path, *, redis: bool = True, env: dict[str, str] | None = None) -> LocalPlan:
    run_dir = tmp_path / "run"
    (run_dir / "logs").mkdir(parents=True)
    return LocalPlan(
        repo=tmp_path,
        bin_dir=Path("/repo/.venv/bin"),
        run_dir=run_dir,
        redis_data=tmp_path / "redis",
        redis_server=Path("/usr/bin/redis-server") if redis else None,
        redis_port=6390,
        env=env if env is not None else {"LLF_HOME": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6390/0"},
    )


def parsed(plan: LocalPlan) -> tuple[ServerOptions, dict[str, object]]:
    plan.conf_path.write_text(render(plan))
    options = ServerOptions()
    options.realize(args=["-c", str(plan.conf_path)])
    programs = {p.name: p for group in options.process_group_configs for p in group.process_configs}
    return options, programs


def test_conf_runs_redis_registry_worker_and_gateway_with_restart_on_crash(tmp_path):
    plan = plan_in(tmp_path)
    options, programs = parsed(plan)
    assert list(programs) == ["redis", "models", "worker", "inference", "web"]
    for name, program in programs.items():
        assert program.autorestart is not False, name
        assert program.stopasgroup and program.killasgroup
        assert program.stdout_logfile == str(plan.log_of(name))
    assert options.pidfile == str(plan.pidfile)
    assert options.server_configs[0]["file"] == str(plan.socket_path)


def test_redis_is_bound_to_loopback_on_its_port_with_aof(tmp_path):
    _, programs = parsed(plan_in(tmp_path))
    command = programs["redis"].command
    assert "--bind 127.0.0.1" in command and "--port 6390" in command and "--appendonly yes" in command
    assert f"--dir {tmp_path / 'redis'}" in command


def test_programs_start_in_dependency_order(tmp_path):
    _, programs = parsed(plan_in(tmp_path))
    assert programs["redis"].priority < programs["models"].priority < programs["inference"].priority


def test_external_redis_is_not_started(tmp_path):
    _, programs = parsed(plan_in(tmp_path, redis=False))
    assert "redis" not in programs


def test_environment_survives_percent_commas_and_quotes(tmp_path):
    env = {"HF_ENDPOINT": "http://mirror/a%20b", "LLF_X": 'say "hi", ok', "LLF_Y": "a,b=c"}
    _, programs = parsed(plan_in(tmp_path, env=env))
    assert programs["models"].environment == env


def test_a_value_with_both_quote_characters_is_refused(tmp_path):
    with pytest.raises(ConfError, match="LLF_BAD"):
        render(plan_in(tmp_path, env={"LLF_BAD": "\"'"}))


def test_secrets_never_reach_the_conf_but_reach_supervisord():
    environ = {"HF_TOKEN": "hf_secret", "LLF_API_KEY": "k", "LLF_MODE": "local", "LLF_MODELS_WORKERS": "2",
               "PATH": "/bin", "UNRELATED": "1"}  # fmt: skip
    services = service_env(environ, {"REDIS_URL": "redis://127.0.0.1:6390/0"})
    assert services == {"LLF_MODELS_WORKERS": "2", "REDIS_URL": "redis://127.0.0.1:6390/0"}
    daemon = supervisord_env(environ)
    assert daemon["HF_TOKEN"] == "hf_secret" and daemon["LLF_API_KEY"] == "k" and daemon["PATH"] == "/bin"
    assert "LLF_MODELS_WORKERS" not in daemon and "LLF_MODE" not in daemon


def test_secret_fingerprint_changes_with_the_secret_and_does_not_contain_it():
    first = secrets_fingerprint({"HF_TOKEN": "hf_a"})
    assert first != secrets_fingerprint({"HF_TOKEN": "hf_b"})
    assert first == secrets_fingerprint({"HF_TOKEN": "hf_a", "OTHER": "x"})
    assert "hf_a" not in first


def test_long_run_dirs_get_a_short_socket_path(tmp_path):
    assert socket_path_for(tmp_path) == tmp_path / "supervisor.sock"
    deep = Path("/x" * 60)
    assert len(str(socket_path_for(deep))) < 100
    assert socket_path_for(deep) == socket_path_for(deep)


def test_only_the_gateway_gets_the_model_to_serve_on_start(tmp_path):
    plan = plan_in(tmp_path)
    plan = LocalPlan(**{**plan.__dict__, "serve_on_start": "llf/demo-tiny"})
    _, programs = parsed(plan)
    assert programs["inference"].environment["LLF_INFERENCE_SERVE_ON_START"] == "llf/demo-tiny"
    assert "LLF_INFERENCE_SERVE_ON_START" not in programs["models"].environment
