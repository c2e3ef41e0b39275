"""Asks the inference gateway which models it uses, so we never delete one under it.

Two questions with two different answers to "the gateway did not answer":

- ``served()`` only decorates listings (``ModelInfo.served``): a failure is logged and reads as
  "unknown" (``None``).
- ``in_use(repo)`` guards ``rm``: only a *refused connection* (nothing listens: no gateway, so
  nothing served) means "not in use". A timeout on a busy machine, a 401, a 5xx or a body that is
  not a status is a gateway that may well be serving the model: it raises ``Unavailable`` (503)
  instead of allowing the delete.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from llf_common.errors import Unavailable
from llf_common.wire import GatewayStatus
from pydantic import SecretStr, ValidationError

log = logging.getLogger(__name__)

# Replica states that hold (or are about to hold) a model's files open.
LIVE_REPLICA_STATES = ("starting", "ready", "draining", "restarting")


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
            if replica.state in LIVE_REPLICA_STATES:
                served.add(replica.model)
        return served

    def in_use(self, repo: str = "the model") -> set[str]:
        """Every model the gateway lists or has a replica of, in any state; raises when it cannot say.

        Read from the raw JSON (``models`` and each replica's ``model``), not the full status model:
        states and keys a newer gateway adds (loaded, asleep, ...) must not make a delete possible
        or impossible.
        """
        try:
            response = self.client.get(self.url, headers=self.headers, timeout=self.timeout)
        except httpx.ConnectError as exc:
            if refused(exc):
                return set()
            raise self._unsure(repo, type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise self._unsure(repo, type(exc).__name__) from None
        if response.status_code != 200:
            raise self._unsure(repo, f"it answered {response.status_code}")
        try:
            return models_in(json.loads(response.content))
        except (ValueError, TypeError, KeyError) as exc:
            raise self._unsure(repo, f"unreadable status ({exc})") from None

    def _unsure(self, repo: str, why: str) -> Unavailable:
        log.warning("gateway status unavailable", extra={"url": self.url, "error": why})
        return Unavailable(
            f"cannot confirm the gateway is not serving {repo} ({why}); retry or use --force",
            retry_after=5,
        )


def refused(exc: BaseException) -> bool:
    """Was the connection refused (nothing listens), as opposed to a timeout, DNS or routing failure?"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def models_in(status: Any) -> set[str]:
    """``models`` plus every replica's ``model`` (plus the target being loaded) of a status body."""
    if not isinstance(status, dict):
        raise TypeError("not an object")
    models = status.get("models", [])
    replicas = status.get("replicas", [])
    if not isinstance(models, list) or not isinstance(replicas, list):
        raise TypeError("'models' and 'replicas' must be lists")
    found = {str(m) for m in models if isinstance(m, str)}
    if len(found) != len(models):
        raise TypeError("'models' must list names")
    for replica in replicas:
        if not isinstance(replica, dict) or not isinstance(replica.get("model"), str):
            raise KeyError("a replica without a model")
        found.add(replica["model"])
    target = status.get("target")
    if isinstance(target, str) and target and status.get("state") in ("starting", "switching"):
        found.add(target)
    # Every model in the gateway's pool, including one still waiting for room (no replica yet).
    for entry in status.get("model_states") or []:
        if isinstance(entry, dict) and isinstance(entry.get("model"), str) and entry.get("state") != "available":
            found.add(entry["model"])
    return found
