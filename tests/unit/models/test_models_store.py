"""The store's layout, path safety and manifests."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from llf_common.errors import BadRequest
from llf_common.wire import FileEntry
from llf_models.store import Manifest, Store, atomic_write, check_etag, check_sha, repo_folder_name, safe_relpath

SHA = "a" * 40
ETAG = "b" * 64


def make_manifest(repo: str = "owner/name", **overrides: object) -> Manifest:
    values: dict[str, object] = {
        "repo": repo,
        "revision": "main",
        "sha": SHA,
        "files": [FileEntry(path="config.json", size=2, sha256=ETAG)],
        "blobs": {"config.json": ETAG},
        "total_bytes": 2,
        "verified_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    values.update(overrides)
    return Manifest.model_validate(values)


def test_repo_folder_name_follows_huggingface_hub() -> None:
    assert repo_folder_name("Qwen/Qwen2.5-0.5B") == "models--Qwen--Qwen2.5-0.5B"


@pytest.mark.parametrize("repo", ["../x", "a/..", "a/b/c", "/a/b", "a", "a/../b"])
def test_repo_folder_name_refuses_ids_that_could_escape(repo: str) -> None:
    with pytest.raises(ValueError):
        repo_folder_name(repo)


@pytest.mark.parametrize("path", ["", "/etc/passwd", "a/../b", "..", "./a", "a//b", "a\\b", "a/", "x\x00"])
def test_safe_relpath_refuses_paths_leaving_the_snapshot(path: str) -> None:
    with pytest.raises(BadRequest):
        safe_relpath(path)


def test_safe_relpath_keeps_nested_paths() -> None:
    assert safe_relpath("onnx/model.onnx") == "onnx/model.onnx"


def test_etag_and_sha_are_hex_digests_only() -> None:
    assert check_etag(ETAG) == ETAG and check_etag("c" * 40) == "c" * 40
    assert check_sha(SHA) == SHA
    for bad in ("../x", "g" * 40, "a" * 41):
        with pytest.raises(BadRequest):
            check_etag(bad)
    with pytest.raises(BadRequest):
        check_sha("main")


def test_paths_of_a_repo_live_in_the_hf_cache_layout(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.blob_path("o/n", ETAG) == tmp_path / "models--o--n" / "blobs" / ETAG
    assert store.partial_path("o/n", ETAG).name == ETAG + ".incomplete"
    assert store.snapshot_file("o/n", SHA, "a/b.json") == tmp_path / "models--o--n" / "snapshots" / SHA / "a" / "b.json"
    assert store.ref_path("o/n", "refs/pr/1") == tmp_path / "models--o--n" / "refs" / "refs" / "pr" / "1"
    assert store.manifest_path("o/n") == tmp_path / "manifests" / "o--n.json"
    with pytest.raises(BadRequest):
        store.ref_path("o/n", "../../x")


def test_manifest_round_trips_and_becomes_model_info(tmp_path: Path) -> None:
    store = Store(tmp_path)
    manifest = make_manifest(params=10, dtype="float32", weight_bytes=40)
    store.write_manifest(manifest)
    again = store.read_manifest("owner/name")
    assert again == manifest
    info = store.info(again, served=True)
    assert info.name == "owner/name" and info.verified and info.served
    assert info.path == str(tmp_path / "models--owner--name" / "snapshots" / SHA)
    assert [m.repo for m in store.manifests()] == ["owner/name"]
    assert store.read_manifest("other/name") is None


def test_broken_manifests_are_skipped_not_fatal(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_manifest(make_manifest("good/one"))
    (tmp_path / "manifests" / "bad--one.json").write_text("{not json")
    (tmp_path / "manifests" / "evil--one.json").write_text(
        make_manifest("evil/one").model_dump_json().replace("evil/one", "../x")
    )
    assert [m.repo for m in store.manifests()] == ["good/one"]
    assert store.read_manifest("bad/one") is None
    assert Store(tmp_path / "empty").manifests() == []


def test_snapshot_links_are_relative_and_resolve_to_the_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    blob = store.blob_path("o/n", ETAG)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"{}")
    link = store.link_snapshot("o/n", SHA, "sub/config.json", ETAG)
    assert link.is_symlink() and not os.readlink(link).startswith("/")
    assert link.read_bytes() == b"{}"
    assert store.link_snapshot("o/n", SHA, "sub/config.json", ETAG) == link  # idempotent


def test_refs_hold_the_sha_without_newline_and_commits_need_none(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_ref("o/n", "main", SHA)
    assert store.ref_path("o/n", "main").read_text() == SHA
    store.write_ref("o/n", SHA, SHA)
    assert not store.ref_path("o/n", SHA).exists()


def test_delete_removes_manifest_and_files_and_purge_removes_partials(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_manifest(make_manifest("o/n"))
    partial = store.partial_path("o/n", ETAG)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x")
    assert store.partials("o/n") == [partial]
    assert store.purge_partials("o/n") == 1 and not partial.exists()
    assert store.purge_partials("nothing/here") == 0
    assert store.delete("o/n") is True
    assert not store.repo_dir("o/n").exists() and store.read_manifest("o/n") is None
    assert store.delete("o/n") is False


def test_writable_and_free_bytes_probe_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "models")
    assert store.writable() and store.free_bytes() > 0
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    assert Store(blocker / "models").writable() is False


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.json"
    atomic_write(target, b"1")
    atomic_write(target, b"2")
    assert target.read_bytes() == b"2" and os.listdir(target.parent) == ["f.json"]
