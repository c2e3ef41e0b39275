"""HTTP routers: thin translations between requests and the ``Gateway``'s methods.

A router validates what HTTP carries, calls one ``Gateway`` method and shapes the reply; it
counts no metrics, calls no engine and builds no listing itself. The gateway comes from
``create_app`` through ``GatewayDep``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llf_inference.gateway import Gateway


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
