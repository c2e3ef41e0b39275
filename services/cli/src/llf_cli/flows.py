"""Multi-step operations that commands and the chat REPL share.

Following a job with a progress bar, pulling a model, and making sure the gateway serves a
model (pulling it first on a fresh machine) are each used by several commands and by
``/model``; they live here once, above the HTTP clients and below the click commands.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click
from llf_common.wire import TERMINAL_JOB_STATES, UNSUCCESSFUL_JOB_STATES

from llf_cli import progress, render
from llf_cli.errors import EXIT_INTERRUPTED, EXIT_UNREACHABLE, CLIError, Detached

if TYPE_CHECKING:
    from llf_cli.main import State

HUB_TROUBLE = {502, 503, 504}


def wire_body(model: type[Any], **fields: Any) -> dict[str, Any]:
    """Validate a request with the shared wire model; a bad argument is one line, before any HTTP."""
    from pydantic import ValidationError

    try:
        return dict(model(**fields).model_dump(mode="json", exclude_none=True))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise CLIError(f"invalid {field}: {first['msg'].removeprefix('Value error, ')}") from exc


def follow_job(state: State, job: dict[str, Any], *, show: bool = True) -> dict[str, Any]:
    """Follow a job to its end (progress on stderr when ``show``); Ctrl-C detaches."""
    last = job
    if job.get("state") in TERMINAL_JOB_STATES:
        return job
    settings = state.settings
    try:
        with progress.job_progress() if show else _Silent() as bar:
            bar.update(job)
            for info in state.registry.follow(
                job["id"], poll_interval=settings.poll_interval, stream_timeout=settings.stream_timeout
            ):
                last = info
                bar.update(info)
    except KeyboardInterrupt:
        raise Detached(job["id"]) from None
    return last


class _Silent:
    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, job: dict[str, Any]) -> None:
        return None


def job_failure(job: dict[str, Any]) -> str | None:
    """Why a finished job did not succeed, or ``None`` when it did."""
    what = f"{job.get('kind', 'job')} of {job.get('repo', '?')}"
    state = job.get("state")
    if state == "failed":
        reason = job.get("error") or f"no reason given; see `llf jobs show {job.get('id')}`"
        return f"{what} failed: {reason}"
    if state in UNSUCCESSFUL_JOB_STATES:
        return f"{what} was {state}"
    return None


def check_job(job: dict[str, Any]) -> None:
    failure = job_failure(job)
    if failure:
        raise CLIError(failure)


def start_pull(
    state: State, repo: str, revision: str = "main", include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Queue a pull; returns the registry's PullResponse."""
    from llf_common.wire import PullRequest

    body = wire_body(
        PullRequest,
        repo=repo,
        revision=revision,
        allow_patterns=list(include) or None,
        ignore_patterns=list(exclude) or None,
    )
    try:
        reply: dict[str, Any] = state.registry.pull(body)
    except CLIError as exc:
        if exc.status in HUB_TROUBLE:
            raise CLIError(hub_hint(repo, exc.detail), exc.exit_code, status=exc.status) from exc
        raise
    return reply


def hub_hint(repo: str, reason: str) -> str:
    return (
        f"cannot download {repo} from the model hub ({reason}); set HF_ENDPOINT to a hub or mirror the registry can "
        f"reach, import a local copy with `llf models import DIR --name {repo}`, or try the demo model with `make up`"
    )


def pull(
    state: State,
    repo: str,
    *,
    revision: str = "main",
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    show: bool = True,
    hint: bool = False,
) -> dict[str, Any]:
    """Pull and follow to the end; returns the PullResponse with ``job`` the job's last state."""
    reply = start_pull(state, repo, revision, include, exclude)
    if reply.get("state") == "present" or not reply.get("job_id"):
        return reply
    job = reply.get("job") or state.registry.job(reply["job_id"])
    if show:
        render.note(f"pulling {repo}@{reply.get('revision', revision)} (job {reply['job_id']})")
    reply["job"] = follow_job(state, job, show=show)
    if hint and reply["job"].get("state") == "failed":
        raise CLIError(hub_hint(repo, reply["job"].get("error") or "the pull failed"))
    return reply


def served(status: dict[str, Any], model: str) -> bool:
    return model in (status.get("models") or [])


def serve(
    state: State,
    model: str,
    *,
    replicas: int | str = 1,
    engine: dict[str, str] | None = None,
    replace: str | None = None,
    gpus: list[int] | None = None,
) -> dict[str, Any]:
    """Have the gateway serve ``model`` (beside the others, or in place of ``replace``); wait: ready or failed."""
    settings = state.settings
    deadline = time.monotonic() + settings.serve_timeout
    try:
        with progress.waiting(f"loading {model} (the first load takes a while) …"):
            status: dict[str, Any] = state.gateway.serve(
                model,
                replicas=replicas,
                wait=True,
                timeout=settings.serve_timeout,
                engine=engine,
                replace=replace,
                gpus=gpus,
            )
            while not served(status, model) and status.get("state") != "failed":
                if time.monotonic() > deadline:
                    raise CLIError(
                        f"{model} was not ready after {settings.serve_timeout:.0f} s; see `llf status`",
                        EXIT_UNREACHABLE,
                    )
                time.sleep(settings.poll_interval)
                status = state.gateway.status()
    except KeyboardInterrupt:
        raise CLIError(
            f"stopped waiting; the gateway keeps loading {model} — `llf status` shows how it goes", EXIT_INTERRUPTED
        ) from None
    if not served(status, model):
        raise CLIError(f"the gateway could not serve {model}: {serve_failure(status)}")
    return status


def serve_failure(status: dict[str, Any]) -> str:
    errors = [r["last_error"] for r in status.get("replicas") or [] if r.get("last_error")]
    return status.get("message") or (errors[-1] if errors else f"state {status.get('state')}")


def ensure_served(
    state: State, model: str, *, status: dict[str, Any] | None = None, on_demand: bool = False
) -> dict[str, Any]:
    """First run in one call: pull ``model`` if the registry lacks it, then have it served.

    With ``on_demand`` and a gateway that loads models on demand (its status has
    ``model_states``), a pulled model is not served here: the first request loads it, and the
    chat shows the gateway's loading lines meanwhile.
    """
    if status is None:
        status = state.gateway.status()
    if served(status, model):
        return status
    if state.registry.find_model(model) is None:
        render.note(f"{model} is not downloaded yet; pulling it first")
        reply = pull(state, model, hint=True)
        if reply.get("job"):
            check_job(reply["job"])
    if on_demand and "model_states" in status:
        return status
    return serve(state, model)


def done_line(state: State, name: str, verb: str) -> None:
    """``✓ NAME pulled (sha, size, verified)``: the registry's own view of the result."""
    info = state.registry.find_model(name) or {}
    facts = [str(info.get("sha") or "")[:7], render.size(info.get("size_bytes")) if info else ""]
    if info:
        facts.append("verified" if info.get("verified") else "NOT verified")
    click.echo(f"✓ {name} {verb} ({', '.join(f for f in facts if f)})")


def finish_job(state: State, job: dict[str, Any], detach: bool, as_json: bool, success: str) -> None:
    """The tail every job command shares: detach, or follow, then JSON or one line, exit code."""
    if not detach:
        job = follow_job(state, job, show=not as_json)
    if as_json:
        render.print_json(job)
    elif detach:
        click.echo(job["id"])
    if detach:
        return
    check_job(job)
    result = job.get("result") or {}
    if result.get("ok") is False or result.get("verified") is False:
        raise CLIError(f"{job.get('repo')} did not verify: {result.get('error') or result.get('problems') or result}")
    if not as_json:
        click.echo(f"✓ {success}")
