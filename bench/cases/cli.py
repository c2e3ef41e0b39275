"""#7 CLI: ``llf --help`` cold start and ``llf models ls`` against a running registry.

Side by side, alternating: ``llf --help`` vs a bare ``python -c pass`` (the interpreter's own
start, which llf cannot go below), and ``llf models ls`` vs a bare ``httpx.get`` of the same
registry route in a fresh interpreter (the least any Python client pays).
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from bench import stack
from bench.context import Context
from bench.procs import VENV_BIN
from bench.report import PROFILES_DIR, ROOT, TIMES, Result, Target, repo_relative

CALLS_PER_REP = 10


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    """Wall time of one run of ``argv`` in seconds; a failing command is an error, not a number."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")[-300:]
        raise RuntimeError(f"{shlex.join(argv)} exited {done.returncode}: {stderr}")
    return elapsed


def compare(result: Result, key: str, llf: list[str], base: list[str], env: dict[str, str], reps: int) -> None:
    """Per repetition: the median of ``CALLS_PER_REP`` alternating calls of each command."""
    timed(llf, env)  # one warm-up so the page cache holds the files: "cold" = a new process
    timed(base, env)
    for _ in range(reps):
        ours, theirs = [], []
        for _ in range(CALLS_PER_REP):
            theirs.append(timed(base, env))
            ours.append(timed(llf, env))
        llf_ms, base_ms = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
        result.metric(f"{key}_ms", "ms", f"median wall time of {shlex.join(llf[-3:])}").add(llf_ms)
        result.metric(f"{key}_baseline_ms", "ms", f"median wall time of {shlex.join(base[:3])}").add(base_ms)
        result.metric(f"{key}_ratio", TIMES, "llf / baseline").add(llf_ms / base_ms)
    result.commands[f"{key}"] = shlex.join(llf)
    result.commands[f"{key}_baseline"] = shlex.join(base)


def profile_help(env: dict[str, str]) -> str | None:
    """pyinstrument's view of one ``llf --help``, plus Python's import-time table."""
    PROFILES_DIR.mkdir(parents=True, exist_ok=True)
    text = PROFILES_DIR / "cli-help.pyinstrument.txt"
    importtime = PROFILES_DIR / "cli-help.importtime.txt"
    subprocess.run([str(VENV_BIN / "pyinstrument"), "-r", "text", "-o", str(text),
                    str(VENV_BIN / "llf"), "--help"], env=env, capture_output=True, check=False)
    if text.exists():  # its header names the program by its absolute path
        text.write_text(repo_relative(text.read_text(encoding="utf-8")), encoding="utf-8")
    done = subprocess.run([sys.executable, "-X", "importtime", str(VENV_BIN / "llf"), "--help"],
                          env=env, capture_output=True, text=True, check=False)
    rows = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    rows.sort(key=lambda line: -int(line.split("|")[1]) if line.split("|")[1].strip().isdigit() else 0)
    importtime.write_text("\n".join(rows[:60]) + "\n")
    return str(text.relative_to(ROOT)) if text.exists() else str(importtime.relative_to(ROOT))


def run(ctx: Context, result: Result) -> None:
    env = {**os.environ, "LLF_HOME": str(ctx.path("cli-home")), "NO_COLOR": "1", "COLUMNS": "100"}
    llf = str(VENV_BIN / "llf")
    compare(result, "help", [llf, "--help"], [sys.executable, "-c", "pass"], env, ctx.reps)
    result.targets.append(Target("`llf --help` cold start", "help_ms", "<=", 120))
    result.reported.append(("`llf --help` ÷ bare `python -c pass`", "help_ratio"))
    result.params["calls_per_rep"] = CALLS_PER_REP

    try:
        registry = stack.registry(ctx)
    except Exception as exc:  # the registry is someone else's service: report, keep the --help figure
        result.notes.append(f"`llf models ls` not measured: registry unavailable ({type(exc).__name__}: {exc})")
    else:
        env_ls = {**env, "LLF_MODELS_URL": registry.url}
        probe = "import httpx,sys; httpx.get(sys.argv[1], timeout=10).raise_for_status()"
        compare(result, "ls", [llf, "models", "ls"], [sys.executable, "-c", probe, registry.url + "/v1/models"],
                env_ls, ctx.reps)
        result.reported.append(("`llf models ls` wall time", "ls_ms"))
        result.reported.append(("`llf models ls` ÷ bare `httpx.get(/v1/models)`", "ls_ratio"))
    if result.missed():
        result.profile = profile_help(env)
