"""The HTTP face of the hub stand-in: the routes and headers the real ``huggingface_hub`` client uses.

Read from huggingface_hub 2.4 (``hf_api.py``, ``file_download.py``, ``utils/_http.py``):
``model_info``/``repo_info`` -> ``/api/models/{repo}[/revision/{rev}]`` (``?blobs=true`` adds
sizes and LFS data to ``siblings``); ``list_repo_tree`` -> ``/api/models/{repo}/tree/{rev}[/{path}]``;
``hf_hub_download`` -> HEAD then GET ``/{repo}/resolve/{rev}/{file}``, which must carry
``X-Repo-Commit`` and ``ETag`` (sha256 for LFS, git blob id otherwise), ``X-Linked-Etag`` /
``X-Linked-Size`` for LFS files and an honest ``Content-Length``. Errors are told apart by the
``X-Error-Code`` header: ``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``.
Revisions arrive URL-quoted (``refs%2Fpr%2F1``), so routes split the *raw* path themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from tests.support.hub.store import Commit, FileMeta, Repo

if TYPE_CHECKING:
    from tests.support.hub import HubStandIn
    from tests.support.hub.faults import Hold

CHUNK = 1024 * 1024
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit

    def response(self, head: bool = False) -> Response:
        headers = {"X-Error-Message": self.message.encode("ascii", "replace").decode()}
        if self.code:
            headers["X-Error-Code"] = self.code
        if self.commit:
            headers["X-Repo-Commit"] = self.commit
        if head:
            return Response(status_code=self.status, headers=headers)
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def create_app(hub: HubStandIn) -> FastAPI:
    app = FastAPI(title="hub stand-in", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HubError)
    async def on_hub_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HubError)
        return exc.response(head=request.method == "HEAD")

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "hub": "llf stand-in"}

    @app.get("/api/whoami-v2")
    async def whoami(request: Request) -> Response:
        hub.counters.request("whoami")
        token = _token(request)
        if token is None or token not in hub.faults.tokens:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return JSONResponse({"type": "user", "name": "llf-tester", "auth": {"type": "access_token"}})

    @app.get("/api/models/{owner}/{name}")
    async def model_info(owner: str, name: str, request: Request) -> Response:
        hub.counters.request("model_info")
        repo = _repo(hub, f"{owner}/{name}", request)
        return JSONResponse(_model_info(hub, repo, _commit(repo, "main"), _flag(request, "blobs")))

    @app.get("/api/models/{owner}/{name}/revision/{rest:path}")
    async def model_info_at(owner: str, name: str, request: Request) -> Response:
        hub.counters.request("model_info")
        repo = _repo(hub, f"{owner}/{name}", request)
        commit, _ = _split_revision(repo, _raw_segments(request)[5:])
        return JSONResponse(_model_info(hub, repo, commit, _flag(request, "blobs")))

    @app.get("/api/models/{owner}/{name}/refs")
    async def refs(owner: str, name: str, request: Request) -> Response:
        hub.counters.request("refs")
        repo = _repo(hub, f"{owner}/{name}", request)

        def refs_of(kind: str, table: dict[str, str]) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(table.items())]

        return JSONResponse(
            {"branches": refs_of("heads", repo.branches), "tags": refs_of("tags", repo.tags), "converts": []}
        )

    @app.get("/api/models/{owner}/{name}/tree/{rest:path}")
    async def tree(owner: str, name: str, request: Request) -> Response:
        hub.counters.request("tree")
        repo = _repo(hub, f"{owner}/{name}", request)
        commit, rest = _split_revision(repo, _raw_segments(request)[5:])
        prefix = "/".join(rest).strip("/")
        entries = _tree(commit, prefix, recursive=_flag(request, "recursive"), expand=_flag(request, "expand"))
        return JSONResponse(entries)

    @app.post("/api/models/{owner}/{name}/paths-info/{rest:path}")
    async def paths_info(owner: str, name: str, request: Request) -> Response:
        hub.counters.request("paths_info")
        repo = _repo(hub, f"{owner}/{name}", request)
        commit, _ = _split_revision(repo, _raw_segments(request)[5:])
        form = parse_qs((await request.body()).decode(), keep_blank_values=True)
        wanted = form.get("paths", [])
        expand = form.get("expand", ["false"])[0].lower() == "true"
        entries = [e for e in _tree(commit, "", recursive=True, expand=expand) if e["path"] in wanted]
        return JSONResponse(entries)

    @app.api_route("/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
    async def resolve(owner: str, name: str, request: Request) -> Response:
        head = request.method == "HEAD"
        hub.counters.request("resolve_head" if head else "resolve_get")
        repo_id = f"{owner}/{name}"
        repo = _repo(hub, repo_id, request)
        commit, rest = _split_revision(repo, _raw_segments(request)[3:])
        path = "/".join(rest)
        _check_gate(hub, repo, request)
        meta = commit.files.get(path)
        if meta is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on revision {commit.sha}", commit.sha)
        key = (repo_id, path)
        hub.counters.file_request(request.method, key, request.headers.get("range"))
        status = hub.faults.take_failure(key)
        if status is not None:
            raise HubError(status, None, f"injected failure {status}", commit.sha)
        return _file_response(hub, key, commit, meta, request, head)

    # Control routes for a stand-in in another process (``python -m tests.support.hub``): the
    # same holds an in-process test sets with ``hub.hold()`` / ``hub.release()``.
    @app.get("/_stand_in/holds")
    async def list_holds() -> list[dict[str, Any]]:
        with hub.faults.lock:
            return [
                {"repo": repo, "path": path, "after_bytes": hold.after_bytes, "paused": hold.paused}
                for (repo, path), hold in hub.faults.holds.items()
            ]

    @app.post("/_stand_in/holds", status_code=204)
    async def add_hold(request: Request) -> Response:
        body = await request.json()
        hub.hold(str(body["repo"]), str(body["path"]), int(body.get("after_bytes", 0)))
        return Response(status_code=204)

    @app.delete("/_stand_in/holds", status_code=204)
    async def release_holds(repo: str | None = None, path: str | None = None) -> Response:
        hub.release(repo, path)
        return Response(status_code=204)

    @app.get("/_stand_in/counters")
    async def counters() -> dict[str, int]:
        """Body bytes and file GETs served so far (a test proves a start downloaded nothing)."""
        return {"bytes_served": hub.bytes_served(), "file_gets": hub.requests("resolve_get")}

    return app


# ---------------------------------------------------------------- helpers
def _raw_segments(request: Request) -> list[str]:
    """Path segments before percent-decoding, so that '%2F' inside a revision stays in one segment."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return [unquote(part) for part in raw.decode("latin-1").split("?", 1)[0].strip("/").split("/")]


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("1", "true")


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() or None if auth.lower().startswith("bearer ") else None


def _repo(hub: HubStandIn, repo_id: str, request: Request) -> Repo:
    repo = hub.store.find(repo_id)
    if repo is None:
        # Like the Hub: anonymous callers get 401 (a private repo must not be told apart), others 404.
        status = 401 if _token(request) is None else 404
        raise HubError(status, "RepoNotFound", f"Repository not found: {repo_id}")
    return repo


def _commit(repo: Repo, revision: str) -> Commit:
    commit = repo.resolve(revision)
    if commit is None:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    return commit


def _split_revision(repo: Repo, segments: list[str]) -> tuple[Commit, list[str]]:
    """The revision is the first segment (quoted), or - if a client did not quote its '/' - a longer prefix."""
    if not segments or not segments[0]:
        raise HubError(404, "RevisionNotFound", "Invalid rev id: (empty)")
    for cut in range(1, len(segments) + 1):
        commit = repo.resolve("/".join(segments[:cut]))
        if commit is not None:
            return commit, segments[cut:]
    raise HubError(404, "RevisionNotFound", f"Invalid rev id: {segments[0]}")


def _check_gate(hub: HubStandIn, repo: Repo, request: Request) -> None:
    if not repo.gated:
        return
    token = _token(request)
    if token is None:
        raise HubError(401, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must be authenticated.")
    if token not in hub.faults.tokens:
        raise HubError(403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not in the list.")


def _model_info(hub: HubStandIn, repo: Repo, commit: Commit, blobs: bool) -> dict[str, Any]:
    siblings = []
    for meta in sorted(commit.files.values(), key=lambda m: m.path):
        sibling: dict[str, Any] = {"rfilename": meta.path}
        if blobs:
            sibling.update(size=meta.size, blobId=meta.oid)
            if meta.lfs:
                sibling["lfs"] = {"sha256": meta.sha256, "size": meta.size, "pointerSize": meta.pointer_size}
        siblings.append(sibling)
    owner = repo.repo_id.split("/")[0]
    info: dict[str, Any] = {
        "_id": commit.sha[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": owner,
        "sha": commit.sha,
        "lastModified": commit.date,
        "createdAt": repo.created_at,
        "private": False,
        "gated": "manual" if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": ["safetensors", "llama", "text-generation"] if "config.json" in commit.files else [],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "siblings": siblings,
        "usedStorage": sum(m.size for m in commit.files.values()),
    }
    config = _small_json(hub, commit.files.get("config.json"))
    if config is not None:
        info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
    safetensors = _safetensors_summary(hub, commit)
    if safetensors is not None:
        info["safetensors"] = safetensors
    return info


def _small_json(hub: HubStandIn, meta: FileMeta | None) -> dict[str, Any] | None:
    if meta is None or meta.size > 1 << 20:
        return None
    try:
        data = json.loads(hub.store.blob_path(meta.sha256).read_bytes())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _safetensors_summary(hub: HubStandIn, commit: Commit) -> dict[str, Any] | None:
    """``{"parameters": {dtype: count}, "total": n}`` read from the safetensors headers, like the Hub."""
    counts: dict[str, int] = {}
    for meta in commit.files.values():
        if not meta.path.endswith(".safetensors"):
            continue
        try:
            with hub.store.blob_path(meta.sha256).open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(length)) if 0 < length < 100 << 20 else {}
        except (OSError, ValueError):
            continue
        for name, tensor in header.items():
            if name != "__metadata__" and isinstance(tensor, dict):
                n = 1
                for dim in tensor.get("shape", []):
                    n *= int(dim)
                counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + n
    return {"parameters": counts, "total": sum(counts.values())} if counts else None


def _tree(commit: Commit, prefix: str, *, recursive: bool, expand: bool) -> list[dict[str, Any]]:
    files = sorted(commit.files.values(), key=lambda m: m.path)
    dirs = sorted({"/".join(m.path.split("/")[:i]) for m in files for i in range(1, m.path.count("/") + 1)})
    if prefix and prefix not in dirs:
        raise HubError(404, "EntryNotFound", f"{prefix} does not exist on revision {commit.sha}", commit.sha)
    base = f"{prefix}/" if prefix else ""

    def wanted(path: str) -> bool:
        return path.startswith(base) and (recursive or "/" not in path[len(base) :])

    last_commit = {"id": commit.sha, "title": commit.title, "date": commit.date}
    entries: list[dict[str, Any]] = []
    for directory in filter(wanted, dirs):
        entry: dict[str, Any] = {"type": "directory", "oid": _dir_oid(commit, directory), "size": 0, "path": directory}
        if expand:
            entry["lastCommit"] = last_commit
        entries.append(entry)
    for meta in files:
        if not wanted(meta.path):
            continue
        entry = {"type": "file", "oid": meta.oid, "size": meta.size, "path": meta.path}
        if meta.lfs:
            entry["lfs"] = {"oid": meta.sha256, "size": meta.size, "pointerSize": meta.pointer_size}
        if expand:
            entry["lastCommit"] = last_commit
        entries.append(entry)
    return entries


def _dir_oid(commit: Commit, directory: str) -> str:
    listing = "".join(f"{m.path}:{m.oid}\n" for m in commit.files.values() if m.path.startswith(directory + "/"))
    return hashlib.sha1(listing.encode(), usedforsecurity=False).hexdigest()


def _file_response(
    hub: HubStandIn, key: tuple[str, str], commit: Commit, meta: FileMeta, request: Request, head: bool
) -> Response:
    headers = {
        "X-Repo-Commit": commit.sha,
        "ETag": f'"{meta.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f'inline; filename="{meta.path.rsplit("/", 1)[-1]}"',
    }
    if meta.lfs:
        headers["X-Linked-Etag"] = f'"{meta.sha256}"'
        headers["X-Linked-Size"] = str(meta.size)
    start, end, status = 0, meta.size - 1, 200
    range_header = request.headers.get("range")
    if range_header and not head and not hub.faults.ignores_range(key):
        parsed = _parse_range(range_header, meta.size)
        if parsed is None:
            headers["Content-Range"] = f"bytes */{meta.size}"
            return Response(status_code=416, headers=headers)
        start, end = parsed
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{meta.size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    if head:
        return Response(status_code=200, headers=headers)
    body = _stream(hub, key, hub.store.blob_path(meta.sha256), start, length)
    return StreamingResponse(body, status_code=status, headers=headers)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range, clamped; None if unsatisfiable or malformed."""
    match = RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return None
    return start, end


async def _stream(hub: HubStandIn, key: tuple[str, str], path: Any, start: int, length: int) -> AsyncIterator[bytes]:
    rate = hub.faults.rate_for(key)
    corrupt = sorted(hub.faults.corruptions(key))
    cut = hub.faults.take_interrupt(key)
    hold = hub.faults.hold_for(key)
    chunk_size = CHUNK if rate is None else max(1024, min(CHUNK, int(rate / 20)))
    position, sent = start, 0
    with open(path, "rb") as handle:
        handle.seek(start)
        while sent < length:
            want = min(chunk_size, length - sent)
            if hold is not None:
                if sent >= hold.after_bytes:
                    await _wait_at(hub, hold)
                    hold = None
                else:
                    want = min(want, hold.after_bytes - sent)
            if cut is not None:
                want = min(want, cut - sent)
                if want <= 0:
                    raise ConnectionAbortedError(f"injected interruption of {key[0]}/{key[1]} after {sent} bytes")
            data = handle.read(want)
            if not data:
                break
            for offset in corrupt:
                if position <= offset < position + len(data):
                    i = offset - position
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            yield data
            hub.counters.sent(key, len(data))
            position += len(data)
            sent += len(data)
            if rate is not None:
                await asyncio.sleep(len(data) / rate)


async def _wait_at(hub: HubStandIn, hold: Hold) -> None:
    """Park one stream at its hold until the test releases it (the event is set from another thread)."""
    with hub.faults.lock:
        hold.paused += 1
    try:
        while not hold.released.is_set():
            await asyncio.sleep(0.02)
    finally:
        with hub.faults.lock:
            hold.paused -= 1
