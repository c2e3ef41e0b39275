"""HTTP routers: thin translations between requests and the ``Gateway``'s methods.

A router validates what HTTP carries, calls one ``Gateway`` method and shapes the reply; it
counts no metrics, calls no engine and builds no listing itself. The gateway comes from
``create_app`` through ``GatewayDep``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llf_inference.gateway import Gateway


async def get_gateway(request: Request) -> Gateway:
    """The app's gateway. ``async`` although it awaits nothing: FastAPI runs a plain ``def``
    dependency in its thread pool, a thread hand-off on every request of the data plane."""
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
