"""Settings of the inference gateway (section ``"inference"`` of the config file).

Everything that shapes an engine's command line lives here, with per-model overrides, so
``llf serve MODEL`` needs no flags: the defaults start a vLLM CPU engine that fits a laptop,
and a GPU box changes one or two keys. Every key here is ``LLF_INFERENCE_<KEY>`` in the
environment (``LLF_INFERENCE_PORT``, ``LLF_INFERENCE_DTYPE``: the rule of ``llf_common.settings``).
"""

from __future__ import annotations

import shutil
import sys
from functools import cached_property, lru_cache
from pathlib import Path
from typing import ClassVar, Literal

from llf_common.settings import LLFSettings
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llf_inference.cpu import choose_dtype, host_cpu
from llf_inference.keepalive import parse_keep_alive

Device = Literal["cpu", "cuda"]
SwapStrategy = Literal["start-then-switch", "stop-then-start"]
ENGINE_VENV_PYTHON = Path(".venv-engine") / "bin" / "python"
VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


class EngineOptions(BaseModel):
    """Engine arguments; the global ones, or a per-model override where ``None`` means "inherit"."""

    model_config = ConfigDict(extra="forbid")

    dtype: str | None = Field(None, description="--dtype (auto, bfloat16, float16, float32).")
    max_model_len: int | None = Field(None, ge=16, description="--max-model-len; default: the model's own.")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="--gpu-memory-utilization (GPU only).")
    tensor_parallel_size: int | None = Field(None, ge=1, description="--tensor-parallel-size.")
    cuda_visible_devices: str | None = Field(None, description="CUDA_VISIBLE_DEVICES for the engine.")
    cpu_kvcache_space: int | None = Field(None, ge=1, description="VLLM_CPU_KVCACHE_SPACE in GiB (CPU only).")
    enforce_eager: bool | None = Field(None, description="--enforce-eager; default true on CPU (faster start).")
    enable_prefix_caching: bool | None = Field(
        None, description="--enable-prefix-caching (default on: the affinity routing keeps it warm)."
    )
    runner: Literal["auto", "generate", "pooling"] | None = Field(
        None, description="--runner: pooling serves embeddings/score/rerank instead of text generation."
    )
    convert: Literal["auto", "embed", "classify", "reward"] | None = Field(
        None, description="--convert: adapt a generative checkpoint to a pooling task (embed, classify, …)."
    )
    tool_call_parser: str | None = Field(
        None,
        description="--tool-call-parser with --enable-auto-tool-choice; auto: from the model's family; none: off.",
    )
    extra_args: list[str] | None = Field(None, description="Appended verbatim to the engine command line.")
    keep_alive: str | float | None = Field(
        None, description='Not an engine argument: idle time before unload ("5m", seconds, 0, -1 = never).'
    )

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive_parses(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_keep_alive(value)
        return value

    def merged(self, override: EngineOptions | None) -> EngineOptions:
        """These options with every key that ``override`` sets replaced."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class InferenceSettings(LLFSettings):
    """The gateway's settings; ``get_settings()`` builds them once per process."""

    section: ClassVar[str | None] = "inference"
    # Read from LLF_<KEY> before LLF_INFERENCE_<KEY> was the rule (accepted for one more release).
    legacy_env_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "engine_python", "engine_command", "device", "dtype", "max_model_len", "gpu_memory_utilization",
            "tensor_parallel_size", "cuda_visible_devices", "cpu_kvcache_space", "enforce_eager", "extra_args",
            "model_overrides", "model_paths", "engine_env", "engine_offline", "readiness_timeout_s",
            "health_interval_s", "liveness_interval_s", "liveness_failures", "restart_max", "restart_backoff_s",
            "restart_backoff_max_s", "stable_after_s", "drain_timeout_s", "stop_timeout_s", "swap_strategy",
            "serve_on_start", "retry_after_s", "log_tail_lines", "upstream_connect_timeout_s",
            "upstream_read_timeout_s", "registry_timeout_s", "max_body_bytes",
        }
    )  # fmt: skip

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the gateway.")

    engine_python: str | None = Field(
        None,
        description="Interpreter with vllm installed; default .venv-engine/bin/python if found, else python3.",
    )
    engine_command: list[str] | None = Field(
        None,
        description="Replaces '<engine_python> -m vllm.entrypoints.openai.api_server' (wrappers, tests).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when an NVIDIA device exists.")
    dtype: str = Field("auto", description="--dtype (bfloat16, float16, float32); auto: on CPU, llf's choice (cpu.py).")
    max_model_len: int | None = Field(None, ge=16, description="--max-model-len; default: the model's own.")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="--gpu-memory-utilization (GPU).")
    tensor_parallel_size: int = Field(1, ge=1, description="--tensor-parallel-size.")
    cuda_visible_devices: str | None = Field(None, description="CUDA_VISIBLE_DEVICES for the engines.")
    cpu_kvcache_space: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE in GiB (CPU only).")
    enforce_eager: bool | None = Field(None, description="--enforce-eager; default true on CPU (faster start).")
    enable_prefix_caching: bool = Field(True, description="--enable-prefix-caching on every engine that supports it.")
    runner: Literal["auto", "generate", "pooling"] | None = Field(None, description="--runner for every engine.")
    convert: Literal["auto", "embed", "classify", "reward"] | None = Field(None, description="--convert.")
    tool_call_parser: str = Field(
        "auto", description="--tool-call-parser: auto (from the model's chat template/architecture), a name, or none."
    )
    extra_args: list[str] = Field(default_factory=list, description="Appended verbatim to every engine command.")
    model_overrides: dict[str, EngineOptions] = Field(
        default_factory=dict, description="Per repo id, engine arguments that replace the global ones."
    )
    model_paths: dict[str, str] = Field(
        default_factory=dict,
        description="Repo id -> local directory served without asking the registry (trusted, not verified).",
    )
    engine_listen: Literal["unix", "tcp"] = Field(
        "unix",
        description="unix: each engine on a socket in a 0700 directory, no TCP port (engine/address.py); tcp: a "
        "loopback port, for tools that must reach an engine directly.",
    )
    engine_env: dict[str, str] = Field(default_factory=dict, description="Extra environment for engine processes.")
    engine_offline: bool = Field(True, description="HF_HUB_OFFLINE=1 for engines: weights come from the registry.")

    readiness_timeout_s: float = Field(600.0, gt=0, description="An engine not healthy by then has failed.")
    health_interval_s: float = Field(0.5, gt=0, description="/health poll period while an engine starts.")
    liveness_interval_s: float = Field(5.0, gt=0, description="/health poll period once an engine is ready.")
    liveness_failures: int = Field(3, ge=1, description="Failed /health polls in a row that count as a crash.")
    restart_max: int = Field(3, ge=0, description="Restarts in a row before giving up on an engine.")
    restart_backoff_s: float = Field(1.0, ge=0, description="First restart delay; doubles each time.")
    restart_backoff_max_s: float = Field(30.0, ge=0)
    stable_after_s: float = Field(60.0, ge=0, description="Ready this long resets the restart count.")
    drain_timeout_s: float = Field(30.0, ge=0, description="How long streams may finish on a swap or shutdown.")
    stop_timeout_s: float = Field(10.0, gt=0, description="SIGTERM to SIGKILL grace for an engine's process group.")
    swap_strategy: Literal["auto", "start-then-switch", "stop-then-start"] = Field(
        "auto", description="auto: stop-then-start on CPU (memory for one engine), start-then-switch on GPU."
    )
    serve_on_start: str | list[str] | None = Field(
        None,
        description="Models to load at start: a list, or names separated by commas.",
    )
    max_loaded_models: int | None = Field(None, ge=1, description="Models loaded at once; default: as many as fit.")
    max_waiting_requests: int = Field(256, ge=1, description="Requests waiting for a model to load, at most.")
    load_timeout_s: float = Field(600.0, gt=0, description="Longest a request waits for its model to load.")
    keep_alive: str | float | None = Field(
        None, description='Idle time before a model is unloaded ("5m", seconds, 0, -1); default: when room is needed.'
    )
    sleep_mode: bool = Field(False, description="GPU: put idle models to sleep (vLLM sleep mode) instead of unloading.")
    loading_comment_interval_s: float = Field(5.0, gt=0, description="Seconds between ': loading' SSE comments.")
    retry_after_s: int = Field(2, ge=1, description="Retry-After of 503s while an engine starts or restarts.")
    routing: Literal["least_loaded", "affinity"] = Field(
        "affinity", description="Replica choice: session/prefix affinity with bounded load, or least in flight."
    )
    routing_load_factor: float = Field(
        1.25, ge=1.0, description="affinity: a replica past this times the mean in-flight passes new keys on."
    )
    max_audio_body_bytes: int = Field(25 << 20, ge=1024, description="Largest audio upload (OpenAI's 25 MB).")
    log_tail_lines: int = Field(200, ge=10, description="Engine log lines kept for status and failure reports.")
    upstream_connect_timeout_s: float = Field(5.0, gt=0)
    upstream_read_timeout_s: float = Field(600.0, gt=0, description="Longest silence of an engine mid-response.")
    registry_timeout_s: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(8 << 20, ge=1024, description="Largest request body (prompts can be long).")

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive_parses(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_keep_alive(value)
        return value

    @property
    def serve_on_start_models(self) -> list[str]:
        """``serve_on_start`` as a list (the environment gives ``a/b,c/d`` or one name)."""
        value = self.serve_on_start
        names = value.split(",") if isinstance(value, str) else (value or [])
        return list(dict.fromkeys(name.strip() for name in names if name.strip()))

    @cached_property
    def resolved_device(self) -> Device:
        if self.device != "auto":
            return self.device
        return "cuda" if Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") else "cpu"

    @cached_property
    def resolved_swap_strategy(self) -> SwapStrategy:
        if self.swap_strategy != "auto":
            return self.swap_strategy
        return "stop-then-start" if self.resolved_device == "cpu" else "start-then-switch"

    @cached_property
    def launcher(self) -> list[str]:
        """The command that starts an engine, before the per-model arguments."""
        if self.engine_command:
            return list(self.engine_command)
        return [self.engine_python or find_engine_python(), "-m", VLLM_SERVER_MODULE]

    def engine_options(self, model: str) -> EngineOptions:
        """Global engine options with the model's overrides applied (device defaults filled in)."""
        base = EngineOptions(**{name: getattr(self, name) for name in EngineOptions.model_fields})
        options = base.merged(self.model_overrides.get(model))
        if options.enforce_eager is None:
            options = options.model_copy(update={"enforce_eager": self.resolved_device == "cpu"})
        if options.dtype in (None, "auto") and self.resolved_device == "cpu":
            options = options.model_copy(update={"dtype": choose_dtype(host_cpu()).dtype})
        return options


def find_engine_python(start: Path | None = None) -> str:
    """``.venv-engine/bin/python`` of the checkout we run from, else ``python3``.

    Looked for from the working directory up and from this file up (an editable install sits
    in the repo), never relative to ``sys.prefix``: the gateway's own venv is not the engine's.
    """
    roots = [start or Path.cwd(), Path(__file__).resolve()]
    for root in roots:
        for directory in (root, *root.parents):
            candidate = directory / ENGINE_VENV_PYTHON
            if candidate.is_file():
                return str(candidate)
    return "python3" if shutil.which("python3") else sys.executable


@lru_cache(maxsize=1)
def get_settings() -> InferenceSettings:
    """The process-wide settings (``ConfigError`` with one readable line when invalid)."""
    settings = InferenceSettings.load()
    assert isinstance(settings, InferenceSettings)
    return settings
