"""Asks the inference gateway which models it serves, so we never delete one under it.

The answer is advisory: if the gateway is down (or answers nonsense) nothing is being served
from it, so deleting is allowed; the failure is logged, not raised.
"""

from __future__ import annotations

import logging

import httpx
from llf_common.wire import GatewayStatus
from pydantic import SecretStr, ValidationError

log = logging.getLogger(__name__)


class GatewayProbe:
    def __init__(
        self, url: str, api_key: SecretStr | None = None, timeout: float = 2.0, client: httpx.Client | None = None
    ) -> None:
        self.url = url.rstrip("/") + "/v1/status"
        self.headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else {}
        self.timeout = timeout
        self.client = client or httpx.Client()

    def served(self) -> set[str] | None:
        """Models with a ready (or loading) replica; ``None`` when the gateway cannot say."""
        try:
            response = self.client.get(self.url, headers=self.headers, timeout=self.timeout)
            response.raise_for_status()
            status = GatewayStatus.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError, ValueError) as exc:
            log.info("gateway status unavailable", extra={"url": self.url, "error": type(exc).__name__})
            return None
        served = set(status.models)
        if status.target and status.state in ("starting", "switching"):
            served.add(status.target)
        for replica in status.replicas:
            if replica.state in ("starting", "ready", "draining", "restarting"):
                served.add(replica.model)
        return served
