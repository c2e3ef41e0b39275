"""Fixtures of the registry's integration tests: the API and workers as real subprocesses.

Each test gets its own ``LLF_HOME`` (so its own model store) and a flushed Redis; the hub
stand-in is shared, so tests that add repos use names of their own (``unique_repo``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hub import HubStandIn
from tests.support.registry import RegistryStack


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, fresh_hub: HubStandIn) -> Iterator[RegistryStack]:
    """The registry API, running, with no worker yet (tests start the workers they need)."""
    assert fresh_hub.url is not None
    registry = RegistryStack(tmp_path / "registry", redis_url=redis_url, hf_endpoint=fresh_hub.url)
    try:
        registry.start_api()
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def unique_repo() -> str:
    """A repo id no other test uses (the hub stand-in lives for the whole session)."""
    return f"llf-test/m-{uuid.uuid4().hex[:10]}"
