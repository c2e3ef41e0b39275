"""A freshly started engine whose first request is the shortest prompt answers, in llf's dtype.

On Intel CPUs with AMX, a 1-token first prefill used to kill vLLM's worker with SIGILL (its AMX
kernels never asked Linux for tile permission). llf's start-up hook asks in every engine
process; this test runs on whatever CPU the suite has and checks the visible part everywhere:
the first ``/v1/completions`` with prompt "hi" answers, the engine runs with the dtype llf chose
for this CPU, the engine started with the hook first on its path, and a child that the engine's
Python spawns the way vLLM starts its workers runs the hook too.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import psutil
from llf_inference.cpu import CpuInfo, choose_dtype, host_cpu
from llf_inference.engine.process import group_members
from llf_inference.engine.spec import STARTUP_DIR, EngineSpec
from llf_inference.settings import EngineOptions

from tests.integration.inference.conftest import API_KEY, MODEL_A
from tests.support.gateway import GatewayProcess
from tests.support.registry import RegistryStack


def test_a_fresh_engine_answers_a_first_one_token_prompt_in_the_dtype_llf_chose(
    tmp_path: Path, inference_registry: RegistryStack, engine_python: Path
) -> None:
    gateway = GatewayProcess(
        tmp_path / "gateway", models_url=inference_registry.url, engine_python=engine_python, api_key=API_KEY
    )
    try:
        gateway.start()
        gateway.serve(MODEL_A)  # waits (bounded) for ready: the gateway's pre-flight has generated
        body = {"model": MODEL_A, "prompt": "hi", "max_tokens": 4, "ignore_eos": True, "temperature": 0}
        with gateway.client(timeout=120) as http:
            answer = http.post("/v1/completions", json=body)
        assert answer.status_code == 200, f"{answer.text}\ngateway log:\n{gateway.log_tail()}"
        assert answer.json()["usage"]["completion_tokens"] == 4

        replica = gateway.status()["replicas"][0]
        assert replica["state"] == "ready" and replica["restarts"] == 0, replica
        argv = psutil.Process(replica["pid"]).cmdline()
        chosen = choose_dtype(host_cpu()).dtype
        assert argv[argv.index("--dtype") + 1] == chosen, argv

        # The API server started with the hook first on its path and the outcome of the hook that
        # ran in the launcher before it. EngineCore and the workers rename themselves (setproctitle
        # overwrites their /proc environ), so the next test checks a spawned child of the engine's
        # Python directly.
        assert len(group_members(replica["pid"])) >= 3, "the API server, EngineCore and a worker"
        leader = psutil.Process(replica["pid"]).environ()
        assert leader["PYTHONPATH"].split(os.pathsep)[0] == str(STARTUP_DIR), leader.get("PYTHONPATH")
        assert leader.get("LLF_ENGINE_AMX") in ("granted", "unavailable"), sorted(leader)
    finally:
        gateway.kill()


SPAWN_CHECK = """
import multiprocessing, os, sys


def report(queue):
    import sitecustomize
    queue.put((sitecustomize.__file__, os.environ.get("LLF_ENGINE_AMX"), sitecustomize.amx_permitted()))


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")  # what vLLM's CPU platform uses for its workers
    queue = context.Queue()
    child = context.Process(target=report, args=(queue,))
    child.start()
    print(queue.get(timeout=60))
    child.join(60)
"""


def test_a_spawned_child_of_the_engine_python_runs_the_hook_and_holds_amx_permission_where_there_is_amx(
    tmp_path: Path, engine_python: Path
) -> None:
    script = tmp_path / "spawn_check.py"
    script.write_text(SPAWN_CHECK)
    spec = EngineSpec(model="o/m", path="/m", options=EngineOptions(), launcher=(str(engine_python),))
    done = subprocess.run(
        [str(engine_python), str(script)], env=spec.environment(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    hook_file, outcome, permitted = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert Path(hook_file).parent == STARTUP_DIR
    has_amx = "amx_tile" in ((host_cpu() or CpuInfo("", "", frozenset())).flags)
    assert (outcome, permitted) == (("granted", True) if has_amx else ("unavailable", False))
