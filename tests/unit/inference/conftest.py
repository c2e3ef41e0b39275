"""Fixtures of the gateway's unit tests: clean settings over the fake engine, nothing started.

``make_settings`` builds settings whose engine command is the fake engine
(``tests/support/fake_engine.py``) and whose two models are pinned to local directories; a
unit test uses them to build a ``Gateway`` and ``create_app(settings, gateway)``, never to
start an engine (that is what ``tests/integration/inference/component`` does).
"""

from __future__ import annotations

from tests.support.gateway_fixtures import MakeSettings, anyio_backend, clean_env, make_settings

__all__ = ["MakeSettings", "anyio_backend", "clean_env", "make_settings"]


