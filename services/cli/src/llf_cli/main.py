"""``llf``: one click group, one small function per command.

Commands only parse arguments, call the clients (``client.py``) or the shared flows
(``flows.py``) and hand the result to ``render.py``. Everything beyond click is imported
inside the commands so ``llf --help`` starts in a few dozen milliseconds.
"""

from __future__ import annotations

import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from llf_cli import __version__
from llf_cli.errors import CLIError, Unreachable

if TYPE_CHECKING:
    from typing import TypeVar

    import httpx

    from llf_cli.client import Gateway, Registry, ServiceClient
    from llf_cli.settings import CLISettings

    Client = TypeVar("Client", bound=ServiceClient)


class State:
    """What every command shares: settings and the two clients, built on first use.

    Tests pass their own (``CliRunner().invoke(cli, args, obj=State(transport=...))``).
    """

    def __init__(self, transport: httpx.BaseTransport | None = None, **overrides: Any) -> None:
        self.transport = transport
        self.overrides = overrides

    @cached_property
    def settings(self) -> CLISettings:
        from llf_cli.settings import get_settings

        return get_settings(**self.overrides)

    def _client(self, kind: type[Client], name: str, url: str) -> Client:
        key = self.settings.api_key
        return kind(
            name,
            url,
            api_key=key.get_secret_value() if key else None,
            timeout=self.settings.request_timeout,
            connect_timeout=self.settings.connect_timeout,
            transport=self.transport,
        )

    @cached_property
    def registry(self) -> Registry:
        from llf_cli.client import Registry

        return self._client(Registry, "registry", self.settings.models_url)

    @cached_property
    def gateway(self) -> Gateway:
        from llf_cli.client import Gateway

        return self._client(Gateway, "gateway", self.settings.inference_url)


pass_state = click.make_pass_decorator(State, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the service's JSON unchanged.")


def debug() -> bool:
    return os.environ.get("LLF_DEBUG", "") not in {"", "0", "false", "no"}


class LLFGroup(click.Group):
    """Turns anything unexpected into one line too; ``LLF_DEBUG=1`` shows tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CLIError:
            if debug():
                import traceback

                traceback.print_exc()
            raise
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug():
                raise
            raise CLIError(f"unexpected {type(exc).__name__}: {exc} (LLF_DEBUG=1 shows the traceback)") from exc


@click.group(cls=LLFGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="llf")
def cli() -> None:
    """llf — the Local LLM Framework: pull models, serve them, chat with them.

    Talks to the registry (LLF_MODELS_URL) and the gateway (LLF_INFERENCE_URL);
    start both with `make up`. Every listing takes --json.
    """


# ---------------------------------------------------------------- chat
@cli.command()
@click.argument("prompt", nargs=-1)
@click.option("-m", "--model", help="Model to chat with. Default: the one served, else LLF_DEFAULT_MODEL.")
@click.option("-s", "--system", help="System prompt.")
@click.option("-t", "--temperature", type=click.FloatRange(0, 2), help="Sampling temperature.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Cap on the tokens of one answer.")
@click.option("--seed", type=int, help="Seed for reproducible sampling.")
@click.option("-i", "--interactive", is_flag=True, help="Run the REPL even when stdin is not a terminal.")
@click.option("--stats", is_flag=True, help="One-shot: print tokens, tokens/s and time to first token to stderr.")
@pass_state
def chat(state: State, /, prompt: tuple[str, ...], **options: Any) -> None:
    """Chat with a model: a REPL in a terminal, or answer PROMPT and exit.

    Piped stdin is appended to PROMPT: `cat notes.md | llf chat summarise`.
    On first use the model is pulled and served automatically.
    """
    from llf_cli.chat import run

    run(state, " ".join(prompt), **options)


# ---------------------------------------------------------------- pull
@cli.command()
@click.argument("repo")
@click.option("-r", "--revision", default="main", show_default=True, help="Branch, tag or commit.")
@click.option("--include", multiple=True, metavar="PATTERN", help="Only files matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Skip files matching (repeatable).")
@click.option("-d", "--detach", is_flag=True, help="Queue the pull, print the job id and return.")
@json_option
@pass_state
def pull(
    state: State,
    repo: str,
    revision: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    detach: bool,
    as_json: bool,
) -> None:
    """Download REPO (owner/name) from the hub into the registry, with live progress.

    Ctrl-C detaches: the download goes on; `llf jobs watch ID` reattaches.
    """
    from llf_cli import flows, render

    if detach:
        reply = flows.start_pull(state, repo, revision, include, exclude)
        if as_json:
            render.print_json(reply)
        elif reply.get("job_id"):
            click.echo(reply["job_id"])
        else:
            render.note(f"{repo} is already present")
        return
    reply = flows.pull(state, repo, revision=revision, include=include, exclude=exclude, show=not as_json)
    if as_json:
        render.print_json(reply)
    if reply.get("job"):
        flows.check_job(reply["job"])
    if not as_json:
        flows.done_line(state, repo, "already present" if reply.get("state") == "present" else "pulled")


# ---------------------------------------------------------------- models
@cli.group()
def models() -> None:
    """The models in the registry."""


@models.command("ls")
@json_option
@pass_state
def models_ls(state: State, as_json: bool) -> None:
    """List downloaded and imported models."""
    from llf_cli import render

    data = state.registry.models()
    render.show(data, as_json, render.models_table)


@models.command("info")
@click.argument("repo")
@json_option
@pass_state
def models_info(state: State, repo: str, as_json: bool) -> None:
    """Show one model: files, size, architecture, context length."""
    from llf_cli import render

    data = state.registry.model(repo)
    render.show(data, as_json, render.model_detail)


@models.command("rm")
@click.argument("repo")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Cancel the model's queued/running jobs first; go ahead if the gateway cannot answer."
)
@pass_state
def models_rm(state: State, repo: str, yes: bool, force: bool) -> None:
    """Delete a model from the registry (refused while it is served or a job works on it)."""
    from llf_cli import render

    if not yes:
        info = state.registry.model(repo)
        click.confirm(f"remove {repo} ({render.size(info.get('size_bytes'))})?", abort=True, err=True)
    state.registry.remove(repo, force=force)
    click.echo(f"removed {repo}")


@models.command("verify")
@click.argument("repo")
@click.option("-d", "--detach", is_flag=True, help="Queue the check, print the job id and return.")
@json_option
@pass_state
def models_verify(state: State, repo: str, detach: bool, as_json: bool) -> None:
    """Re-hash a model's files against the hub's checksums."""
    from llf_cli import flows

    job = state.registry.verify(repo)
    flows.finish_job(state, job, detach, as_json, f"{repo} verified")


@models.command("import")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("-n", "--name", help="Repo id to list it under. Default: local/<dirname>.")
@click.option("--copy", is_flag=True, help="Copy the files instead of hard-linking them.")
@click.option("-d", "--detach", is_flag=True, help="Queue the import, print the job id and return.")
@json_option
@pass_state
def models_import(state: State, directory: str, name: str | None, copy: bool, detach: bool, as_json: bool) -> None:
    """Add a model from a local DIRECTORY (config.json + weights), e.g. when offline."""
    from llf_common.wire import ImportRequest

    from llf_cli import flows

    body = flows.wire_body(ImportRequest, path=os.path.abspath(directory), name=name, link=not copy)
    job = state.registry.import_dir(body)
    flows.finish_job(state, job, detach, as_json, f"imported {job.get('repo') or name or directory}")


# ---------------------------------------------------------------- jobs
@cli.group()
def jobs() -> None:
    """Pull, verify and import jobs of the registry."""


@jobs.command("ls")
@json_option
@pass_state
def jobs_ls(state: State, as_json: bool) -> None:
    """List recent jobs, newest first."""
    from llf_cli import render

    data = state.registry.jobs()
    render.show(data, as_json, render.jobs_table)


@jobs.command("show")
@click.argument("job_id")
@json_option
@pass_state
def jobs_show(state: State, job_id: str, as_json: bool) -> None:
    """Show one job: state, progress, error."""
    from llf_cli import render

    data = state.registry.job(job_id)
    render.show(data, as_json, render.job_detail)


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--purge", is_flag=True, help="Also delete the partial download.")
@json_option
@pass_state
def jobs_cancel(state: State, job_id: str, purge: bool, as_json: bool) -> None:
    """Cancel a queued or running job."""
    from llf_cli import render

    data = state.registry.cancel(job_id, purge=purge)
    if as_json:
        render.print_json(data)
    else:
        click.echo(f"{job_id}: {data.get('state')}")


@jobs.command("watch")
@click.argument("job_id")
@json_option
@pass_state
def jobs_watch(state: State, job_id: str, as_json: bool) -> None:
    """Follow a job with the progress bar until it ends (Ctrl-C detaches again)."""
    from llf_cli import flows

    job = state.registry.job(job_id)
    flows.finish_job(state, job, False, as_json, f"{job.get('kind', 'job')} of {job.get('repo', job_id)} finished")


# ---------------------------------------------------------------- gateway
class Replicas(click.ParamType):
    """``--replicas``: 1-16, or ``auto`` (one per GPU with room; on CPU, per free core)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or str(value).isdigit():
            if 1 <= int(value) <= 16:
                return int(value)
        elif str(value).lower() == "auto":
            return "auto"
        self.fail(f"{value!r} is not a number 1-16 or auto", param, ctx)


class GpuList(click.ParamType):
    """``--gpus 0,1``: NVML indices, as ``nvidia-smi`` numbers them."""

    name = "0,1,…"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        parts = [part.strip() for part in str(value).split(",")]
        if not parts or not all(part.isdigit() for part in parts):
            self.fail(f"{value!r} is not a list of GPU indices like 0,1", param, ctx)
        return sorted({int(part) for part in parts})


@cli.command()
@click.argument("model")
@click.option(
    "--replicas", type=Replicas(), default=1, show_default=True, help="Engine processes (1-16), or auto: one per GPU."
)
@click.option("--gpus", type=GpuList(), help="Place replicas only on these GPUs (indices as nvidia-smi shows).")
@click.option("--replace", metavar="OLD", help="Hot-swap OLD for MODEL (no failed request); default: add MODEL.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Return only when the model is ready.")
@click.option(
    "--runner", type=click.Choice(["generate", "pooling"]), default=None, help="pooling: embeddings, score, rerank."
)
@click.option(
    "--convert", type=click.Choice(["embed", "classify"]), default=None, help="Adapt a chat model to a pooling task."
)
@json_option
@pass_state
def serve(
    state: State,
    model: str,
    replicas: int | str,
    gpus: list[int] | None,
    replace: str | None,
    wait: bool,
    runner: str | None,
    convert: str | None,
    as_json: bool,
) -> None:
    """Load MODEL beside the models already served (idle ones make room), or in place of --replace OLD.

    A model that fits on no device is refused at once with one line saying what it needs and what is free.
    """
    from llf_cli import flows, render

    if state.registry.find_model(model) is None:
        raise CLIError(f"{model} is not downloaded; run `llf pull {model}` first (or `llf chat -m {model}`)")
    try:
        engine = {key: value for key, value in (("runner", runner), ("convert", convert)) if value}
        if wait:
            status = flows.serve(state, model, replicas=replicas, engine=engine, replace=replace, gpus=gpus)
        else:
            status = state.gateway.serve(
                model, replicas=replicas, wait=False, engine=engine, replace=replace, gpus=gpus
            )
    except CLIError as exc:
        raise cluster_decides(state, exc) from None
    if as_json:
        render.print_json(status)
    elif wait:
        click.echo(f"✓ serving {model}" + (f" in place of {replace}" if replace else ""))
    else:
        click.echo(f"the gateway is loading {model}; `llf status` shows when it is ready")


@cli.command()
@click.argument("model")
@json_option
@pass_state
def stop(state: State, model: str, as_json: bool) -> None:
    """Unload MODEL: its requests finish (drain), then its engines stop. Asking for it later loads it again."""
    from llf_cli import render

    status = state.gateway.stop(model, timeout=state.settings.serve_timeout)  # 404: the gateway names what is loaded
    if as_json:
        render.print_json(status)
    else:
        click.echo(f"✓ stopped {model}")


@cli.command()
@json_option
@pass_state
def status(state: State, as_json: bool) -> None:
    """Are the services up, which model is served, how fast (like `ollama ps`)."""
    from llf_cli import render

    registry_up = state.registry.healthy()
    try:
        data = state.gateway.status()
    except Unreachable:
        if not as_json:
            render.status_view(state.settings.models_url, registry_up, state.settings.inference_url, None)
        raise
    except CLIError as exc:
        raise cluster_decides(state, exc) from None
    if as_json:
        render.print_json(data)
    else:
        render.status_view(state.settings.models_url, registry_up, state.settings.inference_url, data)
    if not registry_up:
        raise state.registry.unreachable()


def cluster_decides(state: State, exc: CLIError) -> CLIError:
    """A 404 from the inference URL: not the llf gateway but a plain OpenAI server (vllm-router)."""
    if exc.status != 404:
        return exc
    return CLIError(
        f"{state.settings.inference_url} has no /v1/status or /v1/serve: it is not the llf gateway but an"
        " OpenAI server (vllm-router on Kubernetes?). There the cluster decides which models run and on"
        " how many engines (kubectl, docs/kubernetes.md); `llf chat`, `llf pull` and `llf models` work.",
        status=404,
    )


@cli.group()
def config() -> None:
    """The effective configuration."""


@config.command("show")
@json_option
@pass_state
def config_show(state: State, as_json: bool) -> None:
    """Print the settings in effect (environment > config file > defaults); secrets masked."""
    from llf_common.settings import config_path

    from llf_cli import render

    values = state.settings.model_dump(mode="json")
    if as_json:
        render.print_json(values)
    else:
        path = config_path()
        render.config_view(values, str(path), path.exists())


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point (``llf``)."""
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="llf")
