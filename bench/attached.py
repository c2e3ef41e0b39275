"""The gateway's app in front of engines that already run: ``python -m bench.attached``.

Benchmark #10 compares routing policies in front of the *same* two engines. The gateway normally
starts its own engines; here its pool is given ready replicas whose clients point at engines the
benchmark started, and everything after that — checks, routing policy, relay, metrics — is the
gateway's own code (``create_app(settings, gateway)``), served by uvicorn as ``llf-inference`` is.

Usage: ``python -m bench.attached --port P --model M --routing affinity --engine URL --engine URL``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import uvicorn
from llf_inference.app import create_app
from llf_inference.engine.spec import EngineSpec
from llf_inference.gateway import Gateway
from llf_inference.replica import Replica
from llf_inference.settings import InferenceSettings
from llf_inference.transport import EngineTransport


def attached_gateway(settings: InferenceSettings, model: str, engines: list[str], max_model_len: int) -> Gateway:
    """A gateway whose pool holds one ready replica per engine URL (nothing is started or stopped)."""
    gateway = Gateway(settings)
    spec = EngineSpec.from_settings(settings, model, "/attached")
    for index, url in enumerate(engines):
        replica = Replica(f"r{index}", spec, settings)
        replica.client = httpx.AsyncClient(
            base_url=url,
            transport=EngineTransport(),
            timeout=httpx.Timeout(settings.upstream_read_timeout_s, connect=settings.upstream_connect_timeout_s),
        )
        replica.max_model_len = max_model_len
        replica.state = "ready"
        gateway.supervisor.replicas.append(replica)
    gateway.supervisor.target = model
    return gateway


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.attached")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--routing", choices=["affinity", "least_loaded"], required=True)
    parser.add_argument("--engine", action="append", required=True, help="engine base URL (repeat)")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = InferenceSettings(home=args.home, device="cpu", routing=args.routing)
    gateway = attached_gateway(settings, args.model, args.engine, args.max_model_len)
    uvicorn.run(create_app(settings, gateway), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
