"""scripts/gpu-check.sh's plan: the settings of the gateways it starts, its verdict lines, and the checks' logic.

The checks themselves run against a faked gateway (``httpx.MockTransport``); the end-to-end run
over fake GPUs and the fake engine is ``tests/integration/test_gpu_check.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from scripts.gpucheck import checks, launch
from scripts.gpucheck.__main__ import OVERSIZED, base_settings, inventory_check
from scripts.gpucheck.checks import Api, Result


def test_a_verdict_is_one_aligned_line() -> None:
    assert Result("fit refusal", "PASS", "507 … (0.4 s)").line() == "PASS  fit refusal        507 … (0.4 s)"


def test_settings_reach_the_gateway_as_llf_inference_variables() -> None:
    env = launch.inference_env({"port": 8123, "sleep_mode": True, "model_paths": {"a/b": "/m"}})
    assert env == {
        "LLF_INFERENCE_PORT": "8123",
        "LLF_INFERENCE_SLEEP_MODE": "true",
        "LLF_INFERENCE_MODEL_PATHS": '{"a/b": "/m"}',
    }


def test_the_second_model_is_tensor_parallel_only_with_two_gpus(tmp_path: Path) -> None:
    two = base_settings(tmp_path, "24,24", ["x/a", "x/b"], 2)
    one = base_settings(tmp_path, "24", ["x/a", "x/b"], 1)
    assert two["model_overrides"]["x/b"] == {"tensor_parallel_size": 2}
    assert "x/b" not in one["model_overrides"]
    assert set(two["model_paths"]) == {OVERSIZED, "x/a", "x/b"} and two["device"] == "cuda"
    real = base_settings(tmp_path, None, ["x/a", "x/b"], 2)
    assert set(real["model_paths"]) == {OVERSIZED} and "engine_command" not in real


def test_the_oversized_model_needs_terabytes_of_kv_cache(tmp_path: Path) -> None:
    from llf_inference.estimate import KvShape

    config = json.loads((Path(launch.oversized_model(tmp_path)) / "config.json").read_text())
    shape = KvShape.from_config(config)
    assert shape is not None and shape.bytes_per_token() * (1 << 20) == 4 << 40


def test_inventory_lists_the_fake_gpus() -> None:
    result, count = inventory_check("24,80:60")
    assert count == 2 and result.verdict == "PASS"
    assert result.figures == (
        "2 GPUs: GPU0 NVIDIA Fake 24GB 24.0/24.0 GiB free, GPU1 NVIDIA Fake 80GB 60.0/80.0 GiB free"
    )


def gateway(handler: Any) -> Api:
    api = Api("http://gateway.test")
    api.http = httpx.Client(base_url="http://gateway.test", transport=httpx.MockTransport(handler))
    return api


def replica(rid: str, gpus: list[int], share: float = 0.1) -> dict[str, Any]:
    placement = {"device": "cuda", "gpus": gpus, "gpu_memory_utilization": share}
    return {"id": rid, "model": "x/a", "state": "ready", "placement": placement}


def test_replica_per_gpu_fails_when_two_replicas_share_a_gpu() -> None:
    replicas = [replica("r0", [0]), replica("r1", [0])]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"state": "ready", "models": ["x/a"], "replicas": replicas})

    result = checks.replica_per_gpu(gateway(handler), "x/a", 2)
    assert result == Result("replica per GPU", "FAIL", "2 replicas of x/a on 2 GPUs: GPU0 share 0.1, GPU0 share 0.1")


def test_fit_refusal_fails_when_the_refusal_stopped_other_replicas() -> None:
    statuses = [{"replicas": [replica("r0", [0])]}, {"replicas": []}]
    refusal = {"error": {"message": "x/huge needs 1 GPU with ≥ 4097 GiB; free: GPU0 24 GiB"}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(507, json=refusal)
        return httpx.Response(200, json=statuses.pop(0))

    result = checks.fit_refusal(gateway(handler), "x/huge")
    assert result.verdict == "FAIL" and result.figures.startswith("507 x/huge needs 1 GPU with ≥ 4097 GiB")
    assert result.figures.endswith("replicas unchanged: False)")
