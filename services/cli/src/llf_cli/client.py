"""HTTP clients for the registry and the gateway: the only place the CLI speaks HTTP.

Every reply comes back as the service's own JSON (dicts and lists, untouched) so ``--json``
can print it unchanged. Failures become :class:`~llf_cli.errors.CLIError`: a service that
cannot be reached is exit 2 with the fix, a 4xx is the service's ``detail`` (or OpenAI's
``error.message``) with exit 1. The transport is injectable so unit tests can run every
command against ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, SSEError
from llf_common.wire import TERMINAL_JOB_STATES

from llf_cli.errors import CLIError, Unreachable

_DEFAULT: Any = object()


def new_request_id() -> str:
    return "cli-" + uuid.uuid4().hex[:12]


def _add_request_id(request: httpx.Request) -> None:
    request.headers.setdefault("X-Request-ID", new_request_id())


def error_detail(response: httpx.Response) -> str:
    """The human part of an error reply: ``detail``, OpenAI's ``error.message``, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        detail = body.get("detail")
        error = body.get("error")
        if isinstance(detail, str):
            return detail
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(detail, list):  # FastAPI's validation errors
            return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    return json.dumps(body)[:300]


class ServiceClient:
    """One service at ``base_url``; ``name`` is what error messages call it."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._connect_timeout = connect_timeout
        self.http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            event_hooks={"request": [_add_request_id]},
        )

    def timeout(self, seconds: float | None) -> httpx.Timeout:
        """A timeout of ``seconds`` per read that still connects quickly."""
        return httpx.Timeout(seconds, connect=self._connect_timeout)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn transport failures into the one-line, exit-2 message."""
        try:
            yield
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise self.unreachable() from exc
            raise Unreachable(f"the {self.name} at {self.base_url} did not answer in time") from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError) as exc:
            raise self.unreachable() from exc

    def unreachable(self) -> Unreachable:
        return Unreachable(f"cannot reach the {self.name} at {self.base_url} — is the stack running? try `make up`")

    def _check(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        response.read()
        detail = error_detail(response)
        if response.status_code == 507:  # the model fits nowhere: the gateway's one line says why
            raise CLIError(detail, status=507)
        if response.status_code >= 500:
            request_id = response.headers.get("X-Request-ID") or response.request.headers.get("X-Request-ID")
            message = f"the {self.name} failed ({response.status_code}): {detail} [request id {request_id}]"
            raise CLIError(message, status=response.status_code, detail=detail)
        raise CLIError(detail, status=response.status_code)

    def request(self, method: str, path: str, *, timeout: Any = _DEFAULT, **kwargs: Any) -> Any:
        """One call; returns the decoded JSON body (``None`` for an empty reply)."""
        if timeout is not _DEFAULT:
            kwargs["timeout"] = timeout
        with self._translated():
            response = self.http.request(method, path, **kwargs)
        self._check(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CLIError(f"the {self.name} at {self.base_url} sent a reply that is not JSON") from exc

    def events(
        self, method: str, path: str, *, on_comment: Callable[[str], None] | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """The ``data`` of each server-sent event, JSON-decoded; ``[DONE]`` ends the stream.

        ``on_comment`` receives the text of SSE comment lines (``: loading MODEL 12 s`` while the
        gateway loads a model on demand), which httpx-sse's ``EventSource`` drops silently.
        """
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store", **kwargs.pop("headers", {})}
        with self._translated(), self.http.stream(method, path, headers=headers, **kwargs) as response:
            self._check(response)
            for data in _sse_data(response, on_comment):
                if data == "[DONE]":
                    return
                if not data:
                    continue
                try:
                    yield json.loads(data)
                except ValueError as exc:
                    raise CLIError(f"the {self.name} sent an event that is not JSON: {data[:100]}") from exc

    def healthy(self) -> bool:
        """Is the process up at all (``/healthz``)? Never raises."""
        try:
            return self.http.get("/healthz", timeout=self.timeout(self._connect_timeout)).is_success
        except httpx.HTTPError:
            return False


def _sse_data(response: httpx.Response, on_comment: Callable[[str], None] | None) -> Iterator[str]:
    """Each event's ``data`` (lines joined), handing comment lines to ``on_comment``.

    Without ``on_comment`` this is httpx-sse's ``EventSource``; with it, the same grammar for the
    ``data`` field (the only one the services send) read line by line, because ``EventSource``
    never shows comments.
    """
    if on_comment is None:
        for event in EventSource(response).iter_sse():
            yield event.data
        return
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise SSEError(f"Expected response header Content-Type to contain 'text/event-stream', got {content_type!r}")
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith(":"):
            on_comment(line[1:].strip())
        elif not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.partition(":")[0] == "data":
            data.append(line.partition(":")[2].removeprefix(" "))
    if data:
        yield "\n".join(data)


def model_path(name: str) -> str:
    """The registry route of a model; a malformed name is one line here, not a confusing 404 there."""
    from llf_common.wire import check_repo_id

    try:
        check_repo_id(name)
    except ValueError as exc:
        raise CLIError(f"invalid model name {name!r}: {exc}") from None
    owner, _, rest = name.partition("/")
    return f"/v1/models/{quote(owner, safe='')}/{quote(rest, safe='')}"


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}"


class Registry(ServiceClient):
    """The model registry: pulls, jobs and the local model store."""

    def pull(self, body: dict[str, Any]) -> Any:
        return self.request("POST", "/v1/pulls", json=body)

    def models(self) -> Any:
        return self.request("GET", "/v1/models")

    def model(self, name: str) -> Any:
        return self.request("GET", model_path(name))

    def find_model(self, name: str) -> Any | None:
        """The model's info, or ``None`` when the registry does not have it."""
        try:
            return self.model(name)
        except CLIError as exc:
            if exc.status == 404:
                return None
            raise

    def remove(self, name: str, force: bool = False) -> None:
        self.request("DELETE", model_path(name), params={"force": "true"} if force else None)

    def verify(self, name: str) -> Any:
        return self.request("POST", model_path(name) + "/verify")

    def import_dir(self, body: dict[str, Any]) -> Any:
        return self.request("POST", "/v1/imports", json=body)

    def jobs(self) -> Any:
        return self.request("GET", "/v1/jobs")

    def job(self, job_id: str) -> Any:
        return self.request("GET", job_path(job_id))

    def cancel(self, job_id: str, *, purge: bool = False) -> Any:
        return self.request("DELETE", job_path(job_id), params={"purge": str(purge).lower()})

    def follow(self, job_id: str, *, poll_interval: float = 0.5, stream_timeout: float = 300.0) -> Iterator[Any]:
        """Every state of a job until it ends: SSE when offered, else (or after a drop) polling."""
        last: Any = None
        try:
            for info in self.events("GET", job_path(job_id) + "/events", timeout=self.timeout(stream_timeout)):
                if isinstance(info, dict) and "state" in info:
                    last = info
                    yield info
                    if info["state"] in TERMINAL_JOB_STATES:
                        return
        except (SSEError, Unreachable):
            pass  # no SSE here, or the stream dropped: polling below says how the job ended
        except CLIError:
            if last is not None:
                raise
            self.job(job_id)  # a 404 for an unknown job raises its detail; else SSE is unsupported
        while True:
            info = self.job(job_id)
            if info != last:
                yield info
                last = info
            if info.get("state") in TERMINAL_JOB_STATES:
                return
            time.sleep(poll_interval)


class Gateway(ServiceClient):
    """The inference gateway: OpenAI chat, hot swap and status."""

    def status(self) -> Any:
        return self.request("GET", "/v1/status")

    def serve(
        self,
        model: str,
        *,
        replicas: int | str = 1,
        wait: bool = True,
        timeout: float | None = None,
        engine: dict[str, str] | None = None,
        replace: str | None = None,
        gpus: list[int] | None = None,
    ) -> Any:
        """Ask the gateway to serve ``model`` beside the others, or in place of ``replace`` (a hot swap).

        ``engine`` adds ``runner``/``convert`` (a pooling model); ``gpus`` limits placement to
        those NVML indices. Fields left unset are not sent, so an older gateway sees the old body.
        """
        body: dict[str, Any] = {"model": model, "replicas": replicas, "wait": wait, **(engine or {})}
        body.update({key: value for key, value in (("replace", replace), ("gpus", gpus)) if value is not None})
        return self.request("POST", "/v1/serve", json=body, timeout=self.timeout(timeout))

    def stop(self, model: str, *, timeout: float | None = None) -> Any:
        """Drain and unload one model (``DELETE /v1/serve/{model}``); the reply is the ``GatewayStatus``."""
        model_path(model)  # a malformed name is one line here
        return self.request("DELETE", f"/v1/serve/{quote(model, safe='/')}", timeout=self.timeout(timeout))

    def chat(
        self,
        body: dict[str, Any],
        *,
        stream_timeout: float = 300.0,
        session: str | None = None,
        on_comment: Callable[[str], None] | None = None,
    ) -> Iterator[Any]:
        """Chat-completion chunks as they are generated (OpenAI SSE); ``session`` is sent as ``X-Session-ID``.

        ``on_comment`` sees the gateway's ``: loading MODEL 12 s`` lines while a model loads on demand.
        """
        extra = {"headers": {"X-Session-ID": session}} if session else {}
        return self.events(
            "POST",
            "/v1/chat/completions",
            json=body,
            timeout=self.timeout(stream_timeout),
            on_comment=on_comment,
            **extra,
        )
