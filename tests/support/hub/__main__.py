"""``python -m tests.support.hub --root DIR [--host H] [--port P] [--tiny REPO[@SEED] ...]``.

Serves the stand-in until SIGTERM/SIGINT, for containers (the e2e stack's ``hub`` service), benchmarks
and manual runs. ``--slow REPO:PATH:BPS`` caps the download rate of one file, so that several pulls can
be watched making progress side by side; ``--hold REPO:PATH[:BYTES]`` parks every download of a file
after BYTES until ``DELETE /_stand_in/holds`` (``GET`` lists the holds and how many streams wait), so
that a test can kill a worker *during* a pull without racing the clock. Repos already under
``--root`` are served as they are; ``--tiny``/``--large`` only create repos that do not exist yet,
so a restart serves the same shas.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.support.hub import HubStandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.hub", description=__doc__)
    parser.add_argument("--root", type=Path, default=None, help="repo storage (default: a new temp dir)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    parser.add_argument("--tiny", action="append", default=[], metavar="REPO[@SEED]", help="add a tiny model repo")
    parser.add_argument(
        "--large", action="append", default=[], metavar="REPO:NAME:SIZE[:SEED]", help="add a random file of SIZE bytes"
    )
    parser.add_argument(
        "--slow", action="append", default=[], metavar="REPO:PATH:BPS", help="cap the download rate of one file"
    )
    parser.add_argument(
        "--hold",
        action="append",
        default=[],
        metavar="REPO:PATH[:BYTES]",
        help="stop every GET of PATH after BYTES (default 0) until DELETE /_stand_in/holds releases it",
    )
    parser.add_argument("--gated", action="append", default=[], metavar="REPO", help="make REPO gated")
    parser.add_argument("--token", action="append", default=[], help="token accepted for gated repos")
    args = parser.parse_args(argv)

    root = args.root or Path(tempfile.mkdtemp(prefix="hub-stand-in-"))
    hub = HubStandIn(root)
    for spec in args.tiny:
        repo_id, _, seed = spec.partition("@")
        if hub.store.find(repo_id) is None:
            hub.add_tiny_model(repo_id, seed=int(seed or 0))
    for spec in args.large:
        repo_id, name, size, *seed = spec.split(":")
        repo = hub.store.find(repo_id)
        if repo is None or name not in hub.files(repo_id):
            hub.add_large_file(repo_id, name, int(size), seed=int(seed[0]) if seed else 0)
    for spec in args.slow:
        repo_id, path, rate = spec.split(":")
        hub.faults.slow_bps[(repo_id, path)] = float(rate)
    for spec in args.hold:
        repo_id, path, *after = spec.split(":")
        hub.hold(repo_id, path, int(after[0]) if after else 0)
    for repo_id in args.gated:
        hub.set_gated(repo_id, True)
    for token in args.token or filter(None, [os.environ.get("HUB_STAND_IN_TOKEN")]):
        hub.require_token(token)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    url = hub.start(args.host, args.port)
    print(f"hub stand-in serving {url} root={root}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        hub.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
