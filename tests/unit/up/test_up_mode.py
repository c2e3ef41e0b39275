"""Mode detection: LLF_MODE wins; else Docker reachable -> compose (GPU only with the nvidia runtime)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scripts.up.mode import ModeError, detect


def fake_tools(*, docker: bool, gpu: bool = False, runtimes: str = '{"runc":{}}'):
    calls: list[list[str]] = []

    def run(argv: Sequence[str]) -> tuple[int, str]:
        calls.append(list(argv))
        if argv[:2] == ["docker", "info"]:
            if not docker:
                return 1, ""
            return 0, runtimes if "json .Runtimes" in " ".join(argv) else "27.0.1"
        if argv[0] == "nvidia-smi":
            return (0, "GPU 0: NVIDIA A10 (UUID: GPU-1)") if gpu else (127, "")
        raise AssertionError(argv)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_no_docker_engine_means_local_mode():
    choice = detect({}, fake_tools(docker=False))
    assert (choice.mode, choice.target) == ("local", None)
    assert "docker info" in choice.reason


def test_docker_without_gpu_means_compose_with_the_cpu_target():
    assert (detect({}, fake_tools(docker=True)).mode, detect({}, fake_tools(docker=True)).target) == ("compose", "cpu")


def test_gpu_and_nvidia_runtime_means_compose_with_the_gpu_target():
    run = fake_tools(docker=True, gpu=True, runtimes='{"nvidia":{"path":"nvidia-container-runtime"},"runc":{}}')
    assert detect({}, run).target == "gpu"


def test_gpu_without_the_docker_nvidia_runtime_falls_back_to_cpu():
    assert detect({}, fake_tools(docker=True, gpu=True)).target == "cpu"


def test_llf_mode_local_wins_over_a_reachable_docker_and_asks_nothing():
    run = fake_tools(docker=True, gpu=True)
    assert detect({"LLF_MODE": "local"}, run).mode == "local"
    assert run.calls == []  # type: ignore[attr-defined]


def test_llf_mode_compose_is_honoured_even_when_docker_info_fails():
    choice = detect({"LLF_MODE": "Compose"}, fake_tools(docker=False))
    assert (choice.mode, choice.target) == ("compose", "cpu")


def test_unknown_llf_mode_is_an_error():
    with pytest.raises(ModeError, match="LLF_MODE"):
        detect({"LLF_MODE": "kubernetes"}, fake_tools(docker=False))
