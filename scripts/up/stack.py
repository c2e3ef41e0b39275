"""Talk to the running services: wait for them, make sure a model is present, serve it.

Everything goes through the services' public HTTP API (the same one the CLI uses), so this works
the same whether they run under Compose or supervisord. The demo-model fallback only happens
when the hub cannot be reached: a wrong repo name or a gated repo is an error to report, not a
reason to serve random weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from llf_common.wire import UNSUCCESSFUL_JOB_STATES

from scripts.up import ui

DEMO_MODEL = "llf/demo-tiny"
UNREACHABLE_HINTS = (
    "connect",
    "unreachable",
    "resolve",
    "name or service",
    "timed out",
    "timeout",
    "network",
    "offline",
    "cannot reach",
    "could not reach",
    "no route",
    "refused",
)


class UpError(Exception):
    """A step failed; the message says what and where to look."""


class HubUnreachable(UpError):
    """The registry could not reach the hub (so a demo model is the only way to chat)."""


def looks_unreachable(status: int | None, detail: str) -> bool:
    """A connection-level failure towards the hub, as opposed to 'no such repo' or 'gated'."""
    text = detail.lower()
    if status in (401, 403, 404, 409, 422):
        return False
    return status == 504 or any(hint in text for hint in UNREACHABLE_HINTS)


def detail_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail") or (body.get("error") or {}).get("message")
        if detail:
            return str(detail)
    return str(body)[:300]


def progress_line(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    phase = progress.get("phase", "waiting")
    parts = [f"{job.get('kind', 'job')} {job.get('repo', '')}: {job.get('state')} {phase}"]
    total = progress.get("bytes_total") or 0
    done = progress.get("bytes_done") or 0
    if total:
        parts.append(f"{ui.human_bytes(done)} / {ui.human_bytes(total)} ({100 * done / total:.0f}%)")
    if progress.get("rate_bps"):
        parts.append(f"{ui.human_bytes(progress['rate_bps'])}/s")
    if progress.get("files_total"):
        parts.append(f"files {progress.get('files_done', 0)}/{progress['files_total']}")
    if job.get("state") == "queued" and job.get("position") is not None:
        parts.append(f"queue position {job['position']}")
    return "  ".join(parts)


@dataclass
class Stack:
    """The two services, as seen from the host."""

    models_url: str
    inference_url: str
    api_key: str | None = None
    poll: float = 0.5

    def __post_init__(self) -> None:
        self.replicas: int | str | None = None  # what the last serve asked for (asked again after a restart)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(60.0, connect=3.0), trust_env=False)

    def close(self) -> None:
        self.http.close()

    # ---------------------------------------------------------------- readiness
    def wait_until(
        self,
        url: str,
        what: str,
        timeout: float,
        where: Callable[[], str],
        dead: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Poll ``url`` until 200; fail early when ``dead()`` says the process gave up."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                response = self.http.get(url, timeout=5.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {detail_of(response)}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            problem = dead()
            if problem:
                raise UpError(f"{what} is not running: {problem}; see {where()}")
            if time.monotonic() > deadline:
                raise UpError(f"{what} not ready after {timeout:.0f}s at {url} ({last}); see {where()}")
            time.sleep(self.poll)

    # ---------------------------------------------------------------- registry
    def model_info(self, repo: str) -> dict[str, Any] | None:
        response = self.http.get(f"{self.models_url}/v1/models/{repo}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise UpError(f"registry: GET /v1/models/{repo}: HTTP {response.status_code}: {detail_of(response)}")
        body: dict[str, Any] = response.json()
        return body

    def follow_job(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Poll a job to its end, printing a progress line on change (at most every 2 s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_line, last_print = "", 0.0
        while True:
            response = self.http.get(f"{self.models_url}/v1/jobs/{job_id}")
            if response.status_code != 200:
                raise UpError(f"registry: job {job_id}: HTTP {response.status_code}: {detail_of(response)}")
            job: dict[str, Any] = response.json()
            line = progress_line(job)
            now = time.monotonic()
            if line != last_line and (now - last_print >= 2.0 or job.get("state") != "started"):
                ui.info(line)
                last_line, last_print = line, now
            if job.get("state") == "finished":
                return job
            if job.get("state") in UNSUCCESSFUL_JOB_STATES:
                return job
            if deadline is not None and now > deadline:
                raise UpError(f"job {job_id} did not finish within {timeout:.0f}s (state {job.get('state')})")
            time.sleep(self.poll)

    def pull(self, repo: str) -> None:
        """Pull through the registry; HubUnreachable when the hub cannot be reached."""
        try:
            response = self.http.post(f"{self.models_url}/v1/pulls", json={"repo": repo}, timeout=180.0)
        except httpx.HTTPError as exc:
            raise UpError(f"registry: POST /v1/pulls failed: {exc}") from exc
        if response.status_code == 200:
            return
        if response.status_code != 202:
            detail = detail_of(response)
            if looks_unreachable(response.status_code, detail):
                raise HubUnreachable(detail)
            raise UpError(f"cannot pull {repo}: {detail}")
        body = response.json()
        job_id = body.get("job_id") or (body.get("job") or {}).get("id")
        if not job_id:
            return
        ui.info(f"pull job {job_id} (follow it with `llf jobs watch {job_id}`)")
        job = self.follow_job(job_id)
        if job.get("state") != "finished":
            error = job.get("error") or job.get("state")
            if looks_unreachable(None, str(error)):
                raise HubUnreachable(str(error))
            raise UpError(f"pull of {repo} failed: {error}")

    def import_dir(self, path: str, name: str, timeout: float = 600.0) -> None:
        response = self.http.post(f"{self.models_url}/v1/imports", json={"path": path, "name": name})
        if response.status_code not in (200, 201, 202):
            raise UpError(f"cannot import {path} as {name}: {detail_of(response)}")
        body = response.json()
        job_id = body.get("id") or body.get("job_id")
        if not job_id or body.get("state") == "finished":
            return
        job = self.follow_job(job_id, timeout=timeout)
        if job.get("state") != "finished":
            raise UpError(f"import of {path} as {name} failed: {job.get('error') or job.get('state')}")

    # ---------------------------------------------------------------- gateway
    def status(self) -> dict[str, Any]:
        response = self.http.get(f"{self.inference_url}/v1/status")
        if response.status_code != 200:
            raise UpError(f"gateway: GET /v1/status: HTTP {response.status_code}: {detail_of(response)}")
        body: dict[str, Any] = response.json()
        return body

    def serve(self, model: str, timeout: float, where: Callable[[], str], replicas: int | str | None = None) -> None:
        """Ask the gateway to serve ``model`` (unless it already does) and wait until it is ready.

        ``replicas`` (``make up REPLICAS=2|auto``, ``LLF_REPLICAS``) is passed on; a model already
        served with another explicit count is asked again (the gateway converges it), ``auto`` is not
        re-placed. A gateway that restarts meanwhile (supervisord or Compose bring it back idle) is asked again.
        """
        status = self.status()
        held = [r for r in status.get("replicas", []) if r.get("model") == model and r.get("state") == "ready"]
        if model in status.get("models", []) and (not isinstance(replicas, int) or len(held) == replicas):
            ui.info(f"{model} is already being served")
            return
        self.replicas = replicas
        if status.get("target") != model or status.get("state") in ("failed", "idle") or isinstance(replicas, int):
            self._ask_to_serve(model)
        deadline = time.monotonic() + timeout
        last_state = ""
        while True:
            try:
                status = self.status()
            except (httpx.HTTPError, UpError) as exc:
                status = {"state": f"unreachable ({type(exc).__name__})"}
            state = str(status.get("state"))
            if model in status.get("models", []):
                return
            if state != last_state:
                ui.info(f"gateway: {state}" + (f" ({status['message']})" if status.get("message") else ""))
                last_state = state
            if state == "failed":
                raise UpError(f"the engine failed to load {model}: {failure_of(status)}; see {where()}")
            if state == "idle" and status.get("target") != model:
                ui.info("the gateway restarted: asking it again")
                self._ask_to_serve(model)
            if time.monotonic() > deadline:
                raise UpError(f"{model} not ready after {timeout:.0f}s (gateway {state}); see {where()}")
            time.sleep(self.poll * 2)

    def _ask_to_serve(self, model: str) -> None:
        response = self.http.post(f"{self.inference_url}/v1/serve", json=serve_body(model, self.replicas))
        if response.status_code not in (200, 202):
            raise UpError(f"gateway refused to serve {model}: {detail_of(response)}")


def parse_replicas(text: str | None) -> int | str | None:
    """``REPLICAS=2`` / ``auto`` (``make up``, ``LLF_REPLICAS``); unset or empty: the gateway's default (1)."""
    if text is None or not text.strip():
        return None
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and 1 <= int(text) <= 16:
        return int(text)
    raise UpError(f"REPLICAS/LLF_REPLICAS must be a number 1-16 or auto, not {text!r}")


def serve_body(model: str, replicas: int | str | None) -> dict[str, Any]:
    """``POST /v1/serve``'s body: ``replicas`` only when asked for, so the gateway's default applies otherwise."""
    return {"model": model} if replicas is None else {"model": model, "replicas": replicas}


def failure_of(status: dict[str, Any]) -> str:
    """The most useful sentence from a failed gateway status."""
    for replica in status.get("replicas", []):
        if replica.get("last_error"):
            tail = "\n".join(replica.get("log_tail", [])[-10:])
            return str(replica["last_error"]) + (f"\n{tail}" if tail else "")
    return str(status.get("message") or "no reason given")
