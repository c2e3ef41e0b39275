"""An imported directory is hostile input: it may hold links to secrets, link loops, private files.

A real API and worker: the import must fail on a link leading out of the directory (and no byte
of the linked file may reach the store), finish quickly on two links to ``.``, keep a private
file private, and refuse directories outside the configured ``import_roots``.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.hub import HubStandIn
from tests.support.registry import RegistryStack, wait_job

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-0123456789\n-----END OPENSSH PRIVATE KEY-----\n"


def model_dir(root: Path, tiny_model_dir: Path) -> Path:
    source = root / "model"
    source.mkdir(parents=True)
    for path in tiny_model_dir.iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    return source


def start_import(stack: RegistryStack, path: Path, name: str, link: bool = False) -> dict[str, Any]:
    answer = httpx.post(f"{stack.url}/v1/imports", json={"path": str(path), "name": name, "link": link}, timeout=30)
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def store_holds(stack: RegistryStack, data: bytes) -> list[Path]:
    return [p for p in stack.models_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.read_bytes() == data]


def test_an_import_with_a_link_to_a_private_key_fails_and_stores_no_byte_of_it(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn, tiny_model_dir: Path
) -> None:
    secret = tmp_path / "dot-ssh" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    source = model_dir(tmp_path, tiny_model_dir)
    (source / "tokenizer.model").symlink_to(secret)
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start()
        for link in (True, False):
            job = wait_job(stack.url, start_import(stack, source, "local/leaky", link)["id"], timeout=60)
            assert job["state"] == "failed", job
            assert "tokenizer.model links outside" in job["error"]
        assert store_holds(stack, SECRET) == []
        assert httpx.get(f"{stack.url}/v1/models/local/leaky", timeout=10).status_code == 404


def test_two_links_to_the_directory_itself_import_the_files_once_in_seconds(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn, tiny_model_dir: Path
) -> None:
    source = model_dir(tmp_path, tiny_model_dir)
    (source / "a").symlink_to(".")
    (source / "b").symlink_to(".")
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start()
        started = time.monotonic()
        job = wait_job(stack.url, start_import(stack, source, "local/loops")["id"], timeout=60)
        assert job["state"] == "finished", job
        assert time.monotonic() - started < 30
        model = httpx.get(f"{stack.url}/v1/models/local/loops", timeout=10).json()
        assert sorted(f["path"] for f in model["files"]) == sorted(p.name for p in tiny_model_dir.iterdir())


def test_a_copied_private_file_stays_private_in_the_store(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn, tiny_model_dir: Path
) -> None:
    source = model_dir(tmp_path, tiny_model_dir)
    private = source / "tokenizer.model"
    private.write_bytes(b"a tokenizer its owner keeps private")
    private.chmod(0o600)
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url)) as stack:
        stack.start()
        job = wait_job(stack.url, start_import(stack, source, "local/private", link=False)["id"], timeout=60)
        assert job["state"] == "finished", job
        model = httpx.get(f"{stack.url}/v1/models/local/private", timeout=10).json()
        blob = (Path(model["path"]) / "tokenizer.model").resolve()
        assert stat.S_IMODE(blob.stat().st_mode) == 0o600


def test_imports_from_outside_the_import_roots_are_refused(
    tmp_path: Path, redis_url: str, fresh_hub: HubStandIn, tiny_model_dir: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    source = model_dir(tmp_path / "elsewhere", tiny_model_dir)
    (allowed / "door").symlink_to(source)
    with RegistryStack(tmp_path / "r", redis_url=redis_url, hf_endpoint=str(fresh_hub.url),
                       env={"LLF_MODELS_IMPORT_ROOTS": json.dumps([str(allowed)])}) as stack:  # fmt: skip
        stack.start()
        for path in (source, allowed / "door", Path("/etc")):
            answer = httpx.post(f"{stack.url}/v1/imports", json={"path": str(path), "name": "local/x"}, timeout=30)
            assert answer.status_code == 403, f"{path}: {answer.status_code} {answer.text}"
        assert httpx.get(f"{stack.url}/v1/jobs", timeout=10).json() == []
