"""Which replica answers a request: a ready one serving the model, chosen by the routing policy.

Only ``ready`` replicas are routable: one that is starting, draining, restarting, asleep
(its lifecycle wakes it before the request is routed) or failed gets nothing new. Among
them the policy (``llf_inference.routing``) chooses; a replica named by the request's
``previous_response_id`` wins while it is routable.

The answer when there is none is part of the API: a model nobody serves is a 404 naming the
models that are served; a model that is starting, restarting or being switched to is a 503
with ``Retry-After`` (a client that honours it never sees a failure during a swap); a model
whose engine gave up is a 503 with the reason. A request without ``model`` goes to the
gateway's current model, as vLLM itself does (during a start-then-switch swap, to the model
still serving until the new one is ready).
"""

from __future__ import annotations

from llf_common.errors import LLFError, NotFound, Unavailable

from llf_inference.replica import Replica
from llf_inference.routing import Choice, RoutingPolicy
from llf_inference.routing.least import LeastLoaded
from llf_inference.supervisor import EngineFailed, Supervisor

__all__ = ["EngineFailed", "ModelNotServed", "pick", "route"]

_LEAST = LeastLoaded()


class ModelNotServed(NotFound):
    code = "model_not_found"


def pick(supervisor: Supervisor, model: str | None) -> Replica:
    """The ready replica of ``model`` with the fewest requests in flight (ties: pool order)."""
    return route(supervisor, model, _LEAST).replica


def route(
    supervisor: Supervisor,
    model: str | None,
    policy: RoutingPolicy,
    key: str | None = None,
    pinned: str | None = None,
) -> Choice[Replica]:
    """The policy's choice among the ready replicas of ``model`` (``pinned``, a replica id, first)."""
    name = model if model is not None else supervisor.target
    ready = [r for r in supervisor.replicas if r.model == name and _routable(supervisor, r)]
    if not ready and model is None and supervisor.switching:
        # No model named: while a swap starts the new model, whatever still serves answers.
        ready = [r for r in supervisor.replicas if _routable(supervisor, r)]
    if not ready:
        raise _why_not(supervisor, name)
    if pinned is not None:
        for replica in ready:
            if replica.id == pinned:
                return Choice(replica, "pinned")
    return policy.choose(ready, key)


def _routable(supervisor: Supervisor, replica: Replica) -> bool:
    """Ready and awake: an engine put to sleep keeps its ``ready`` state but cannot answer."""
    return replica.state == "ready" and replica.model not in supervisor.asleep


def _why_not(supervisor: Supervisor, name: str | None) -> LLFError:
    retry_after = supervisor.settings.retry_after_s
    mine = [r for r in supervisor.replicas if r.model == name]
    if name is not None and (name == supervisor.target or mine):
        if supervisor.switching:
            return Unavailable(f"switching to {supervisor.target}; retry shortly", retry_after=retry_after)
        if mine and all(r.state == "failed" for r in mine):
            reason = next((r.failure for r in mine if r.failure), None)
            return EngineFailed(f"the engine for {name} failed: {reason}; run `llf serve {name}` to try again")
        states = sorted({"asleep" if r.model in supervisor.asleep else r.state for r in mine}) or ["starting"]
        return Unavailable(f"{name} is not ready yet ({', '.join(states)}); retry shortly", retry_after=retry_after)
    if supervisor.switching:
        return Unavailable(f"switching to {supervisor.target}; retry shortly", retry_after=retry_after)
    served = supervisor.served_models()
    if name is None:
        return ModelNotServed("no model is being served; start one with `llf serve MODEL`")
    listing = ", ".join(served) if served else "none (start one with `llf serve MODEL`)"
    return ModelNotServed(f"model '{name}' is not served by this gateway; served models: {listing}")
