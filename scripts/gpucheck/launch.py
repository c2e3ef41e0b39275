"""Start the gateway the check talks to, and stop it (and every engine it started) afterwards.

Real GPUs: the repo's ``llf-inference`` (``.venv``) starting vLLM from ``.venv-engine``, with
the registry at ``LLF_MODELS_URL`` (``make up`` runs one). ``--fake``: ``fakegateway.py`` over
fake GPUs with ``tests/support/fake_engine.py`` as the engine and the models pinned to
directories (no registry). Either way the gateway gets its own ``LLF_HOME`` and a free port,
runs in its own process group, and is stopped with SIGTERM (SIGKILL after a deadline).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
FAKE_ENGINE = REPO / "tests" / "support" / "fake_engine.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def inference_env(settings: dict[str, Any]) -> dict[str, str]:
    """``LLF_INFERENCE_<KEY>`` for each setting (JSON for lists and dicts), as ``llf-inference`` reads them."""
    env = {}
    for key, value in settings.items():
        text = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
        env[f"LLF_INFERENCE_{key.upper()}"] = text
    return env


class GatewayRun:
    """One gateway process on 127.0.0.1:<free port>; its log is ``workdir/gateway<name>.log``."""

    def __init__(
        self, workdir: Path, settings: dict[str, Any], *, fake_nvml: str | None = None, name: str = ""
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gateway{name}.log"
        self.settings = {"host": "127.0.0.1", "port": self.port, **settings}
        self.fake_nvml = fake_nvml
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.fake_nvml is not None:
            return [str(VENV_PYTHON), "-m", "scripts.gpucheck.fakegateway", "--nvml", self.fake_nvml]
        return [str(VENV_PYTHON), "-m", "llf_inference"]

    def __enter__(self) -> GatewayRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLF_INFERENCE_")}
        env.update(inference_env(self.settings))
        env.update({"LLF_HOME": str(self.workdir / "home"), "LLF_LOG_FORMAT": "console", "PYTHONPATH": str(REPO)})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited ({self.process.returncode}); see {self.log_path}:\n{self.tail()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the gateway did not answer /healthz within 60 s; see {self.log_path}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the gateway's group (it drains and stops its engines), SIGKILL after 60 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def fake_models(root: Path, names: list[str]) -> dict[str, str]:
    """Directories the gateway accepts as models (the fake engine loads nothing from them)."""
    paths = {}
    for name in names:
        directory = root / "models" / name.replace("/", "--")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
        paths[name] = str(directory)
    return paths


def oversized_model(root: Path) -> str:
    """A model directory whose ``config.json`` sizes a KV cache no workstation holds (nothing is loaded from it).

    128 layers x 64 KV heads x 128 head dim x 2 x 2 bytes = 4 MiB per token; with the
    ``max_model_len`` of 1 Mi tokens set for it, the estimate is 4 TiB: placement refuses it.
    """
    directory = root / "models" / "oversized"
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "num_hidden_layers": 128,
        "num_attention_heads": 128,
        "num_key_value_heads": 64,
        "hidden_size": 16384,
        "max_position_embeddings": 1 << 20,
    }
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


def fake_engine_settings() -> dict[str, Any]:
    """The fake engine as the engine, starting in ~1 s (so load on demand has something to wait for)."""
    return {
        "device": "cuda",
        "engine_command": [sys.executable, str(FAKE_ENGINE)],
        "engine_env": {"FAKE_START_DELAY": "1", "FAKE_TOKEN_DELAY": "0.01"},
        "readiness_timeout_s": 30,
        "health_interval_s": 0.1,
        "drain_timeout_s": 5,
        "stop_timeout_s": 5,
    }
