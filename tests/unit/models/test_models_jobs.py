"""The pull, verify and import jobs run in-process against fakes (no Redis, no RQ, no hub)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from llf_common.errors import InsufficientStorage
from llf_models import scope as scope_module
from llf_models.errors import (
    CorruptFile,
    DiskFull,
    ImportNotAllowed,
    JobCanceled,
    LockLost,
    Missing,
    Superseded,
    UnsafeImport,
    VerifyFailed,
)
from llf_models.hub import FileLocation, RemoteFile
from llf_models.importing import commit_id, default_import_name, list_model_files, run_import
from llf_models.jobs import run_verify
from llf_models.progress import Reporter
from llf_models.pulling import human, order_files, run_pull
from llf_models.scope import JobScope, describe, job_scope, redact
from llf_models.settings import ModelsSettings
from llf_models.store import Store
from llf_models.tinymodel import write_tiny_model
from pydantic import SecretStr

from tests.unit.models.fakes import SHA, FakeHub, FakeIndex, FakeLock, FakeLocks


class FakeJob:
    def __init__(self) -> None:
        self.id = "job-1"
        self.meta: dict[str, Any] = {}
        self.saved = 0
        self.retries_left: int | None = 3
        self.connection = None

    def save_meta(self) -> None:
        self.saved += 1


class Scope(JobScope):
    """A JobScope with an in-memory index and locks instead of Redis."""

    locks = FakeLocks()

    def lock(self, repo: str) -> Any:  # type: ignore[override]
        return self.locks(repo)


def make_scope(tmp_path: Path, job: FakeJob | None = None, **settings: Any) -> Scope:
    values = {"home": tmp_path, "disk_margin_bytes": 0, **settings}
    config = ModelsSettings.load(**values)
    assert isinstance(config, ModelsSettings)
    scope = Scope(config, Store(config.models_path), None, Reporter(job, None), "test", job)  # type: ignore[arg-type]
    scope.index = FakeIndex()  # type: ignore[assignment]
    return scope


# ------------------------------------------------------------------ a hub serving a tiny model
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny"), seed=2)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class TinyHub(FakeHub):
    """Resolves to the tiny model's files; ``locate`` points at the mock transport."""

    def __init__(self, directory: Path, architecture: str | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        files = []
        for path in sorted(directory.iterdir()):
            data = path.read_bytes()
            if path.name == "config.json" and architecture:
                config = json.loads(data)
                config["architectures"] = [architecture]
                data = json.dumps(config).encode()
            if path.suffix == ".safetensors":
                digest = hashlib.sha256(data).hexdigest()
                files.append(RemoteFile(path.name, len(data), digest, digest, True))
            else:
                files.append(RemoteFile(path.name, len(data), git_blob_id(data), None, False))
            self.blobs[path.name] = data
        super().__init__(tuple(files))
        self.requests: list[str] = []
        self.lie_about_size = False

    def locate(self, repo: str, sha: str, path: str) -> FileLocation:
        size = len(self.blobs[path]) + (1 if self.lie_about_size else 0)
        return FileLocation(url=f"http://hub/{path}", size=size, etag=None, same_host=True)

    def headers(self) -> dict[str, str]:
        return {"authorization": "Bearer hf_token_value"}

    def client(self) -> httpx2.Client:
        def handler(request: httpx2.Request) -> httpx2.Response:
            name = request.url.path.lstrip("/")
            self.requests.append(name)
            return httpx2.Response(200, content=self.blobs[name])

        return httpx2.Client(transport=httpx2.MockTransport(handler))


def pull(scope: Scope, hub: TinyHub, repo: str = "o/tiny") -> dict[str, Any]:
    return run_pull(scope, hub, hub.client(), repo, "main", SHA)  # type: ignore[arg-type]


def test_pull_writes_blobs_snapshot_ref_manifest_and_index(tmp_path: Path, tiny: Path) -> None:
    job = FakeJob()
    scope = make_scope(tmp_path, job)
    hub = TinyHub(tiny)
    result = pull(scope, hub)
    model = result["model"]
    assert model["verified"] and model["architecture"] == "LlamaForCausalLM" and model["params"] > 0
    snapshot = Path(model["path"])
    for name, data in hub.blobs.items():
        assert (snapshot / name).read_bytes() == data
    assert scope.store.ref_path("o/tiny", "main").read_text() == SHA
    assert scope.index.get("o/tiny") is not None  # type: ignore[attr-defined]
    assert hub.requests[0] == "config.json" and hub.requests[-1] == "model.safetensors"
    progress = job.meta["progress"]
    assert progress["phase"] == "done" and progress["files_done"] == len(hub.blobs)
    assert progress["bytes_done"] == progress["bytes_total"] == sum(len(d) for d in hub.blobs.values())


def test_a_second_pull_fetches_nothing_and_repairs_a_bad_small_blob(tmp_path: Path, tiny: Path) -> None:
    scope = make_scope(tmp_path)
    hub = TinyHub(tiny)
    pull(scope, hub)
    hub.requests.clear()
    pull(scope, hub)
    assert hub.requests == []
    config = next(f for f in hub.files if f.path == "config.json")
    scope.store.blob_path("o/tiny", config.etag).write_bytes(b"x" * config.size)
    pull(scope, hub)
    assert hub.requests == ["config.json"]


def test_unknown_architecture_is_a_warning_on_the_job_and_the_model(tmp_path: Path, tiny: Path) -> None:
    job = FakeJob()
    model = pull(make_scope(tmp_path, job), TinyHub(tiny, architecture="FancyNewForCausalLM"))["model"]
    assert model["architecture_supported"] is False
    assert "FancyNewForCausalLM" in model["warnings"][0] and job.meta["warnings"] == model["warnings"]


def test_pull_stops_before_any_byte_when_the_disk_is_too_small(tmp_path: Path, tiny: Path) -> None:
    hub = TinyHub(tiny)
    with pytest.raises(DiskFull, match="not enough disk space"):
        pull(make_scope(tmp_path, disk_margin_bytes=1 << 62), hub)
    assert hub.requests == []
    assert issubclass(DiskFull, InsufficientStorage)


def test_hub_metadata_that_disagrees_fails_the_pull(tmp_path: Path, tiny: Path) -> None:
    hub = TinyHub(tiny)
    hub.lie_about_size = True
    with pytest.raises(CorruptFile, match="lists"):
        pull(make_scope(tmp_path), hub)


def test_a_model_whose_weights_do_not_parse_is_never_listed(tmp_path: Path, tiny: Path) -> None:
    hub = TinyHub(tiny)
    broken = b"\x02\x00\x00\x00\x00\x00\x00\x00{}extra"
    digest = hashlib.sha256(broken).hexdigest()
    hub.blobs["model.safetensors"] = broken
    hub.files = tuple(
        RemoteFile(f.path, len(broken), digest, digest, True) if f.path == "model.safetensors" else f for f in hub.files
    )
    scope = make_scope(tmp_path)
    with pytest.raises(CorruptFile, match=r"model\.safetensors"):
        pull(scope, hub)
    assert scope.store.read_manifest("o/tiny") is None and scope.index.get("o/tiny") is None  # type: ignore[attr-defined]


def test_verify_passes_then_reports_and_drops_a_corrupted_blob(tmp_path: Path, tiny: Path) -> None:
    job = FakeJob()
    scope = make_scope(tmp_path, job)
    model = pull(scope, TinyHub(tiny))["model"]
    assert run_verify(scope, "o/tiny")["ok"] is True
    weights = Path(model["path"]) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(VerifyFailed, match=r"model\.safetensors: sha256 mismatch") as info:
        run_verify(scope, "o/tiny")
    assert "pull it again" in info.value.detail
    assert job.meta["result"]["problems"][0]["path"] == "model.safetensors"
    manifest = scope.store.read_manifest("o/tiny")
    assert manifest is not None and manifest.verified_at is None
    assert not weights.exists()  # the bad blob is gone, so the next pull fetches it again
    with pytest.raises(Missing):
        run_verify(scope, "o/unknown")


class RacingScope(Scope):
    """A scope whose lock runs ``meanwhile`` before it is granted: what another job did while we waited."""

    meanwhile: Any = None

    def lock(self, repo: str) -> Any:  # type: ignore[override]
        @contextlib.contextmanager
        def granted() -> Iterator[FakeLock]:
            if self.meanwhile is not None:
                self.meanwhile()
            yield FakeLock()

        return granted()


def racing_scope(tmp_path: Path, tiny: Path) -> RacingScope:
    scope = make_scope(tmp_path, FakeJob())
    pull(scope, TinyHub(tiny))
    racing = RacingScope(scope.settings, scope.store, None, Reporter(None, None), "test", None)  # type: ignore[arg-type]
    racing.index = scope.index
    return racing


class LosingScope(Scope):
    """A scope whose lock is lost after ``lose_after`` checks (the worker was paused past its TTL)."""

    lose_after = 0

    def lock(self, repo: str) -> Any:  # type: ignore[override]
        @contextlib.contextmanager
        def granted() -> Iterator[FakeLock]:
            yield FakeLock(self.lose_after)

        return granted()


@pytest.mark.parametrize("lose_after", [0, 1, 3])
def test_a_pull_that_lost_its_lock_stops_and_writes_no_ref_and_no_manifest(
    tmp_path: Path, tiny: Path, lose_after: int
) -> None:
    base = make_scope(tmp_path)
    scope = LosingScope(base.settings, base.store, None, Reporter(None, None), "test", None)  # type: ignore[arg-type]
    scope.index = base.index
    scope.lose_after = lose_after
    with pytest.raises(LockLost):
        pull(scope, TinyHub(tiny))
    assert scope.store.read_manifest("o/tiny") is None
    assert not scope.store.ref_path("o/tiny", "main").exists()
    assert scope.index.get("o/tiny") is None  # type: ignore[attr-defined]
    if lose_after == 0:  # lost before the first file: nothing published at all
        assert [b for b in scope.store.blobs_dir("o/tiny").iterdir() if "." not in b.name] == []


def test_a_verify_that_waited_behind_rm_does_not_list_the_deleted_model_again(tmp_path: Path, tiny: Path) -> None:
    scope = racing_scope(tmp_path, tiny)
    scope.meanwhile = lambda: (scope.store.delete("o/tiny"), scope.index.remove("o/tiny"))
    with pytest.raises(Missing, match="o/tiny"):
        run_verify(scope, "o/tiny")
    assert scope.store.read_manifest("o/tiny") is None
    assert scope.index.get("o/tiny") is None  # type: ignore[attr-defined]


def test_a_verify_that_waited_behind_a_pull_of_a_newer_commit_does_not_write_the_old_one_back(
    tmp_path: Path, tiny: Path
) -> None:
    scope = racing_scope(tmp_path, tiny)
    newer = "b" * 40

    def pull_newer() -> None:
        manifest = scope.store.read_manifest("o/tiny")
        assert manifest is not None
        manifest.sha = newer
        scope.store.write_manifest(manifest)
        scope.store.write_ref("o/tiny", "main", newer)

    scope.meanwhile = pull_newer
    with pytest.raises(Superseded, match="changed"):
        run_verify(scope, "o/tiny")
    manifest = scope.store.read_manifest("o/tiny")
    assert manifest is not None and manifest.sha == newer
    assert scope.store.ref_path("o/tiny", "main").read_text() == newer


def test_verify_reports_a_structurally_broken_file_with_a_matching_hash(tmp_path: Path, tiny: Path) -> None:
    scope = make_scope(tmp_path)
    pull(scope, TinyHub(tiny))
    manifest = scope.store.read_manifest("o/tiny")
    assert manifest is not None
    config_path = scope.store.snapshot_file("o/tiny", SHA, "config.json")
    config_path.unlink()
    blob = scope.store.blob_path("o/tiny", manifest.blobs["config.json"])
    blob.write_bytes(b"[1]")
    config_path.symlink_to(blob)
    entry = next(f for f in manifest.files if f.path == "config.json")
    entry.size, entry.sha256 = 3, hashlib.sha256(b"[1]").hexdigest()
    scope.store.write_manifest(manifest)
    with pytest.raises(VerifyFailed, match=r"config\.json: not a JSON object"):
        run_verify(scope, "o/tiny")


@pytest.mark.parametrize("link", [True, False])
def test_import_hashes_links_or_copies_and_lists_the_model(tmp_path: Path, tiny: Path, link: bool) -> None:
    scope = make_scope(tmp_path / "store", import_roots=[tmp_path])
    source = tmp_path / "src"
    source.mkdir()
    for path in tiny.iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    (source / ".hidden").write_text("skip me")
    (source / "sub").mkdir()
    (source / "sub" / "notes.txt").write_text("hello")
    model = run_import(scope, str(source), "local/tiny", link=link)["model"]
    assert model["source"] == "import" and model["verified"]
    paths = {f["path"] for f in model["files"]}
    assert "sub/notes.txt" in paths and ".hidden" not in paths
    weights = Path(model["path"]) / "model.safetensors"
    assert weights.read_bytes() == (tiny / "model.safetensors").read_bytes()
    inode_shared = weights.resolve().stat().st_ino == (source / "model.safetensors").stat().st_ino
    assert inode_shared is link
    again = run_import(scope, str(source), "local/tiny", link=link)["model"]
    assert again["sha"] == model["sha"]


def model_source(tmp_path: Path, tiny: Path) -> Path:
    source = tmp_path / "home" / "src"
    source.mkdir(parents=True)
    for path in tiny.iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    return source


@pytest.mark.parametrize("link", [True, False])
def test_import_refuses_a_link_to_a_file_outside_the_directory(tmp_path: Path, tiny: Path, link: bool) -> None:
    secret = tmp_path / "ssh" / "id_ed25519"  # what ``tokenizer.model -> ~/.ssh/id_ed25519`` would import
    secret.parent.mkdir()
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n")
    secret.chmod(0o600)
    scope = make_scope(tmp_path / "home", import_roots=[tmp_path])
    source = model_source(tmp_path, tiny)
    (source / "tokenizer.model").symlink_to(secret)
    with pytest.raises(UnsafeImport, match=r"tokenizer\.model.*outside"):
        run_import(scope, str(source), "local/tiny", link=link)
    stored = [p for p in scope.store.root.rglob("*") if p.is_file() and p.read_bytes() == secret.read_bytes()]
    assert stored == [], "the key reached the store"
    assert scope.store.read_manifest("local/tiny") is None


def test_import_refuses_a_linked_directory_outside_and_walks_links_inside_once(tmp_path: Path, tiny: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "notes.txt").write_text("not part of the model")
    source = model_source(tmp_path, tiny)
    (source / "extra").symlink_to(outside)
    with pytest.raises(UnsafeImport, match="extra"):
        list_model_files(source)
    (source / "extra").unlink()
    (source / "sub").mkdir()
    (source / "sub" / "notes.txt").write_text("inside")
    (source / "again").symlink_to(source / "sub")  # a second name for a directory inside: listed once
    names = [name for name, _ in list_model_files(source)]
    assert names.count("sub/notes.txt") + names.count("again/notes.txt") == 1


def test_two_links_to_the_directory_itself_do_not_make_the_walk_explode(tmp_path: Path, tiny: Path) -> None:
    source = model_source(tmp_path, tiny)
    (source / "a").symlink_to(".")
    (source / "b").symlink_to(".")
    (source / "loop").symlink_to("loop")  # a link to itself
    names = [name for name, _ in list_model_files(source)]
    assert sorted(names) == sorted(p.name for p in tiny.iterdir())


def test_an_hf_cache_snapshot_imports_through_its_links_into_blobs(tmp_path: Path, tiny: Path) -> None:
    repo = tmp_path / "models--o--cached"
    snapshot = repo / "snapshots" / ("c" * 40)
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for path in tiny.iterdir():
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(Path("../../blobs") / blob.name)
    assert sorted(name for name, _ in list_model_files(snapshot)) == sorted(p.name for p in tiny.iterdir())


def test_a_copied_import_keeps_the_sources_permission_bits(tmp_path: Path, tiny: Path) -> None:
    scope = make_scope(tmp_path / "home", import_roots=[tmp_path])
    source = model_source(tmp_path, tiny)
    (source / "tokenizer.model").write_bytes(b"private tokenizer")
    (source / "tokenizer.model").chmod(0o600)
    (source / "config.json").chmod(0o640)
    model = run_import(scope, str(source), "local/tiny", link=False)["model"]
    snapshot = Path(model["path"])
    assert stat.S_IMODE((snapshot / "tokenizer.model").resolve().stat().st_mode) == 0o600
    assert stat.S_IMODE((snapshot / "config.json").resolve().stat().st_mode) == 0o640


def test_imports_come_only_from_the_configured_roots(tmp_path: Path, tiny: Path) -> None:
    source = model_source(tmp_path, tiny)
    scope = make_scope(tmp_path / "llf-home", import_roots=[tmp_path / "other"])
    with pytest.raises(ImportNotAllowed, match="import_roots"):
        run_import(scope, str(source), "local/tiny")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "door").symlink_to(source)  # a link inside a root to a directory outside it
    with pytest.raises(ImportNotAllowed):
        run_import(scope, str(tmp_path / "other" / "door"), "local/tiny")
    defaults = ModelsSettings.load(home=tmp_path / "llf-home", models_dir=tmp_path / "store")
    assert isinstance(defaults, ModelsSettings)
    assert defaults.allowed_import_roots() == [Path.home(), tmp_path / "llf-home", tmp_path / "store"]


def test_import_of_something_that_is_not_a_model_directory_fails(tmp_path: Path) -> None:
    scope = make_scope(tmp_path)
    with pytest.raises(Missing, match="not a directory"):
        run_import(scope, str(tmp_path / "nope"), "local/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Missing, match="holds no files"):
        run_import(scope, str(tmp_path / "empty"), "local/x")


def test_import_names_default_to_local_or_the_cached_repo(tmp_path: Path) -> None:
    assert default_import_name("/data/My Model v2!") == "local/My-Model-v2"
    assert default_import_name("/x/...") == "local/model"
    snapshot = tmp_path / "models--Qwen--Qwen2.5-0.5B" / "snapshots" / SHA
    assert default_import_name(str(snapshot)) == "Qwen/Qwen2.5-0.5B"


def test_commit_ids_depend_on_paths_and_contents_only(tmp_path: Path) -> None:
    from llf_common.wire import FileEntry

    a = [FileEntry(path="x", size=1, sha256="1"), FileEntry(path="y", size=1, sha256="2")]
    assert commit_id(a) == commit_id(list(reversed(a))) and len(commit_id(a)) == 40
    assert commit_id(a) != commit_id([FileEntry(path="x", size=1, sha256="3"), a[1]])
    (tmp_path / "f").write_text("1")
    assert list_model_files(tmp_path) == [("f", tmp_path / "f")]


def test_files_are_ordered_config_first_then_small_then_weights() -> None:
    files = (
        RemoteFile("model.safetensors", 100, "a" * 64, "a" * 64, True),
        RemoteFile("tokenizer.json", 50, "b" * 40, None, False),
        RemoteFile("config.json", 5, "c" * 40, None, False),
        RemoteFile("a.txt", 1, "d" * 40, None, False),
    )
    assert [f.path for f in order_files(files)] == ["config.json", "a.txt", "tokenizer.json", "model.safetensors"]
    assert human(512) == "512 B" and human(3 << 30) == "3.0 GiB"


# ------------------------------------------------------------------ job_scope: what a failure leaves on the job
@pytest.fixture
def current_job(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJob]:
    job = FakeJob()
    monkeypatch.setattr(scope_module, "get_current_job", lambda: job)
    yield job


def scope_settings(tmp_path: Path, token: str | None = None) -> ModelsSettings:
    settings = ModelsSettings.load(home=tmp_path, hf_token=SecretStr(token) if token else None)
    assert isinstance(settings, ModelsSettings)
    return settings


def test_a_permanent_failure_is_recorded_and_turns_off_retries(tmp_path: Path, current_job: FakeJob) -> None:
    with contextlib.suppress(CorruptFile), job_scope(scope_settings(tmp_path), redis=object()) as scope:  # type: ignore[arg-type]
        assert scope.job is current_job and current_job.meta["attempts"] == 1
        raise CorruptFile("model.safetensors", "bad")
    assert current_job.meta["error"] == "model.safetensors: bad"
    assert current_job.retries_left == 0 and current_job.meta["canceled"] is False


def test_an_unexpected_failure_keeps_its_retries_and_hides_the_token(tmp_path: Path, current_job: FakeJob) -> None:
    settings = scope_settings(tmp_path, token="hf_sekrit")
    with contextlib.suppress(RuntimeError), job_scope(settings, redis=object()):  # type: ignore[arg-type]
        raise RuntimeError("boom with hf_sekrit inside\nsecond line")
    assert current_job.meta["error"] == "RuntimeError: boom with *** inside"
    assert current_job.retries_left == 3


def test_a_cancel_is_recorded_as_such(tmp_path: Path, current_job: FakeJob) -> None:
    with contextlib.suppress(JobCanceled), job_scope(scope_settings(tmp_path), redis=object()):  # type: ignore[arg-type]
        raise JobCanceled("canceled on request")
    assert current_job.meta["canceled"] is True and current_job.retries_left == 0


def test_describe_and_redact(tmp_path: Path) -> None:
    assert describe(ValueError()) == "ValueError"
    assert describe(KeyError("k")) == "KeyError: 'k'"
    assert redact("a tok b", scope_settings(tmp_path, token="tok")) == "a *** b"
    assert redact("a tok b", scope_settings(tmp_path)) == "a tok b"
