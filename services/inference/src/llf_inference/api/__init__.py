"""HTTP routers: thin translations between requests and the gateway's domain objects."""

from __future__ import annotations

from fastapi import Request

from llf_inference.gateway import Gateway


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
