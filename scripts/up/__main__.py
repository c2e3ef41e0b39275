"""``python -m scripts.up [--model M] | --down | --logs`` — what ``make up/down/logs`` run."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
from llf_common.errors import ConfigError
from llf_common.settings import LLFSettings, config_path

from scripts.up import compose, local, localplan, redisauth, state, ui, userenv
from scripts.up.localconf import ConfError
from scripts.up.mode import ModeError, detect
from scripts.up.runners import runner_for
from scripts.up.stack import DEMO_MODEL, HubUnreachable, Stack, UpError, parse_replicas

REPO = localplan.REPO
KNOWN_ERRORS = (UpError, ConfigError, ModeError, localplan.PlanError, local.LocalError, compose.ComposeError, ConfError)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make up", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", help="repo id to serve (default: LLF_DEFAULT_MODEL / config / built-in)")
    parser.add_argument("--replicas", help="engines for the model: 1-16 or auto (default: LLF_REPLICAS, else 1)")
    group.add_argument("--down", action="store_true", help="stop what `make up` started")
    group.add_argument("--logs", action="store_true", help="tail the stack's logs")
    return parser.parse_args(argv)


def _timeout(environ: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(environ.get(name, default))
    except ValueError:
        return default


def web_url(environ: Mapping[str, str]) -> str:
    """Where the web pages answer: ``LLF_WEB_PORT`` (default 8080) on the loopback in both modes."""
    host = environ.get("LLF_WEB_HOST") or "127.0.0.1"
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    return f"http://{host}:{environ.get('LLF_WEB_PORT') or 8080}"


def demo_banner(requested: str) -> list[str]:
    return [
        f"RANDOM-WEIGHTS DEMO: serving {DEMO_MODEL} because {requested} could not be pulled",
        "(no hub reachable). Its answers are gibberish; it only shows the stack works.",
        "For a real model: set HF_ENDPOINT to a reachable hub or mirror (HF_TOKEN for gated",
        f"repos) and run `make up` again, or `llf pull {requested}` then `llf serve {requested}`;",
        "or import weights you have: `llf models import DIR --name owner/name`.",
    ]


def ensure_model(stack: Stack, model: str, write_demo: Callable[[], str], hub: str) -> str:
    """The model to serve: ``model`` if present or pullable, else the demo model when no hub answers."""
    found = stack.model_info(model)
    if found is not None:
        verified = "verified" if found.get("verified") else "NOT verified"
        ui.info(f"{model} is present ({ui.human_bytes(found.get('size_bytes') or 0)}, {verified})")
        return model
    ui.step(f"pulling {model} through the registry (hub: {hub})")
    try:
        stack.pull(model)
        return model
    except HubUnreachable as exc:
        ui.warn(f"no hub reachable from the registry: {exc}")
    if stack.model_info(DEMO_MODEL) is None:
        ui.step(f"writing the demo model and importing it as {DEMO_MODEL}")
        stack.import_dir(write_demo(), DEMO_MODEL)
    ui.banner(demo_banner(model))
    return DEMO_MODEL


def up(
    settings: LLFSettings, model_arg: str | None, environ: Mapping[str, str], replicas_arg: str | None = None
) -> int:
    started = time.monotonic()
    replicas = parse_replicas(replicas_arg or environ.get("LLF_REPLICAS"))
    choice = detect(environ)
    ui.step(f"mode: {choice.mode}{f' ({choice.target})' if choice.target else ''} — {choice.reason}")
    settings.ensure_dirs()
    if choice.mode == "compose":
        ui.step("images: pulled, or built here when no registry answers (scripts/docker-images.sh)")
        log_dir = settings.run_path / "docker-images"
        choice = compose.with_images(
            choice, environ, lambda target: compose.build_images(REPO, target, environ, log_dir)
        )
    run_state = state.load(settings.run_path)
    runner = runner_for(choice, settings, environ)
    runner.start(run_state.get("served"))
    ready_timeout = _timeout(environ, "LLF_UP_TIMEOUT", 120.0)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    stack = Stack(settings.models_url, settings.inference_url, api_key)
    try:
        ui.step(f"waiting for the registry at {settings.models_url}")
        stack.wait_until(
            f"{settings.models_url}/readyz",
            "the registry",
            ready_timeout,
            runner.where("models"),
            runner.gave_up("models"),
        )
        wrote_before = run_state.get("wrote_default_model")
        config = userenv.read_config(config_path()) or {}
        builtin = str(LLFSettings.model_fields["default_model"].default)
        wanted = userenv.choose_model(model_arg, environ, config, wrote_before, builtin)
        ui.step(f"model: {wanted.model} (from {wanted.source})")
        served = ensure_model(stack, wanted.model, runner.write_demo, settings.hf_endpoint)

        ui.step(f"serving {served} (loading an engine takes a minute or more on a CPU)")
        runner.set_serving(served)
        state.update(settings.run_path, served=served)
        stack.wait_until(
            f"{settings.inference_url}/healthz", "the gateway", ready_timeout, runner.where("inference"),
            runner.gave_up("inference"),
        )  # fmt: skip
        stack.serve(served, _timeout(environ, "LLF_UP_SERVE_TIMEOUT", 900.0), runner.where("inference"), replicas)
        stack.wait_until(
            f"{settings.inference_url}/readyz", "the gateway", ready_timeout, runner.where("inference"),
            runner.gave_up("inference"),
        )  # fmt: skip
    finally:
        stack.close()

    update = userenv.set_cli_default(config_path(), served, environ, wrote_before)
    state.update(settings.run_path, wrote_default_model=update.wrote)
    if update.note:
        ui.info(update.note)
    venv_bin = localplan.bin_dir()
    ui.info(userenv.put_on_path(venv_bin / "llf", environ, Path.home(), settings.home, hidden=venv_bin))
    elapsed = time.monotonic() - started
    ui.step(f"ready in {elapsed:.0f}s: {served} is served at {settings.inference_url}/v1 (OpenAI API)")
    if served == DEMO_MODEL and wanted.model != DEMO_MODEL:
        ui.warn(f"{DEMO_MODEL} is a RANDOM-WEIGHTS DEMO: expect gibberish (see above for a real model)")
    ui.info(f"web pages (chat, models, status): {web_url(environ)}")
    ui.info("stop with `make down`, follow the logs with `make logs`")
    print("\nNext:  llf chat", flush=True)
    return 0


def down(settings: LLFSettings, environ: Mapping[str, str]) -> int:
    previous = state.load(settings.run_path)
    stopped = local.stop(settings.run_path)
    if stopped:
        ui.step(f"stopped the local stack ({len(stopped)} processes)")
    if previous.get("mode") == "compose":
        code = compose.down(REPO, previous.get("target") or "cpu", environ)
        ui.step("stopped the Compose stack" if code == 0 else f"docker compose down failed (exit {code})")
        state.update(settings.run_path, mode=None)
        return code
    if not stopped:
        ui.step("nothing to stop: no local stack is running for " + str(settings.run_path))
    return 0


def logs(settings: LLFSettings) -> int:
    previous = state.load(settings.run_path)
    if previous.get("mode") == "compose":
        argv = compose.logs_command(REPO, previous.get("target") or "cpu")
    else:
        argv = local.tail_command(settings.run_path)
        if len(argv) <= 5:
            ui.error(f"no logs under {settings.run_path}: has `make up` run?")
            return 1
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover - exec does not return


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    environ = dict(os.environ)
    try:
        settings = LLFSettings.load()
        environ = redisauth.with_password(environ, settings.run_path)  # every mode, and `down` too
        if args.down:
            return down(settings, environ)
        if args.logs:
            return logs(settings)
        return up(settings, args.model, environ, args.replicas)
    except KNOWN_ERRORS as exc:
        ui.error(getattr(exc, "detail", None) or str(exc))
        return 1
    except httpx.HTTPError as exc:
        ui.error(f"lost contact with a service ({type(exc).__name__}: {exc}); `make logs` shows why")
        return 1
    except KeyboardInterrupt:
        ui.warn("interrupted: whatever started keeps running (`make down` stops it)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
