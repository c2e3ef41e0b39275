"""RQ job functions: pull, verify, import. Plain arguments in, a JSON-able dict out.

The worker imports this module by name (``llf_models.jobs.pull``); each function builds what
it needs from the settings and the current RQ job (``scope.job_scope``), so a job can also be
run by hand (``pull("owner/name", "main", sha)``) in a shell or a test.
"""

from __future__ import annotations

import contextlib
from typing import Any

from huggingface_hub.utils import get_session

from llf_models.errors import CorruptFile, Missing, Superseded, VerifyFailed
from llf_models.hub import HubClient
from llf_models.importing import run_import
from llf_models.pulling import run_pull
from llf_models.scope import JobScope, job_scope
from llf_models.store import now
from llf_models.verify import FileProblem, compare_files, summarize


def pull(
    repo: str,
    revision: str,
    sha: str,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
) -> dict[str, Any]:
    """Download ``repo`` at commit ``sha`` into the store, verify it, write its manifest."""
    with job_scope() as scope:
        settings = scope.settings
        hub = HubClient(settings.hf_endpoint, settings.hf_token, timeout=settings.hub_timeout_s)
        return run_pull(scope, hub, get_session(), repo, revision, sha, allow_patterns, ignore_patterns)


def verify(repo: str) -> dict[str, Any]:
    """Re-hash every file of a stored model against its manifest."""
    with job_scope() as scope:
        return run_verify(scope, repo)


def import_dir(path: str, name: str, link: bool = True) -> dict[str, Any]:
    """Bring a local model directory into the store under ``name``."""
    with job_scope() as scope:
        return run_import(scope, path, name, link)


def run_verify(scope: JobScope, repo: str) -> dict[str, Any]:
    """Re-hash ``repo`` against the manifest it has *once the lock is held*.

    The verify may wait behind a pull of a newer commit or an ``rm``: the manifest read before
    waiting would then be written back over the newer one, or list a deleted model again.
    """
    store, rep = scope.store, scope.reporter
    asked = store.read_manifest(repo)
    if asked is None:
        raise Missing(f"model {repo} not found")
    with scope.lock(repo) as lock:
        manifest = store.read_manifest(repo)
        if manifest is None:
            raise Missing(f"model {repo} was deleted while this verify waited")
        if manifest.sha != asked.sha:
            now_at = manifest.sha[:12]
            raise Superseded(f"model {repo} changed while this verify waited (now at {now_at}); verify again")
        rep.phase("verify", bytes_total=manifest.total_bytes, files_total=len(manifest.files))
        problems = []
        for entry in manifest.files:
            rep.file_started(entry.path)
            path = store.snapshot_file(repo, manifest.sha, entry.path)
            problems += compare_files([(entry.path, path, entry.size, entry.sha256)], on_bytes=rep.advance)
            rep.file_done()
        if not problems:
            try:
                summarize({e.path: store.snapshot_file(repo, manifest.sha, e.path) for e in manifest.files})
            except CorruptFile as exc:
                problems.append(FileProblem(exc.path, exc.reason))
        if problems:
            described = [p.describe() for p in problems]
            lock.check()
            for problem in problems:  # drop bad blobs so the next pull fetches them again
                blob_name = manifest.blobs.get(problem.path)
                if blob_name and problem.problem != "missing":
                    with contextlib.suppress(FileNotFoundError):
                        store.blob_path(repo, blob_name).unlink()
            manifest.verified_at = None
            manifest.warnings = described
            store.write_manifest(manifest)
            scope.index.put(manifest)
            if scope.job is not None:
                scope.job.meta["result"] = {"ok": False, "problems": [vars(p) for p in problems]}
            raise VerifyFailed(
                f"{len(problems)} file(s) of {repo} failed verification: "
                + "; ".join(described)
                + (" (pull it again to repair)" if manifest.source == "hub" else "")
            )
        manifest.verified_at = now()
        manifest.warnings = [w for w in manifest.warnings if "mismatch" not in w and "missing" not in w]
        lock.check()
        store.write_manifest(manifest)
        scope.index.put(manifest)
        rep.phase("done")
    return {"ok": True, "files": len(manifest.files), "bytes": manifest.total_bytes}
