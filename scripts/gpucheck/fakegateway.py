"""The real gateway app over a fake NVML inventory: what ``scripts/gpu-check.sh --fake`` checks.

``llf-inference`` takes its inventory from NVML and has no switch for a fake one (production
code stays free of test hooks); this launcher is the seam instead. It reads the same settings
(``LLF_INFERENCE_*``) and runs the same ``create_app`` under uvicorn, but hands the ``Gateway``
an inventory of fake GPUs (``tests/support/nvml.py``, e.g. ``--nvml 24,24,24,24``). Engines are
whatever ``engine_command`` says: the fake engine, in ``--fake`` runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

import uvicorn
from llf_common.logging import configure_logging
from llf_inference.app import create_app
from llf_inference.devices import discover
from llf_inference.engine.process import stop_all_engines
from llf_inference.gateway import Gateway
from llf_inference.settings import get_settings

from tests.support.nvml import FakeNvml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nvml", required=True, help="fake GPUs: total[:free] GiB each, e.g. 24,24,80:60")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, service="inference")
    settings.ensure_dirs()
    inventory = discover(FakeNvml.parse(args.nvml))
    app = create_app(settings, Gateway(settings, inventory=inventory))
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, lifespan="on")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.Server(config).run()
    finally:
        stop_all_engines(settings.stop_timeout_s)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
