"""#8 Cold start: local-mode ``make up`` → first token, divided by bare vLLM start → first token.

Both sides start from nothing running, with the environments built and the tiny model already
on disk (a warm-up ``make up`` pulls it from the hub stand-in and is not counted). The bare side
starts the engine with the very argv the gateway used (read from the engine process during the
warm-up), so the ratio is llf's own start-up cost: supervisord, Redis, registry, gateway, the
serve call — not a different engine configuration.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from bench import stack
from bench.context import Context
from bench.procs import ROOT, Proc, free_port
from bench.report import TIMES, Result, Target

MODEL = "bench/coldstart-tiny"
FIRST_TOKEN_TIMEOUT = 600.0


def first_token(base_url: str, model: str | None, deadline: float, headers: dict[str, str] | None = None) -> float:
    """Retry a streamed chat request until a content token arrives; returns that moment.

    ``model=None`` asks the server's ``/v1/models`` for the name (a bare engine names the model
    after its path or ``--served-model-name``).
    """
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "stream": True}
    last = ""
    while time.monotonic() < deadline:
        try:
            if body["model"] is None:
                body["model"] = httpx.get(f"{base_url}/v1/models", timeout=5).json()["data"][0]["id"]
            with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=30, headers=headers) as r:
                if r.status_code == 200:
                    for line in r.iter_lines():
                        if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                            return time.monotonic()
                last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise TimeoutError(f"no first token from {base_url} ({last})")


class UpStack:
    """One isolated local-mode stack: its own LLF_HOME, HOME, ports, Redis."""

    def __init__(self, ctx: Context, hub_url: str) -> None:
        home = ctx.path("coldstart")
        self.models_url = f"http://127.0.0.1:{free_port()}"
        self.inference_url = f"http://127.0.0.1:{free_port()}"
        dropped = ("LLF_DEFAULT_MODEL", "LLF_CONFIG", "LLF_API_KEY", "HF_TOKEN", "LLF_RUN_DIR", "LLF_MODELS_DIR")
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in dropped},
            "LLF_MODE": "local",
            "LLF_UP_SERVE_TIMEOUT": "600",
            "PATH": os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if ".local/bin" not in p),
            "LLF_HOME": str(home / "llf"),
            "HOME": str(home / "user"),
            "LLF_MODELS_URL": self.models_url,
            "LLF_INFERENCE_URL": self.inference_url,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "HF_ENDPOINT": hub_url,
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        }
        self.log = home / "up.log"
        self.command = f"{Path(sys.executable).relative_to(ROOT)} -m scripts.up --model {MODEL}"

    def _run(self, *args: str, timeout: float = 900) -> None:
        with self.log.open("ab") as out:
            done = subprocess.run([sys.executable, "-m", "scripts.up", *args], cwd=ROOT, env=self.env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if done.returncode != 0:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"scripts.up {' '.join(args)} exited {done.returncode}:\n{tail}")

    def up(self) -> None:
        self._run("--model", MODEL)

    def down(self) -> None:
        self._run("--down", timeout=180)

    def engine_argv(self) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of the vLLM engine the gateway started."""
        status = httpx.get(f"{self.inference_url}/v1/status", timeout=10).json()
        pid = next(r["pid"] for r in status["replicas"] if r.get("pid"))
        proc = psutil.Process(pid)
        return proc.cmdline(), proc.environ()


def bare_engine(ctx: Context, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Start the engine alone on a free port and time start → first token (and start → /health)."""
    port = free_port()
    argv = list(argv)
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    else:
        argv += ["--port", str(port)]
    start = time.monotonic()
    proc = Proc(argv, ctx.workdir / "coldstart" / "bare-engine.log", env=env)
    try:
        first = first_token(f"http://127.0.0.1:{port}", None, start + FIRST_TOKEN_TIMEOUT)
        return start, first
    finally:
        proc.stop(timeout=20)


def run(ctx: Context, result: Result) -> None:
    hub = stack.hub(ctx)
    stack.add_tiny_model(hub, MODEL)
    llf = UpStack(ctx, hub.url)
    result.commands["llf"] = llf.command + "  # then one streamed chat request until the first token"
    try:
        llf.up()  # warm-up: pulls the model into the store; not timed
        argv, engine_env = llf.engine_argv()
        result.commands["bare_engine"] = shlex.join(argv) + "  # the gateway's own engine argv, another port"
        llf.down()
        for _ in range(ctx.reps):
            start = time.monotonic()
            llf.up()
            llf_s = first_token(llf.inference_url, MODEL, start + FIRST_TOKEN_TIMEOUT) - start
            llf.down()
            bare_start, bare_first = bare_engine(ctx, argv, engine_env)
            bare_s = bare_first - bare_start
            result.metric("llf_s", "s", "make up (local) -> first token").add(llf_s)
            result.metric("bare_s", "s", "bare vLLM start -> first token").add(bare_s)
            result.metric("ratio", TIMES, "llf / bare").add(llf_s / bare_s)
    finally:
        try:
            llf.down()
        except Exception as exc:  # the run still reports; the stack's own stop is best effort here
            result.notes.append(f"make down failed at the end: {exc}")
    result.params.update({"model": MODEL, "model_kind": "generated tiny Llama (llf_models.tinymodel)"})
    result.targets.append(Target("`make up` → first token ÷ bare vLLM → first token", "ratio", "<=", 1.2))
    result.reported.append(("`make up` → first token", "llf_s"))
    result.reported.append(("bare vLLM start → first token", "bare_s"))
    if result.missed():
        result.notes.append(f"see {llf.log} phases; `make up` prints each step with its time")
