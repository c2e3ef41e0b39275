"""#11 llf-testing: the first start of a model against the start of an image baked with it.

Why: ``LlfContainer.bake`` exists so that a CI run does not download its model again; this puts a
number on what it saves, and checks the promise that a baked image downloads nothing. Each
repetition times three starts, each to the container's first answered token (``LlfContainer.start``
returns only after a real one-token chat completion), in an order that rotates per repetition so
that a shared machine's load falls on each side alike:

- **first**: what ``LlfContainer(model=REPO)`` does when no volume holds the model: it finds the new,
  empty model volume empty (a one-shot container), a temporary ``LlfStack`` pulls the model through
  the registry (sha256-verified) from the hub stand-in of ``tests/e2e/compose.e2e.yml`` and is
  stopped, then the container serves the model from the volume. The stand-in's bytes served are
  recorded (the pull really downloaded).
- **baked**: ``LlfContainer(image=<baked>)`` on the network of a running hub stand-in with
  ``HF_ENDPOINT`` pointing at it (it could download, and must not): the stand-in's bytes served
  during that start are the target, 0.
- **demo**: ``LlfContainer(model="demo")``, the generated tiny model from its volume, for reference.

The baked image is made once per run (``LlfContainer.bake`` through a long-lived ``LlfStack`` with the
hub stand-in, whose hub the baked side then uses); its duration is in ``params``. Without a reachable
Docker engine, Compose v2 or the images of ``make images`` the case is recorded as not measured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Container, Mapping
from typing import Any

import httpx

from bench.context import Context
from bench.procs import ROOT
from bench.report import TIMES, Result, Target

MODEL = "e2e/tiny"  # one of the repos the hub stand-in of HUB_FILES serves
HUB_FILES = ["tests/e2e/compose.e2e.yml"]
HUB_IN_NETWORK = "http://hub:8080"
SIDES = ("first", "baked", "demo")
STARTUP_TIMEOUT = 1800.0  # seconds; several minutes per engine start were seen on a loaded 2-core machine


def side_order(rep: int) -> tuple[str, ...]:
    """The sides of repetition ``rep`` (0-based), rotated by one each time."""
    shift = rep % len(SIDES)
    return SIDES[shift:] + SIDES[:shift]


def served_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> int:
    """Bytes the hub stand-in served between two reads of its ``/_stand_in/counters``."""
    return int(after["bytes_served"]) - int(before["bytes_served"])


def missing_images(components: list[str], local: Container[str], env: Mapping[str, str]) -> list[str]:
    """The images ``LlfContainer``/``LlfStack`` would run for ``components`` that are not built here."""
    from llf_testing.images import choose_image

    return [name for name in (choose_image(c, env, local) for c in components) if name not in local]


def docker_problem() -> str | None:
    """Why the case cannot run here (no Docker CLI, engine, Compose v2 or images), or None."""
    if shutil.which("docker") is None:
        return "docker CLI not installed"
    checks = (
        (["docker", "info"], "no Docker engine reachable (`docker info` failed)"),
        (["docker", "compose", "version"], "Docker Compose v2 not installed (`docker compose version` failed)"),
    )
    for argv, why in checks:
        try:
            if subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode != 0:
                return why
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"Docker not usable: {exc}"
    import docker
    from llf_testing.images import local_tags, variant_for

    client = docker.from_env()
    missing = missing_images([f"inference-{variant_for(client.info())}", "models"], local_tags(client), os.environ)
    return f"{', '.join(missing)} not built (make images)" if missing else None


def hub_counters(hub_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{hub_url}/_stand_in/counters", timeout=10).json())


def remove_volume(name: str) -> None:
    subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, timeout=120, check=False)


def new_volume() -> str:
    return f"llf-bench-bake-{uuid.uuid4().hex[:8]}"


def timed_start(llf: Any) -> float:
    """Seconds from ``start()`` to its return (the first answered token); the container is stopped after."""
    started = time.monotonic()
    llf.start()
    try:
        return time.monotonic() - started
    finally:
        llf.stop()


def first_start(image: str) -> tuple[float, float, int]:
    """The first start of ``MODEL`` from a new empty volume: (total s, of which pull s, hub bytes served)."""
    import docker
    from llf_testing import LlfContainer, LlfStack
    from llf_testing.container import snapshot_in_volume

    volume = new_volume()
    stack = LlfStack(compose_dir=ROOT, files=HUB_FILES, models_volume=volume, startup_timeout=STARTUP_TIMEOUT)
    try:
        started = time.monotonic()
        if snapshot_in_volume(docker.from_env(), image, volume, MODEL) is not None:
            raise RuntimeError(f"the new volume {volume} already holds {MODEL}")
        try:
            stack.start()
            stack.pull(MODEL)
            pulled = time.monotonic()
            served = int(hub_counters(stack.url("hub", 8080))["bytes_served"])  # not timed
            resumed = time.monotonic()
        finally:
            stack.stop()
        pull_s = time.monotonic() - started - (resumed - pulled)
        llf = LlfContainer(model=MODEL, models_volume=volume, pull_missing=False, startup_timeout=STARTUP_TIMEOUT)
        serve_s = timed_start(llf)
        return pull_s + serve_s, pull_s, served
    finally:
        remove_volume(volume)


def baked_start(image: str, network: str, hub_url: str) -> tuple[float, int]:
    """A start of the baked ``image`` next to the hub stand-in: (s to first token, hub bytes served)."""
    from llf_testing import LlfContainer

    before = hub_counters(hub_url)
    llf = LlfContainer(image=image, network=network, env={"HF_ENDPOINT": HUB_IN_NETWORK},
                       startup_timeout=STARTUP_TIMEOUT)  # fmt: skip
    seconds = timed_start(llf)
    return seconds, served_between(before, hub_counters(hub_url))


def demo_start() -> float:
    from llf_testing import LlfContainer

    return timed_start(LlfContainer(model="demo", startup_timeout=STARTUP_TIMEOUT))


def measure(result: Result, side: str, inference: str, baked: str, network: str, hub_url: str) -> None:
    """One start of ``side`` into ``result``'s metrics."""
    if side == "first":
        total, pull, served = first_start(inference)
        result.metric("first_s", "s", "empty volume: LlfStack pull + stop, container -> first token").add(total)
        result.metric("first_pull_s", "s", "of first_s: LlfStack up, pull (verified), down").add(pull)
        result.metric("first_bytes", "bytes", "hub stand-in bytes served on the first start").add(served)
    elif side == "baked":
        seconds, served = baked_start(baked, network, hub_url)
        result.metric("baked_s", "s", "baked image: container start -> first token").add(seconds)
        result.metric("baked_bytes", "bytes", "hub stand-in bytes served on that start").add(served)
    else:
        result.metric("demo_s", "s", 'model="demo": container start -> first token').add(demo_start())


def run(ctx: Context, result: Result) -> None:
    result.params.update({"model": MODEL, "hub": f"tests.support.hub in Compose ({HUB_FILES[0]})"})
    problem = docker_problem()
    if problem:
        result.status = "skipped"
        result.error = problem
        return
    import docker
    from llf_testing import LlfContainer, LlfStack
    from llf_testing.container import ensure_demo
    from llf_testing.images import choose_image, local_tags, variant_for

    client = docker.from_env()
    inference = choose_image(f"inference-{variant_for(client.info())}", os.environ, local_tags(client))
    ensure_demo(client, inference)  # the demo volume is written once per machine: not part of a start
    volume = new_volume()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(remove_volume, volume)
        hub_stack = LlfStack(compose_dir=ROOT, files=HUB_FILES, models_volume=volume, startup_timeout=STARTUP_TIMEOUT)
        cleanup.callback(hub_stack.stop)
        hub_stack.start()
        hub_url = hub_stack.url("hub", 8080)
        began = time.monotonic()
        baked = LlfContainer.bake(MODEL, stack=hub_stack)
        cleanup.callback(subprocess.run, ["docker", "rmi", "-f", baked], capture_output=True, check=False)
        result.params.update({"bake_s": round(time.monotonic() - began, 1), "baked_image": baked,
                              "inference_image": inference, "startup_timeout_s": STARTUP_TIMEOUT})  # fmt: skip
        for rep in range(ctx.reps):
            order = side_order(rep)
            result.params.setdefault("orders", []).append(list(order))
            for side in order:
                print(f"bench: bake: repetition {rep + 1}/{ctx.reps}: {side} start ...", flush=True)
                measure(result, side, inference, baked, hub_stack.network, hub_url)
        for first, baked_s in zip(result.metrics["first_s"].samples, result.metrics["baked_s"].samples, strict=True):
            result.metric("ratio", TIMES, "baked start / first start, same repetition").add(baked_s / first)
    result.commands.update({
        "first": f"LlfContainer(model={MODEL!r}, models_volume=<new>) as it does for a missing model: "
                 f"LlfStack(files={HUB_FILES}).pull({MODEL!r}), stop, start from the volume",
        "baked": f"LlfContainer(image=LlfContainer.bake({MODEL!r}), network=<hub's>, "
                 f"env={{'HF_ENDPOINT': {HUB_IN_NETWORK!r}}}).start()",
        "demo": 'LlfContainer(model="demo").start()',
    })  # fmt: skip
    result.targets.append(Target("hub bytes served on the baked image's start", "baked_bytes", "==", 0))
    result.reported.extend([
        ("first start (empty volume: registry pull from the hub stand-in) → first token", "first_s"),
        ("of which `LlfStack` up, pull, down", "first_pull_s"),
        ("second start (baked image) → first token", "baked_s"),
        ("baked start ÷ first start (same repetition)", "ratio"),
        ('`model="demo"` start → first token', "demo_s"),
        ("hub bytes served on the first start", "first_bytes"),
    ])  # fmt: skip
