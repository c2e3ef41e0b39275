"""An engine command for the browser tests: the second model runs on the fake engine, the first on vLLM.

The gateway starts every engine with one command (``engine_command`` + vLLM's arguments); this
wrapper looks at ``--served-model-name`` and execs the fake engine for ``FAKE_MODEL`` (so the model
picker can switch models without a second vLLM start on 2 cores), vLLM from the engine venv
otherwise. ``exec`` keeps the pid, so the gateway's process-group handling is unchanged.

argv: ``engine_switch.py <engine python> <fake model> <vLLM's arguments...>``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FAKE_ENGINE = Path(__file__).resolve().parents[2] / "support" / "fake_engine.py"


def main() -> None:
    engine_python, fake_model, *args = sys.argv[1:]
    name = args[args.index("--served-model-name") + 1] if "--served-model-name" in args else ""
    if name == fake_model:
        os.execv(sys.executable, [sys.executable, str(FAKE_ENGINE), *args])
    os.execv(engine_python, [engine_python, "-m", "vllm.entrypoints.openai.api_server", *args])


if __name__ == "__main__":
    main()
