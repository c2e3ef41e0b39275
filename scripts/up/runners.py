"""The two ways to run the stack behind one small interface, so ``make up``'s steps are mode-free.

Both start in two phases: everything, with the gateway set to re-serve the model the last run
served; then, once the model to serve is known (pulled or imported through the registry), the
gateway is told to serve that one whenever it (re)starts — so a crashed gateway comes back
serving, and a re-run that changes nothing restarts nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from llf_common.settings import LLFSettings

from scripts.up import compose, localplan, state
from scripts.up.localconf import LocalPlan
from scripts.up.mode import Choice, Target
from scripts.up.ports import host_port


class Runner(Protocol):
    def start(self, serve_on_start: str | None) -> None: ...
    def set_serving(self, model: str) -> None: ...
    def where(self, program: str) -> Callable[[], str]: ...
    def gave_up(self, program: str) -> Callable[[], str | None]: ...
    def write_demo(self) -> str: ...


@dataclass
class LocalRunner:
    settings: LLFSettings
    environ: Mapping[str, str]
    plan: LocalPlan | None = field(default=None, init=False)

    def start(self, serve_on_start: str | None) -> None:
        self.plan = localplan.bring_up(self.settings, self.environ, serve_on_start)

    def set_serving(self, model: str) -> None:
        assert self.plan is not None
        self.plan = localplan.set_serving(self.plan, model)

    def where(self, program: str) -> Callable[[], str]:
        log = self.settings.run_path / "logs" / f"{program}.log"
        return lambda: localplan.log_hint(log)

    def gave_up(self, program: str) -> Callable[[], str | None]:
        return localplan.gave_up(self.settings.run_path, program)

    def write_demo(self) -> str:
        return localplan.write_demo(self.settings)


@dataclass
class ComposeRunner:
    settings: LLFSettings
    environ: Mapping[str, str]
    target: Target
    repo = localplan.REPO

    machine: dict[str, str] = field(default_factory=dict)  # from deploy/buildenv.py; the user's env wins

    def env(self, serve_on_start: str | None) -> dict[str, str]:
        """The user's environment plus the published ports the settings' URLs name."""
        env = {**self.machine, **self.environ}
        env["LLF_MODELS_PORT"] = str(host_port(self.settings.models_url, 8001)[1])
        env["LLF_INFERENCE_PORT"] = str(host_port(self.settings.inference_url, 8000)[1])
        env.pop("LLF_SERVE_ON_START", None)  # the old name: the one below replaces it
        env.pop("LLF_INFERENCE_SERVE_ON_START", None)
        if serve_on_start:
            env["LLF_INFERENCE_SERVE_ON_START"] = serve_on_start
        return env

    def start(self, serve_on_start: str | None) -> None:
        self.machine = compose.machine_env(self.repo)
        compose.up(self.repo, self.target, self.env(serve_on_start))
        state.update(self.settings.run_path, mode="compose", target=self.target)

    def set_serving(self, model: str) -> None:
        compose.serve_on_start(self.repo, self.target, self.env(model))

    def where(self, program: str) -> Callable[[], str]:
        return lambda: f"`make logs` (docker compose logs {program})"

    def gave_up(self, program: str) -> Callable[[], str | None]:
        return lambda: None

    def write_demo(self) -> str:
        return compose.write_demo(self.repo, self.target, self.env(None))


def runner_for(choice: Choice, settings: LLFSettings, environ: Mapping[str, str]) -> Runner:
    if choice.mode == "local":
        return LocalRunner(settings, environ)
    assert choice.target is not None
    return ComposeRunner(settings, environ, choice.target)
