"""The local stack as a supervisord configuration: what runs, with which environment, logging where.

Rendering is a pure function of a ``LocalPlan`` so it is unit-tested without starting anything,
and so that ``make up`` can tell whether a running stack's configuration changed (same text ->
nothing to reload). Secrets (``HF_TOKEN``, ``LLF_API_KEY``) are never written here: supervisord
is started with them in its environment and the programs inherit them. Redis's password is in
the run dir's 0600 ``redis.conf`` and ``redis.password`` (``scripts/up/redisauth.py``): here
are only their paths.
"""

from __future__ import annotations

import hashlib
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scripts.up import redisauth

SECRET_VARS = ("HF_TOKEN", "LLF_API_KEY")
# Our own knobs, meaningless (or harmful) to the services.
# LLF_REDIS_PASSWORD reaches Redis through redis.conf and the services through LLF_REDIS_PASSWORD_FILE.
NOT_PASSED = frozenset({"LLF_MODE", "LLF_UP_TIMEOUT", "LLF_UP_SERVE_TIMEOUT", "LLF_REDIS_PASSWORD", *SECRET_VARS})
PASSED_PREFIXES = ("LLF_", "HF_", "VLLM_")
PASSED_NAMES = frozenset({"REDIS_URL", "CUDA_VISIBLE_DEVICES"})
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes


class ConfError(ValueError):
    """A setting cannot be expressed in supervisord's configuration syntax."""


@dataclass(frozen=True)
class Program:
    name: str
    argv: list[str]
    priority: int
    stopwaitsecs: int = 15
    startsecs: int = 2
    env: dict[str, str] = field(default_factory=dict)  # on top of the plan's environment


@dataclass(frozen=True)
class LocalPlan:
    """Everything the local stack needs, resolved (ports chosen, paths absolute)."""

    repo: Path
    bin_dir: Path
    run_dir: Path
    redis_data: Path
    redis_server: Path | None  # None: Redis is external (REDIS_URL names another host)
    redis_port: int
    env: dict[str, str] = field(default_factory=dict)  # non-secret environment of every program
    serve_on_start: str | None = None  # the gateway serves it whenever it (re)starts

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def socket_path(self) -> Path:
        return socket_path_for(self.run_dir)

    @property
    def redis_conf(self) -> Path:
        return self.run_dir / redisauth.CONF_FILE

    @property
    def redis_password_file(self) -> Path:
        return self.run_dir / redisauth.PASSWORD_FILE

    def log_of(self, program: str) -> Path:
        return self.logs_dir / f"{program}.log"


def socket_path_for(run_dir: Path) -> Path:
    """``run/supervisor.sock``, or a short name in the temp dir when that path is too long."""
    preferred = run_dir / "supervisor.sock"
    if len(str(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"llf-supervisor-{digest}.sock"


def service_env(environ: Mapping[str, str], fixed: Mapping[str, str]) -> dict[str, str]:
    """The user's ``LLF_*``/``HF_*``/``VLLM_*`` settings (no secrets), then the values ``make up`` fixes."""
    passed = {
        key: value
        for key, value in environ.items()
        if (key.startswith(PASSED_PREFIXES) or key in PASSED_NAMES) and key not in NOT_PASSED
    }
    passed.update(fixed)
    return dict(sorted(passed.items()))


def supervisord_env(environ: Mapping[str, str]) -> dict[str, str]:
    """supervisord's own environment: the user's, minus the settings the conf decides, plus secrets."""
    env = {
        key: value
        for key, value in environ.items()
        if not (key.startswith(PASSED_PREFIXES) or key in PASSED_NAMES) or key in SECRET_VARS
    }
    env.pop("LLF_MODE", None)
    return env


def secrets_fingerprint(environ: Mapping[str, str]) -> str:
    """Changes when a secret changes, without storing the secret (a running stack must restart)."""
    digest = hashlib.sha256()
    for name in (*SECRET_VARS, "LLF_REDIS_PASSWORD"):
        digest.update(f"{name}={environ.get(name, '')}\0".encode())
    return digest.hexdigest()


def programs(plan: LocalPlan) -> list[Program]:
    """Redis first, then the registry and its worker, then the gateway (which loads the engine), then the pages."""
    bin_dir = plan.bin_dir
    listed: list[Program] = []
    if plan.redis_server is not None:
        listed.append(
            Program(
                "redis",
                [
                    str(plan.redis_server),
                    str(plan.redis_conf),  # requirepass: the one secret option, in a 0600 file
                    "--bind", "127.0.0.1",
                    "--port", str(plan.redis_port),
                    "--dir", str(plan.redis_data),
                    "--appendonly", "yes",
                    "--appendfsync", "everysec",
                    "--daemonize", "no",
                    "--protected-mode", "yes",
                ],
                priority=10,
                startsecs=1,
            )
        )  # fmt: skip
    listed += [
        Program("models", [str(bin_dir / "llf-models")], priority=20),
        Program("worker", [str(bin_dir / "llf-models-worker")], priority=20),
        Program(
            "inference",
            [str(bin_dir / "llf-inference")],
            priority=30,
            stopwaitsecs=40,
            env={"LLF_INFERENCE_SERVE_ON_START": plan.serve_on_start} if plan.serve_on_start else {},
        ),
        # The web pages (LLF_WEB_HOST/LLF_WEB_PORT, default 127.0.0.1:8080) in front of both services.
        Program("web", [str(bin_dir / "llf-web")], priority=40),
    ]
    return listed


def _value(text: str) -> str:
    """Escape for supervisor's ``%(...)s`` expansion."""
    return text.replace("%", "%%")


def _environment(env: Mapping[str, str]) -> str:
    """``KEY="value",...``; supervisor's lexer knows no escapes, so a value picks the quote it lacks."""
    parts = []
    for key, value in env.items():
        quote = '"' if '"' not in value else "'"
        if quote in value or "\n" in value:
            raise ConfError(f"{key} holds both quote characters or a newline; supervisord cannot pass it")
        parts.append(f"{key}={quote}{_value(value)}{quote}")
    return ",".join(parts)


def render(plan: LocalPlan) -> str:
    """The whole supervisord.conf for the plan."""
    sock = plan.socket_path
    lines = [
        "; Written by `make up` (scripts/up). Regenerated on every run: edit the settings, not this file.",
        "[unix_http_server]",
        f"file={_value(str(sock))}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_value(str(plan.run_dir / 'supervisord.log'))}",
        "logfile_maxbytes=5MB",
        "logfile_backups=1",
        f"pidfile={_value(str(plan.pidfile))}",
        f"childlogdir={_value(str(plan.logs_dir))}",
        f"directory={_value(str(plan.repo))}",
        "identifier=llf",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_value(str(sock))}",
        "",
    ]
    for program in programs(plan):
        environment = _environment({**plan.env, **program.env})
        lines += [
            f"[program:{program.name}]",
            f"command={_value(shlex.join(program.argv))}",
            f"directory={_value(str(plan.repo))}",
            f"priority={program.priority}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={program.startsecs}",
            "startretries=10",
            f"stopwaitsecs={program.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_value(str(plan.log_of(program.name)))}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
        ]
        if environment:
            lines.append(f"environment={environment}")
        lines.append("")
    return "\n".join(lines)
