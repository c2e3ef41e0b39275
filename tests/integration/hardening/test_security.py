"""Secrets stay secret, the key check is constant-time, Redis is never exposed.

The leak test runs both services as real processes with ``LLF_API_KEY`` and ``HF_TOKEN`` set,
drives them through successes *and* failures (wrong keys, a gated repo the token does not
open, bad requests, a served engine), then greps everything an operator or a client could
see: every log file, every Redis key (job meta included), every response body, the status
and metrics pages, and the engine's environment. On the way it checks that the engine the gateway
started listens on a socket in a 0700 directory of the gateway's user and on no TCP port.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import stat
import textwrap
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from redis import Redis

from tests.integration.conftest import TINY_REPO
from tests.integration.hardening.conftest import (
    API_KEY,
    HF_TOKEN,
    REPO_ROOT,
    UPSTREAM_MODEL,
    upstream_command,
    upstream_model_dir,
)
from tests.support.gateway import GatewayProcess, engine_socket, tcp_listeners
from tests.support.hub import HubStandIn
from tests.support.registry import RegistryStack, wait_job

WRONG_KEY = "sk-wrong-key-sent-by-a-client-9876543210"


def redis_dump(url: str) -> bytes:
    """Every key and value in Redis, whatever its type (job meta is a pickled hash field)."""
    redis = Redis.from_url(url)
    parts: list[bytes] = []
    try:
        for key in redis.scan_iter(count=1000):
            kind = redis.type(key)
            parts.append(key)
            if kind == b"string":
                parts.append(redis.get(key) or b"")
            elif kind == b"hash":
                parts += [b for pair in redis.hgetall(key).items() for b in pair]
            elif kind == b"list":
                parts += redis.lrange(key, 0, -1)
            elif kind == b"set":
                parts += list(redis.smembers(key))
            elif kind == b"zset":
                parts += [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
            elif kind == b"stream":
                parts += [json.dumps(str(entry)).encode() for entry in redis.xrange(key)]
    finally:
        redis.close()
    return b"\n".join(parts)


def test_no_secret_appears_in_logs_job_meta_redis_errors_or_the_engine_environment(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn
) -> None:
    gated = f"llf-hardening/gated-{uuid.uuid4().hex[:8]}"
    fresh_hub.add_tiny_model(gated, seed=31, gated=True)  # HF_TOKEN is not accepted by the hub for it
    seen: list[str] = []
    secrets = [API_KEY, HF_TOKEN, WRONG_KEY]
    registry = RegistryStack(tmp_path / "registry", redis_url=redis_url, hf_endpoint=str(fresh_hub.url),
                             api_key=API_KEY, env={"HF_TOKEN": HF_TOKEN, "LLF_LOG_LEVEL": "DEBUG"})  # fmt: skip
    gateway = GatewayProcess(
        tmp_path / "gateway",
        models_url=None,
        api_key=API_KEY,
        env={
            "HF_TOKEN": HF_TOKEN,
            "LLF_LOG_LEVEL": "DEBUG",
            "LLF_INFERENCE_ENGINE_COMMAND": json.dumps(upstream_command()),
            "LLF_INFERENCE_MODEL_PATHS": json.dumps({UPSTREAM_MODEL: str(upstream_model_dir(tmp_path))}),
        },
    )
    try:
        registry.start_api()
        registry.start_worker()
        gateway.env["LLF_MODELS_URL"] = registry.url
        gateway.start()
        good = {"Authorization": f"Bearer {API_KEY}"}
        bad = {"Authorization": f"Bearer {WRONG_KEY}"}
        with httpx.Client(base_url=registry.url, timeout=30) as r, httpx.Client(base_url=gateway.url, timeout=60) as g:
            answers = [
                r.get("/v1/models", headers=bad),
                r.post("/v1/pulls", json={"repo": TINY_REPO}, headers=bad),
                r.post("/v1/pulls", json={"repo": "../etc"}, headers=good),
                r.post("/v1/pulls", json={"repo": "llf-test/no-such-repo"}, headers=good),
                g.get("/v1/status", headers=bad),
                g.post("/v1/chat/completions", json={"messages": []}, headers=bad),
                g.post("/v1/serve", json={"model": "llf-test/not-in-registry"}, headers=good),
            ]
            pulled = r.post("/v1/pulls", json={"repo": TINY_REPO}, headers=good).json()
            failed = r.post("/v1/pulls", json={"repo": gated}, headers=good).json()
            for job_id in (pulled.get("job_id"), failed.get("job_id")):
                if job_id:
                    wait_job(registry.url, job_id, timeout=90, api_key=API_KEY)
            assert g.post("/v1/serve", json={"model": UPSTREAM_MODEL, "wait": True}, headers=good).status_code < 300
            chat = {"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
            answers += [
                g.post("/v1/chat/completions", json=chat, headers=good),
                g.post("/v1/chat/completions", json={**chat, "temperature": -1}, headers=good),
                g.get("/v1/status", headers=good),
                g.get("/metrics", headers=good),
                r.get("/v1/jobs", headers=good),
                r.get(f"/v1/jobs/{failed.get('job_id')}", headers=good),
                r.get("/v1/models", headers=good),
            ]
            assert answers[0].status_code == 401 and answers[4].status_code == 401
            assert "gated" in (answers[-2].json().get("error") or ""), answers[-2].text
            seen += [a.text for a in answers]
            engines = [p for pid in gateway.engine_pids() for p in [psutil.Process(pid)]]
            assert engines, "the gateway started no engine"
            for engine in engines:  # no side door: a private socket, no TCP port (engine/address.py)
                socket = engine_socket(engine.pid)
                assert socket is not None and stat.S_ISSOCK(socket.stat().st_mode), engine.cmdline()
                assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700
                assert socket.parent.stat().st_uid == os.getuid()
                assert tcp_listeners(os.getpgid(engine.pid)) == []
            engine_env = "\n".join(f"{k}={v}" for e in engines for k, v in e.environ().items())
    finally:
        gateway.kill()
        registry.stop()
    logs = {str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*.log")}
    assert logs, "no log captured"
    dump = redis_dump(redis_url)
    for secret in secrets:
        assert not any(secret in text for text in seen), f"a response shows {secret[:6]}…"
        leaked = [path for path, text in logs.items() if secret in text]
        assert not leaked, f"{secret[:6]}… is in {leaked}"
        assert secret.encode() not in dump, f"{secret[:6]}… is stored in Redis"
    assert API_KEY not in engine_env and HF_TOKEN not in engine_env, "an engine inherited a secret"


def _calls(function: object) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            target = node.func
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                found.add(f"{target.value.id}.{target.attr}")
            elif isinstance(target, ast.Name):
                found.add(target.id)
    return found


def test_the_api_key_is_compared_in_constant_time_by_both_services() -> None:
    from llf_common import web
    from llf_inference import app as gateway_app
    from llf_inference.api import data_plane
    from llf_models import app as registry_app

    assert "hmac.compare_digest" in _calls(web.ApiKeyCheck.require)
    source = inspect.getsource(web.ApiKeyCheck)
    assert "== self.expected" not in source and "self.expected ==" not in source
    assert "ApiKeyCheck" in _calls(web.api_key_dependency)
    for module in (registry_app, gateway_app):
        assert "api_key_dependency" in _calls(module.create_app), f"{module.__name__} has its own key check"
    # The gateway's relay endpoints are plain ASGI, before FastAPI's dependencies: the same check.
    assert "ApiKeyCheck" in _calls(data_plane.DataPlane.__init__)


@pytest.mark.parametrize(
    "sent",
    ["", "Bearer", f"Bearer {API_KEY[:-1]}", f"Bearer {API_KEY}x", f"Bearer {API_KEY.upper()}", f"Basic {API_KEY}",
     f"bearer  {API_KEY} extra", "Bearer \u00e9\u00e9"],
    ids=["empty", "no-credentials", "prefix", "longer", "case", "basic-scheme", "extra-words", "non-ascii"],
)
def test_near_miss_keys_are_refused_on_every_service(sent: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from llf_inference.app import create_app as create_gateway
    from llf_inference.settings import InferenceSettings
    from llf_models.app import build_registry
    from llf_models.app import create_app as create_registry
    from llf_models.settings import ModelsSettings

    models_settings = ModelsSettings(home=tmp_path, models_dir=tmp_path / "m", api_key=API_KEY,
                                     redis_url="redis://127.0.0.1:1/0")  # fmt: skip
    apps = [
        (TestClient(create_registry(models_settings, build_registry(models_settings))), "/v1/jobs"),
        (TestClient(create_gateway(InferenceSettings(home=tmp_path, device="cpu", api_key=API_KEY))), "/v1/status"),
    ]
    for client, path in apps:
        headers = {"Authorization": sent.encode("utf-8")} if sent else {}
        answer = client.get(path, headers=headers)
        assert answer.status_code == 401, f"{path} with {sent!r}: {answer.status_code}"
        assert API_KEY not in answer.text
    relayed = apps[1][0].post("/v1/chat/completions", json={}, headers=headers)  # the gateway's data plane
    assert relayed.status_code == 401 and API_KEY not in relayed.text, f"relay with {sent!r}: {relayed.status_code}"


def test_redis_is_reachable_only_from_loopback_or_the_compose_network() -> None:
    from scripts.up.localconf import LocalPlan, render

    plan = LocalPlan(repo=REPO_ROOT, bin_dir=REPO_ROOT / ".venv" / "bin", run_dir=Path("/tmp/llf-x"),
                     redis_data=Path("/tmp/llf-x/redis"), redis_server=Path("/usr/bin/redis-server"),
                     redis_port=6399)  # fmt: skip
    conf = render(plan)
    redis_section = conf.split("[program:redis]", 1)[1].split("[program:", 1)[0]
    assert "--bind 127.0.0.1" in redis_section or "--bind', '127.0.0.1" in redis_section, redis_section
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    redis_service = compose.split("\n  redis:\n", 1)[1].split("\n  models:", 1)[0]
    assert "ports:" not in redis_service, "Redis is published on the host"
