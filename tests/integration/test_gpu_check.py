"""``scripts/gpu-check.sh --fake``: the GPU workstation check, run in CI against fake GPUs and the fake engine.

The same script a person runs on a real GPU box, end to end through the shell entry point: it
starts its gateways (the real app over a fake NVML inventory, engines = the fake engine) and
must print a PASS line for every behaviour and exit 0 (tensor parallelism is a SKIP on one GPU).
Bounded: one run takes ~35 s on 2 cores.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BEHAVIOURS = (
    "NVML inventory",
    "two models",
    "tensor parallel",
    "replica per GPU",
    "fit refusal",
    "load on demand",
    "keep_alive unload",
    "sleep/wake",
)


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        pytest.param("24,24,48,80", {}, id="four-mixed-gpus"),
        pytest.param("80", {"tensor parallel": "SKIP"}, id="one-gpu"),
    ],
)
def test_gpu_check_fake_passes_every_behaviour(gpus: str, expected: dict[str, str], tmp_path: Path) -> None:
    run = subprocess.run(
        [str(REPO / "scripts" / "gpu-check.sh"), "--fake", gpus, "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = run.stdout.splitlines()
    verdicts = {line[6:24].strip(): line[:4] for line in lines if line[:4] in ("PASS", "FAIL", "SKIP")}
    want = {**dict.fromkeys(BEHAVIOURS, "PASS"), **expected}
    output = run.stdout + run.stderr
    assert "wake → first token" in run.stdout and "cold start → first token" in run.stdout, output
    assert verdicts == want, output
    assert run.returncode == 0, output
