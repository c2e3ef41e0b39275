"""checkov over every rendering, with the skips (and their reasons) of deploy/k8s/.checkov.yaml only.

checkov pins many packages of its own, so it lives in its own locked venv (``make checkov`` creates
``.venv-checkov`` from tools/checkov; ``LLF_CHECKOV`` names another binary). Without it the test is
skipped and says how to get it, except in CI (``CI=true``), which installs it first and must run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import k8s

CHECKOV = os.environ.get("LLF_CHECKOV") or str(k8s.ROOT / ".venv-checkov" / "bin" / "checkov")


def test_checkov_passes_on_every_rendering(rendered_dir: Path) -> None:
    if not shutil.which(CHECKOV):
        missing = f"checkov not found at {CHECKOV}: `make checkov` installs it into .venv-checkov"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    done = subprocess.run(
        [CHECKOV, "-d", str(rendered_dir), "--config-file", str(k8s.K8S_DIR / ".checkov.yaml"), "--skip-download",
         "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    assert done.stdout.strip(), f"checkov printed no report (exit {done.returncode}):\n{done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} ({check['file_path']})"
        for r in reports
        for check in r.get("results", {}).get("failed_checks", [])
    ]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert not failed, "\n".join(failed)
    assert passed > 100, f"checkov ran only {passed} checks: did it read the manifests?"
