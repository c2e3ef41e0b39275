"""The hub stand-in speaks enough of the Hub for the real huggingface_hub client.

The client is the installed huggingface_hub, unpatched: in-process with ``endpoint=``, and in a
subprocess with ``HF_ENDPOINT`` (how the registry's worker will be configured).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.support.hub import TINY_REPO, HubStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_blob_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def api(hub: HubStandIn, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def assert_snapshot_matches_hub_metadata(hub: HubStandIn, repo: str, revision: str, snapshot: Path) -> None:
    info = api(hub).model_info(repo, revision=revision, files_metadata=True)
    assert info.siblings is not None
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == sorted(
        s.rfilename for s in info.siblings
    )
    for sibling in info.siblings:
        local = snapshot / sibling.rfilename
        assert local.stat().st_size == sibling.size
        if sibling.lfs is not None:
            assert sha256_of(local) == sibling.lfs.sha256
        else:
            assert git_blob_oid(local) == sibling.blob_id


def test_snapshot_download_of_a_branch_matches_the_lfs_sha256_the_hub_reports(
    fresh_hub: HubStandIn, tmp_path: Path
) -> None:
    sha = fresh_hub.resolve(TINY_REPO, "main")
    snapshot = Path(
        snapshot_download(TINY_REPO, revision="main", endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    )
    assert snapshot.name == sha
    assert_snapshot_matches_hub_metadata(fresh_hub, TINY_REPO, "main", snapshot)
    info = api(fresh_hub).model_info(TINY_REPO, files_metadata=True)
    weights = next(s for s in (info.siblings or []) if s.rfilename == "model.safetensors")
    assert weights.lfs is not None and weights.lfs.sha256 == fresh_hub.files(TINY_REPO)["model.safetensors"].sha256
    assert info.safetensors is not None and info.safetensors.total > 300_000


def test_a_new_commit_moves_the_branch_and_old_commit_shas_stay_downloadable(
    fresh_hub: HubStandIn, tmp_path: Path
) -> None:
    repo = "llf-test/moving-branch"
    first = fresh_hub.add_tiny_model(repo, seed=0, tags=["v1"])
    second = fresh_hub.add_tiny_model(repo, seed=1)
    assert first != second
    assert api(fresh_hub).model_info(repo).sha == second
    assert api(fresh_hub).model_info(repo, revision="v1").sha == first

    old = Path(snapshot_download(repo, revision=first, endpoint=fresh_hub.url, cache_dir=tmp_path, token=False))
    new = Path(snapshot_download(repo, revision="main", endpoint=fresh_hub.url, cache_dir=tmp_path, token=False))
    assert (old.name, new.name) == (first, second)
    assert_snapshot_matches_hub_metadata(fresh_hub, repo, first, old)
    assert_snapshot_matches_hub_metadata(fresh_hub, repo, "main", new)
    assert sha256_of(old / "model.safetensors") != sha256_of(new / "model.safetensors")


def test_a_second_snapshot_download_is_served_from_the_cache(fresh_hub: HubStandIn, tmp_path: Path) -> None:
    snapshot_download(TINY_REPO, endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    assert fresh_hub.gets(TINY_REPO, "model.safetensors") == 1
    served = fresh_hub.bytes_served(TINY_REPO)
    assert served == sum(f.size for f in fresh_hub.files(TINY_REPO).values())
    snapshot_download(TINY_REPO, endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    assert fresh_hub.bytes_served(TINY_REPO) == served
    assert fresh_hub.requests("model_info") == 2


def test_snapshot_download_with_hf_endpoint_in_the_environment(hub_env: dict[str, str], tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from huggingface_hub import snapshot_download\n"
        "print(json.dumps(snapshot_download(sys.argv[1], cache_dir=sys.argv[2])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, TINY_REPO, str(tmp_path)],
        env=hub_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    snapshot = Path(json.loads(done.stdout.strip().splitlines()[-1]))
    assert (snapshot / "config.json").is_file()


def test_range_requests_answer_206_with_exactly_the_asked_bytes(fresh_hub: HubStandIn) -> None:
    url = f"{fresh_hub.url}/{TINY_REPO}/resolve/main/model.safetensors"
    whole = fresh_hub.file_bytes(TINY_REPO, "model.safetensors")
    meta = fresh_hub.files(TINY_REPO)["model.safetensors"]
    head = httpx.head(url)
    assert head.status_code == 200
    assert head.headers["x-repo-commit"] == fresh_hub.resolve(TINY_REPO)
    assert head.headers["etag"] == f'"{meta.sha256}"'
    assert head.headers["x-linked-etag"] == f'"{meta.sha256}"'
    assert int(head.headers["x-linked-size"]) == int(head.headers["content-length"]) == len(whole)
    assert head.headers["accept-ranges"] == "bytes"

    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    assert httpx.get(url, headers={"Range": "bytes=1000-"}).content == whole[1000:]
    assert httpx.get(url, headers={"Range": "bytes=-10"}).content == whole[-10:]
    assert httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}).status_code == 416
    assert fresh_hub.ranges(TINY_REPO, "model.safetensors")[0] == "bytes=100-199"


def test_small_files_carry_a_git_blob_etag_and_no_linked_headers(fresh_hub: HubStandIn) -> None:
    head = httpx.head(f"{fresh_hub.url}/{TINY_REPO}/resolve/main/config.json")
    assert head.headers["etag"] == f'"{fresh_hub.files(TINY_REPO)["config.json"].oid}"'
    assert "x-linked-etag" not in head.headers


def test_a_corrupted_file_is_served_with_bytes_that_miss_the_advertised_sha256(
    fresh_hub: HubStandIn, tmp_path: Path
) -> None:
    fresh_hub.corrupt(TINY_REPO, "model.safetensors", at_byte=4096)
    path = Path(
        hf_hub_download(TINY_REPO, "model.safetensors", endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    )
    meta = fresh_hub.files(TINY_REPO)["model.safetensors"]
    assert path.stat().st_size == meta.size
    assert sha256_of(path) != meta.sha256


def test_a_slow_file_is_served_at_the_configured_rate(fresh_hub: HubStandIn) -> None:
    fresh_hub.slow(TINY_REPO, "tokenizer.json", bytes_per_second=40_000)  # ~23 kB -> ~0.5 s
    began = time.monotonic()
    body = httpx.get(f"{fresh_hub.url}/{TINY_REPO}/resolve/main/tokenizer.json").content
    assert time.monotonic() - began >= 0.4
    assert body == fresh_hub.file_bytes(TINY_REPO, "tokenizer.json")


def test_a_held_file_stops_after_its_bytes_until_the_test_releases_it(fresh_hub: HubStandIn) -> None:
    expected = fresh_hub.file_bytes(TINY_REPO, "tokenizer.json")
    fresh_hub.hold(TINY_REPO, "tokenizer.json", after_bytes=1000)
    url = f"{fresh_hub.url}/{TINY_REPO}/resolve/main/tokenizer.json"
    received: list[bytes] = []
    with httpx.stream("GET", url, timeout=30) as response:
        chunks = response.iter_raw()
        while sum(map(len, received)) < 1000:
            received.append(next(chunks))
        fresh_hub.wait_until_held(TINY_REPO, "tokenizer.json", timeout=10)
        assert sum(map(len, received)) == 1000 and fresh_hub.bytes_served(TINY_REPO, "tokenizer.json") == 1000
        fresh_hub.release(TINY_REPO, "tokenizer.json")
        received.extend(chunks)
    assert b"".join(received) == expected
    assert fresh_hub.held(TINY_REPO, "tokenizer.json") == 0
    assert httpx.get(url, timeout=10).content == expected  # released: new GETs are not held


def test_holds_can_be_set_and_released_over_http(fresh_hub: HubStandIn) -> None:
    control = f"{fresh_hub.url}/_stand_in/holds"
    assert httpx.post(control, json={"repo": TINY_REPO, "path": "config.json"}).status_code == 204
    assert httpx.get(control).json() == [{"repo": TINY_REPO, "path": "config.json", "after_bytes": 0, "paused": 0}]
    assert httpx.delete(control).status_code == 204
    assert httpx.get(control).json() == []


def test_an_injected_failure_answers_its_status_once(fresh_hub: HubStandIn) -> None:
    fresh_hub.fail(TINY_REPO, "config.json", status=503)
    url = f"{fresh_hub.url}/{TINY_REPO}/resolve/main/config.json"
    assert httpx.get(url).status_code == 503
    assert httpx.get(url).status_code == 200


def test_a_gated_repo_needs_an_accepted_token(fresh_hub: HubStandIn, tmp_path: Path) -> None:
    repo = "llf-test/gated-tiny"
    fresh_hub.add_tiny_model(repo, gated=True)
    fresh_hub.require_token("hf_good_token")
    assert api(fresh_hub).model_info(repo).gated == "manual"  # metadata is public, like on the Hub

    with pytest.raises(GatedRepoError) as anonymous:
        snapshot_download(repo, endpoint=fresh_hub.url, cache_dir=tmp_path / "a", token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong:
        hf_hub_download(repo, "config.json", endpoint=fresh_hub.url, cache_dir=tmp_path / "b", token="hf_wrong")
    assert wrong.value.response.status_code == 403

    snapshot = snapshot_download(repo, endpoint=fresh_hub.url, cache_dir=tmp_path / "c", token="hf_good_token")
    assert_snapshot_matches_hub_metadata(fresh_hub, repo, "main", Path(snapshot))
    assert api(fresh_hub, token="hf_good_token").whoami()["name"] == "llf-tester"


def test_missing_repo_revision_and_file_raise_the_clients_own_errors(fresh_hub: HubStandIn, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api(fresh_hub).model_info("llf-test/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("llf-test/does-not-exist", endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    with pytest.raises(RevisionNotFoundError):
        api(fresh_hub).model_info(TINY_REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(TINY_REPO, revision="no-such-branch", endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(TINY_REPO, revision="0" * 40, endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(TINY_REPO, "missing.bin", endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    assert (
        httpx.get(f"{fresh_hub.url}/llf-test/does-not-exist/resolve/main/x").headers["x-error-code"] == "RepoNotFound"
    )


def test_tree_listing_and_paths_info_cover_subfolders(fresh_hub: HubStandIn) -> None:
    repo = "llf-test/nested"
    sha = fresh_hub.add_repo(repo, {"a.txt": b"a", "sub/b.txt": b"b", "sub/deep/c.bin": b"c" * 10}, branch="dev")
    client = api(fresh_hub)
    top = {(e.path, type(e).__name__) for e in client.list_repo_tree(repo, revision="dev")}
    assert top == {(".gitattributes", "RepoFile"), ("a.txt", "RepoFile"), ("sub", "RepoFolder")}
    everything = {e.path for e in client.list_repo_tree(repo, revision=sha, recursive=True)}
    assert {"sub/deep", "sub/deep/c.bin", "sub/b.txt"} <= everything
    inside = [e.path for e in client.list_repo_tree(repo, path_in_repo="sub", revision="dev")]
    assert sorted(inside) == ["sub/b.txt", "sub/deep"]
    infos = client.get_paths_info(repo, ["sub/deep/c.bin", "nope"], revision="dev")
    assert [(i.path, getattr(i, "lfs", None) is not None) for i in infos] == [("sub/deep/c.bin", True)]
    refs = client.list_repo_refs(repo)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("dev", sha)]


def test_a_large_file_interrupted_mid_download_is_resumed_by_the_client_with_a_range(
    fresh_hub: HubStandIn, tmp_path: Path
) -> None:
    repo = "llf-test/large"
    size = 24 * 1024 * 1024 + 7
    fresh_hub.add_tiny_model(repo)
    fresh_hub.add_large_file(repo, "extra/blob.bin", size, seed=3)
    meta = fresh_hub.files(repo)["extra/blob.bin"]
    assert meta.lfs and meta.size == size
    assert "model.safetensors" in fresh_hub.files(repo)  # the large file was added on top

    # huggingface_hub reads in 10 MiB chunks and resumes from the last whole chunk it wrote.
    fresh_hub.interrupt(repo, "extra/blob.bin", after_bytes=15 * 1024 * 1024)
    path = hf_hub_download(repo, "extra/blob.bin", endpoint=fresh_hub.url, cache_dir=tmp_path, token=False)
    assert sha256_of(Path(path)) == meta.sha256
    assert fresh_hub.gets(repo, "extra/blob.bin") == 2
    (resumed,) = fresh_hub.ranges(repo, "extra/blob.bin")
    assert resumed.startswith("bytes=") and int(resumed.removeprefix("bytes=").rstrip("-")) > 0


def test_the_command_line_serves_the_same_shas_after_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "hub"

    def serve_once() -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.hub", "--root", str(root), "--tiny", "cli/tiny@2"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("hub stand-in serving "), line
            url = line.split()[3]
            sha = HfApi(endpoint=url, token=False).model_info("cli/tiny").sha
            assert sha is not None
            return sha
        finally:
            process.terminate()
            process.wait(15)

    assert serve_once() == serve_once()
