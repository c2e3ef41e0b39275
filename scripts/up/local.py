"""Run, re-apply and stop the local stack through supervisord's XML-RPC socket.

supervisord does the supervising (restart on crash, process groups, log files); this module only
starts it, keeps its configuration current and asks it to stop. Talking to it through its own
socket (rather than by process name) means ``make down`` stops exactly the processes this run dir
started, and nothing else on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import xmlrpc.client
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport

from scripts.up.localconf import LocalPlan, render, socket_path_for

# supervisord process states (supervisor.states.ProcessStates)
RUNNING_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})


class LocalError(Exception):
    """supervisord did not start or did not stop as asked."""


class Supervisor:
    """A client of one supervisord, found by its socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    @classmethod
    def for_run_dir(cls, run_dir: Path) -> Supervisor:
        return cls(socket_path_for(run_dir))

    def _rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def alive(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            return bool(self._rpc().getState()["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Error):
            return False

    def pid(self) -> int | None:
        try:
            return int(self._rpc().getPID())
        except (OSError, xmlrpc.client.Error):
            return None

    def processes(self) -> dict[str, dict[str, Any]]:
        """Program name -> supervisord's info (``statename``, ``pid``, ``description`` ...)."""
        try:
            return {info["name"]: info for info in self._rpc().getAllProcessInfo()}
        except (OSError, xmlrpc.client.Error):
            return {}

    def reload(self) -> None:
        """Apply a changed conf like ``supervisorctl update``: restart changed programs only."""
        rpc = self._rpc()
        added, changed, removed = rpc.reloadConfig()[0]
        for name in removed + changed:
            rpc.stopProcessGroup(name)
            rpc.removeProcessGroup(name)
        for name in changed + added:
            rpc.addProcessGroup(name)

    def start_all(self) -> None:
        """Start every program that is not running (FATAL ones included); running ones are untouched."""
        self._rpc().startAllProcesses(False)

    def shutdown(self) -> None:
        self._rpc().shutdown()


def start(plan: LocalPlan, environ: Mapping[str, str], timeout: float = 20.0) -> Supervisor:
    """Start supervisord on the rendered conf and wait until it answers on its socket."""
    supervisor = Supervisor(plan.socket_path)
    log = plan.run_dir / "supervisord.start.log"
    with log.open("ab") as out:
        done = subprocess.run(
            [str(plan.bin_dir / "supervisord"), "-c", str(plan.conf_path)],
            env=dict(environ),
            cwd=plan.repo,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise LocalError(f"supervisord failed to start (exit {done.returncode}); see {log}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisor.alive():
            return supervisor
        time.sleep(0.2)
    raise LocalError(f"supervisord did not answer on {plan.socket_path} within {timeout:.0f}s; see {log}")


def write_conf(plan: LocalPlan) -> bool:
    """Write the conf; True when it changed (or is new)."""
    text = render(plan)
    for path in (plan.run_dir, plan.logs_dir, plan.redis_data):
        path.mkdir(parents=True, exist_ok=True)
    try:
        if plan.conf_path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    tmp = plan.conf_path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, plan.conf_path)
    return True


def _tree(pids: list[int]) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    return found


def stop(run_dir: Path, timeout: float = 90.0) -> list[int]:
    """Shut supervisord down and make sure none of its processes outlive it; returns the stopped pids.

    supervisord stops every program (SIGTERM to the process group, SIGKILL after
    ``stopwaitsecs``); anything of ours still alive after it exits is killed here.
    """
    supervisor = Supervisor.for_run_dir(run_dir)
    if not supervisor.alive():
        return []
    main_pid = supervisor.pid()
    program_pids = [int(p["pid"]) for p in supervisor.processes().values() if p.get("pid")]
    ours = _tree(([main_pid] if main_pid else []) + program_pids)
    try:
        supervisor.shutdown()
    except (OSError, xmlrpc.client.Error) as exc:
        raise LocalError(f"supervisord did not accept shutdown: {exc}") from exc
    _, alive = psutil.wait_procs(ours, timeout=timeout)
    for proc in alive:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            continue
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in ours]


def tail_command(run_dir: Path) -> list[str]:
    logs = sorted((run_dir / "logs").glob("*.log"))
    supervisord_log = run_dir / "supervisord.log"
    files = [*([supervisord_log] if supervisord_log.exists() else []), *logs]
    return ["tail", "-n", "40", "-F", *map(str, files)]
