"""The registry's FastAPI app: routers, lifespan (index rebuild), auth on everything but health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from llf_common.web import api_key_dependency, base_app
from redis import Redis

from llf_models import __version__
from llf_models.api import health, imports, jobs, metrics, models, pulls
from llf_models.gateway import GatewayProbe
from llf_models.hub import HubClient
from llf_models.metrics import RegistryMetrics
from llf_models.queueing import JobQueue
from llf_models.registry import Registry
from llf_models.settings import ModelsSettings
from llf_models.state import ModelIndex, RepoLock, api_holder
from llf_models.store import Store


def build_registry(settings: ModelsSettings, redis: Redis | None = None) -> Registry:
    """The production wiring: real Redis, RQ, hub and gateway."""
    redis = redis or Redis.from_url(settings.redis_connection_url(), health_check_interval=30)
    store = Store(settings.models_path)

    def lock_for(repo: str) -> RepoLock:
        # A short wait: a job that was just stopped may still be releasing its lock.
        return RepoLock(redis, repo, api_holder(), ttl=settings.lock_ttl_s, wait=settings.cancel_wait_s, announce=True)

    return Registry(
        settings=settings,
        store=store,
        index=ModelIndex(redis, store),
        jobs=JobQueue(redis, settings),
        hub=HubClient(settings.hf_endpoint, settings.hf_token, timeout=settings.hub_timeout_s),
        gateway=GatewayProbe(settings.inference_url, settings.api_key, timeout=settings.gateway_timeout_s),
        lock_for=lock_for,
    )


def create_app(settings: ModelsSettings, registry: Registry | None = None) -> FastAPI:
    registry = registry or build_registry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.models_path.mkdir(parents=True, exist_ok=True)
        await run_in_threadpool(registry.startup)
        yield

    app = base_app(
        "llf model registry",
        __version__,
        api_key=settings.api_key,
        lifespan=lifespan,
        description="Pulls, verifies and stores Hugging Face models for the llf inference gateway.",
    )
    app.state.registry = registry
    app.state.settings = settings
    app.state.metrics = RegistryMetrics(registry.jobs.list)
    auth = [Depends(api_key_dependency(settings.api_key))]
    app.include_router(health.router)
    for router in (pulls.router, jobs.router, models.router, imports.router, metrics.router):
        app.include_router(router, dependencies=auth)
    return app
