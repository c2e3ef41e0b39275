"""A Hugging Face Hub stand-in that the real ``huggingface_hub`` client talks to.

No PyPI package serves the Hub's download API with revisions, LFS metadata, Range and gating
(hub mocks patch the client instead), so this is a small app under ``tests/``. Repos are
generated on disk (``add_repo``, ``add_tiny_model``, ``add_large_file``); each call is a new
commit that moves its branch while older shas stay served. Tests can break it on purpose
(``corrupt``, ``throttle``/``slow``, ``interrupt``, ``fail``, ``ignore_range``, gating), hold a download open until
they release it (``hold``, ``wait_until_held``, ``release``), and read what it served (``gets``,
``bytes_served``, ``ranges``, ``requests``).

Point the client at it with ``HF_ENDPOINT=<url>`` *before* importing huggingface_hub (it is
read at import time) or pass ``endpoint=<url>``; set ``HF_HUB_DISABLE_XET=1``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import uvicorn

from tests.support.hub.app import create_app
from tests.support.hub.faults import Counters, Faults, Hold
from tests.support.hub.store import (
    DEFAULT_LFS_THRESHOLD,
    GITATTRIBUTES,
    Blob,
    FileMeta,
    HubStoreError,
    RepoStore,
    tree_files,
)
from tests.support.net import wait_for

__all__ = ["DEFAULT_LFS_THRESHOLD", "TINY_REPO", "FileMeta", "HubStandIn", "HubStoreError"]

TINY_REPO = "llf-test/tiny-llama"  # what the ``hub`` fixture pre-loads: the tiny model, seed 0


class HubStandIn:
    """Repos under ``root`` plus, once ``start()``-ed, a uvicorn server in a background thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.store = RepoStore(self.root)
        self.faults = Faults()
        self.counters = Counters()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url: str | None = None

    # ------------------------------------------------------------ repos
    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        branch: str = "main",
        tags: Iterable[str] = (),
        gated: bool | None = None,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        gitattributes: bool = True,
        keep_existing: bool = False,
        title: str | None = None,
    ) -> str:
        """Commit ``files`` as the whole tree of a new commit on ``branch``; return the commit sha.

        ``gitattributes`` adds the Hub's default ``.gitattributes`` like a real repo has;
        ``keep_existing`` starts from the branch's current files instead of an empty tree;
        ``gated=None`` leaves the repo's gating as it is (new repos are open).
        """
        blobs: dict[str, Blob] = {}
        if gitattributes and ".gitattributes" not in files:
            blobs[".gitattributes"] = self.store.put_bytes(GITATTRIBUTES)
        for path, content in files.items():
            blobs[path] = self.store.put_file(content) if isinstance(content, Path) else self.store.put_bytes(content)
        return self.store.commit(
            repo_id,
            blobs,
            branch=branch,
            tags=tags,
            gated=gated,
            lfs_threshold=lfs_threshold,
            keep_existing=keep_existing,
            title=title,
        )

    def add_tiny_model(
        self,
        repo_id: str,
        seed: int = 0,
        *,
        branch: str = "main",
        tags: Iterable[str] = (),
        gated: bool | None = None,
    ) -> str:
        """The deterministic tiny Llama (``llf_models.tinymodel``) as a repo; same seed, same files."""
        from llf_models.tinymodel import write_tiny_model

        directory = self.root / "tiny-models" / f"seed-{seed}"
        if not (directory / "model.safetensors").exists():
            write_tiny_model(directory, seed=seed)
        files: dict[str, bytes | Path] = dict(tree_files(directory))
        return self.add_repo(repo_id, files, branch=branch, tags=tags, gated=gated, title=f"tiny model seed {seed}")

    def add_large_file(self, repo_id: str, name: str, size: int, seed: int = 0, *, branch: str = "main") -> str:
        """Add ``size`` pseudo-random bytes as ``name`` on top of the branch's files (a new commit)."""
        blob = self.store.put_random(size, seed)
        repo = self.store.find(repo_id)
        if repo is None or branch not in repo.branches:
            self.store.commit(repo_id, {".gitattributes": self.store.put_bytes(GITATTRIBUTES)}, branch=branch)
        return self.store.commit(repo_id, {name: blob}, branch=branch, keep_existing=True, title=f"Add {name}")

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """The commit sha a branch, tag or sha points at."""
        commit = self.store.get(repo_id).resolve(revision)
        if commit is None:
            raise HubStoreError(f"{repo_id} has no revision {revision!r}")
        return commit.sha

    def files(self, repo_id: str, revision: str = "main") -> dict[str, FileMeta]:
        """Path -> metadata (size, sha256, LFS) of one revision: what a correct download must produce."""
        commit = self.store.get(repo_id).resolve(self.resolve(repo_id, revision))
        assert commit is not None
        return dict(commit.files)

    def file_bytes(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        return self.store.blob_path(self.files(repo_id, revision)[path].sha256).read_bytes()

    def set_gated(self, repo_id: str, gated: bool = True) -> None:
        self.store.set_gated(repo_id, gated)

    # ------------------------------------------------------------ faults
    def require_token(self, token: str) -> None:
        """Accept ``token`` for gated repos (and ``whoami``); call again to allow more tokens."""
        with self.faults.lock:
            self.faults.tokens.add(token)

    def corrupt(self, repo_id: str, path: str, at_byte: int = 0) -> None:
        """Serve ``path`` with the byte at ``at_byte`` flipped: same size, wrong sha256."""
        with self.faults.lock:
            self.faults.corrupt_at.setdefault((repo_id, path), set()).add(at_byte)

    def heal(self, repo_id: str, path: str) -> None:
        with self.faults.lock:
            self.faults.corrupt_at.pop((repo_id, path), None)

    def throttle(self, bytes_per_second: float | None) -> None:
        """Cap every file response at this rate (None: full speed)."""
        with self.faults.lock:
            self.faults.throttle_bps = bytes_per_second

    def slow(self, repo_id: str, path: str, bytes_per_second: float | None) -> None:
        """Cap one file's responses at this rate (None: full speed)."""
        with self.faults.lock:
            if bytes_per_second is None:
                self.faults.slow_bps.pop((repo_id, path), None)
            else:
                self.faults.slow_bps[(repo_id, path)] = bytes_per_second

    def interrupt(self, repo_id: str, path: str, after_bytes: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` drop the connection after ``after_bytes`` body bytes."""
        with self.faults.lock:
            self.faults.interrupt_after.setdefault((repo_id, path), []).extend([after_bytes] * times)

    def fail(self, repo_id: str, path: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests (HEAD or GET) of ``path`` answer ``status``."""
        with self.faults.lock:
            self.faults.fail_with.setdefault((repo_id, path), []).extend([status] * times)

    def hold(self, repo_id: str, path: str, after_bytes: int = 0, times: int | None = None) -> None:
        """Every GET of ``path`` (the next ``times`` GETs) sends ``after_bytes`` bytes, then waits for ``release()``.

        The deterministic way to have a download in flight: ``wait_until_held`` says when a
        stream is parked at the gate; ``release`` (or ``reset_faults``, or ``stop``) lets it finish.
        With ``times=1`` a retry or a resume is served at once while the first GET stays parked.
        """
        with self.faults.lock:
            self.faults.holds[(repo_id, path)] = Hold(after_bytes, times)

    def release(self, repo_id: str | None = None, path: str | None = None) -> None:
        """Let the held streams of one file (every file: no arguments) go on; new GETs are not held."""
        self.faults.release(None if repo_id is None or path is None else (repo_id, path))

    def held(self, repo_id: str, path: str) -> int:
        """How many GETs of ``path`` are parked at its hold right now."""
        with self.faults.lock:
            hold = self.faults.holds.get((repo_id, path))
            return hold.paused if hold is not None else 0

    def wait_until_held(self, repo_id: str, path: str, timeout: float = 60.0) -> None:
        """Block until a GET of ``path`` is parked at its hold (``AssertionError`` after ``timeout``)."""
        wait_for(lambda: self.held(repo_id, path) > 0, timeout, f"a download of {repo_id}/{path} held by the hub")

    def ignore_range(self, repo_id: str, path: str, ignore: bool = True) -> None:
        """Answer GETs of ``path`` with 200 and the whole file, whatever their ``Range`` (some mirrors do)."""
        with self.faults.lock:
            (self.faults.ignore_range.add if ignore else self.faults.ignore_range.discard)((repo_id, path))

    def reset_faults(self) -> None:
        self.faults.reset()

    # ------------------------------------------------------------ counters
    def gets(self, repo_id: str, path: str) -> int:
        with self.counters.lock:
            return self.counters.gets[(repo_id, path)]

    def heads(self, repo_id: str, path: str) -> int:
        with self.counters.lock:
            return self.counters.heads[(repo_id, path)]

    def bytes_served(self, repo_id: str | None = None, path: str | None = None) -> int:
        """Body bytes sent for one file, one repo (``path=None``) or everything (no arguments)."""
        with self.counters.lock:
            return sum(
                n
                for (repo, file), n in self.counters.bytes_served.items()
                if (repo_id is None or repo == repo_id) and (path is None or file == path)
            )

    def ranges(self, repo_id: str, path: str) -> list[str]:
        """The Range headers of the GETs of one file, in order."""
        with self.counters.lock:
            return list(self.counters.ranges.get((repo_id, path), []))

    def requests(self, route: str) -> int:
        """Requests per route: model_info, tree, paths_info, refs, resolve_head, resolve_get, whoami."""
        with self.counters.lock:
            return self.counters.requests[route]

    def reset_counters(self) -> None:
        self.counters.reset()

    # ------------------------------------------------------------ server
    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 15.0) -> str:
        """Serve in a background thread; returns the base URL (use it as HF_ENDPOINT)."""
        if self.url is not None:
            return self.url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        config = uvicorn.Config(
            create_app(self),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hub-stand-in", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("hub stand-in did not start")
            time.sleep(0.02)
        self._server, self._thread, self._socket = server, thread, sock
        bound_host, bound_port = sock.getsockname()[:2]
        shown = "127.0.0.1" if bound_host in ("0.0.0.0", "") else bound_host
        self.url = f"http://{shown}:{bound_port}"
        return self.url

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self.faults.release()  # a held stream would keep the server from shutting down
        self._server.should_exit = True
        self._thread.join(10)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self.url = None

    def __enter__(self) -> HubStandIn:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
