"""``python -m tests.e2e.hub``: the hub stand-in as a container on the Compose network, plus slow files.

Same repos as ``python -m tests.support.hub`` (``--tiny``, ``--large``), and ``--slow REPO:PATH:BPS``
caps the download rate of one file, so that a test can kill a worker *during* a pull or watch
several pulls make progress side by side. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tests.support.hub import HubStandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.hub", description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tiny", action="append", default=[], metavar="REPO[@SEED]")
    parser.add_argument("--large", action="append", default=[], metavar="REPO:NAME:SIZE[:SEED]")
    parser.add_argument("--slow", action="append", default=[], metavar="REPO:PATH:BPS")
    args = parser.parse_args(argv)

    hub = HubStandIn(args.root)
    for spec in args.tiny:
        repo_id, _, seed = spec.partition("@")
        if hub.store.find(repo_id) is None:
            hub.add_tiny_model(repo_id, seed=int(seed or 0))
    for spec in args.large:
        repo_id, name, size, *seed = spec.split(":")
        if hub.store.find(repo_id) is None or name not in hub.files(repo_id):
            hub.add_large_file(repo_id, name, int(size), seed=int(seed[0]) if seed else 0)
    for spec in args.slow:
        repo_id, path, rate = spec.split(":")
        hub.faults.slow_bps[(repo_id, path)] = float(rate)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    url = hub.start(args.host, args.port)
    print(f"hub stand-in serving {url} root={args.root}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
