"""What one engine is: its model, options and launcher, and from them its argv and environment.

Pure data: building a spec starts nothing, so the gateway (and a test) can look at the exact
command line and environment an engine gets before any process exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from llf_common.web import KEEP_ALIVE_S

from llf_inference.engine.address import EngineAddress
from llf_inference.engine.tools import choose_tool_parser
from llf_inference.settings import EngineOptions, InferenceSettings

# Secrets of the gateway that an engine has no use for.
_SCRUBBED_ENV = ("LLF_API_KEY", "HF_TOKEN")
# Put first on every engine's PYTHONPATH: its sitecustomize asks for AMX permission in each
# engine process (startup/sitecustomize.py says why).
STARTUP_DIR = Path(__file__).resolve().parent / "startup"


@dataclass(frozen=True)
class EngineSpec:
    """Everything needed to (re)start one engine for one model."""

    model: str
    path: str
    options: EngineOptions
    launcher: tuple[str, ...]
    device: str = "cpu"
    env: dict[str, str] = field(default_factory=dict)
    tool_parser: str | None = None
    """vLLM's ``--tool-call-parser`` for this model (``engine/tools.py``); ``None``: no auto tool choice."""

    @property
    def runner(self) -> str:
        """``pooling`` for an embedding/score/rerank engine, else ``generate``."""
        o = self.options
        return "pooling" if o.runner == "pooling" or o.convert not in (None, "auto") else "generate"

    def preflight_request(self, prompt: str) -> tuple[str, dict[str, object]]:
        """The first request an engine must answer before it is ``ready``: a generation, or a pooling."""
        if self.runner == "pooling":
            path = "/classify" if self.options.convert == "classify" else "/v1/embeddings"
            return path, {"model": self.model, "input": prompt}
        return "/v1/completions", {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0}

    @classmethod
    def from_settings(
        cls, settings: InferenceSettings, model: str, path: str, overrides: EngineOptions | None = None
    ) -> EngineSpec:
        """The spec of ``model`` from the settings; ``overrides`` (from ``llf serve`` flags) win over them."""
        env = dict(settings.engine_env)
        if settings.engine_offline:
            env.setdefault("HF_HUB_OFFLINE", "1")
            env.setdefault("TRANSFORMERS_OFFLINE", "1")
        # vLLM keeps /v1/responses answers (for previous_response_id) only when told to; without it
        # every follow-up is a 404. Stored answers live until the engine restarts; engine_env can say 0.
        env.setdefault("VLLM_ENABLE_RESPONSES_API_STORE", "1")
        options = settings.engine_options(model).merged(overrides)
        pooling = options.runner == "pooling" or options.convert not in (None, "auto")
        return cls(
            model=model,
            path=path,
            options=options,
            launcher=tuple(settings.launcher),
            device=settings.resolved_device,
            env=env,
            tool_parser=None if pooling else choose_tool_parser(options.tool_call_parser, path),
        )

    def command(self, address: EngineAddress | int) -> list[str]:
        """The engine's argv: the model path served under its repo id at ``address``.

        ``address`` is a private Unix socket or a loopback port (``engine/address.py``); a bare
        ``int`` is a loopback port.
        """
        o = self.options
        where = EngineAddress(port=address) if isinstance(address, int) else address
        argv = [*self.launcher, "--model", self.path, "--served-model-name", self.model]
        argv += [*where.argv, "--disable-uvicorn-access-log"]
        if o.dtype:
            argv += ["--dtype", o.dtype]
        if o.max_model_len:
            argv += ["--max-model-len", str(o.max_model_len)]
        if o.gpu_memory_utilization is not None and self.device == "cuda":
            argv += ["--gpu-memory-utilization", str(o.gpu_memory_utilization)]
        if o.tensor_parallel_size and o.tensor_parallel_size > 1:
            argv += ["--tensor-parallel-size", str(o.tensor_parallel_size)]
        if o.enforce_eager:
            argv.append("--enforce-eager")
        if o.enable_prefix_caching is not None:
            # On by default in vLLM V1 but for some models and devices; said explicitly so the
            # engine log shows it, and so a model override can turn it off.
            argv.append("--enable-prefix-caching" if o.enable_prefix_caching else "--no-enable-prefix-caching")
        if o.runner and o.runner != "auto":
            argv += ["--runner", o.runner]
        if o.convert and o.convert != "auto":
            argv += ["--convert", o.convert]
        if self.tool_parser:
            argv += ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_parser]
        return argv + list(o.extra_args or [])

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _SCRUBBED_ENV}
        env.update({"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
        # vLLM's uvicorn drops idle connections after 5 s, httpx's keep-alive expiry: the gateway
        # could send a request on a connection in the instant it closes (a 503 "ReadError" in the
        # soak). The engine keeps them as long as our services do, longer than the gateway reuses them.
        env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] = str(KEEP_ALIVE_S)
        if self.device == "cpu" and self.options.cpu_kvcache_space:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.options.cpu_kvcache_space)
        if self.options.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.options.cuda_visible_devices
        env.update(self.env)
        inherited = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
        env["PYTHONPATH"] = os.pathsep.join([str(STARTUP_DIR), *(e for e in inherited if e != str(STARTUP_DIR))])
        return env
