"""Wire validators: repo ids and revisions can never name a path outside the model store."""

from __future__ import annotations

import pytest
from llf_common.wire import (
    JOB_STATES,
    TERMINAL_JOB_STATES,
    UNSUCCESSFUL_JOB_STATES,
    GatewayStatus,
    ImportRequest,
    JobInfo,
    ModelInfo,
    PullRequest,
    PullResponse,
    ServeRequest,
    check_repo_id,
    check_revision,
)
from pydantic import ValidationError

GOOD_REPO_IDS = [
    "Qwen/Qwen2.5-0.5B-Instruct",
    "meta-llama/Llama-3.2-1B",
    "TheBloke/Mistral-7B-v0.1-GGUF",
    "a/b",
    "user_1/model_x",
    "llf-test/tiny-llama",
]
BAD_REPO_IDS = [
    "",
    "name-only",
    "a/b/c",
    "../etc/passwd",
    "a/../b",
    "owner/..",
    "../b",
    "/abs/path",
    "owner/name/",
    "/owner/name",
    "C:\\models\\x",
    "owner\\name",
    "owner/na me",
    "owner/name\n",
    "owner/name\x00",
    " owner/name",
    "ünï/cödé",
    "owner/mödel",
    "owner/名前",
    "-owner/name",
    "owner/name-",
    "owner/name.",
    "." + "/name",
    "a" * 10_000,
    "a" * 5_000 + "/" + "b" * 5_000,
    "a" * 97 + "/b",
]


@pytest.mark.parametrize("repo_id", GOOD_REPO_IDS)
def test_hub_style_repo_ids_pass(repo_id: str) -> None:
    assert check_repo_id(repo_id) == repo_id
    assert PullRequest(repo=repo_id).repo == repo_id


@pytest.mark.parametrize("repo_id", BAD_REPO_IDS, ids=lambda v: repr(v)[:40])
def test_repo_ids_that_are_not_owner_slash_name_are_rejected(repo_id: str) -> None:
    with pytest.raises(ValueError, match="owner/name"):
        check_repo_id(repo_id)
    with pytest.raises(ValidationError):
        PullRequest(repo=repo_id)


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "a" * 40, "release_2024-01"])
def test_branches_tags_and_shas_are_valid_revisions(revision: str) -> None:
    assert check_revision(revision) == revision


@pytest.mark.parametrize(
    "revision",
    ["", "../main", "main/..", "/main", "a//b", "main\n", "ma in", "mäin", "-main", "x" * 201, "r" * 10_000],
    ids=lambda v: repr(v)[:30],
)
def test_revisions_that_could_escape_or_confuse_are_rejected(revision: str) -> None:
    with pytest.raises(ValueError, match="revision"):
        check_revision(revision)


def test_requests_reject_unknown_keys_so_typos_do_not_pass_silently() -> None:
    with pytest.raises(ValidationError, match="revison"):
        PullRequest.model_validate({"repo": "a/b", "revison": "dev"})


def test_pull_requests_default_to_main_and_bound_their_patterns() -> None:
    assert PullRequest(repo="a/b").revision == "main"
    with pytest.raises(ValidationError):
        PullRequest(repo="a/b", allow_patterns=["*"] * 65)
    with pytest.raises(ValidationError):
        PullRequest(repo="a/b", allow_patterns=["x" * 201])


def test_serve_and_import_requests_validate_their_names() -> None:
    assert ServeRequest(model="a/b").replicas == 1
    with pytest.raises(ValidationError):
        ServeRequest(model="../x")
    with pytest.raises(ValidationError):
        ServeRequest(model="a/b", replicas=0)
    with pytest.raises(ValidationError):
        ImportRequest(path="/data/x", name="a/../b")
    assert ImportRequest(path="/data/x").link is True


def test_replies_ignore_keys_a_newer_service_added() -> None:
    """A reader parses a newer writer's reply: keys are only ever added, never a reason to fail."""
    status = GatewayStatus.model_validate(
        {
            "state": "ready",
            "models": ["a/b"],
            "devices": [],
            "replicas": [{"id": "r", "model": "a/b", "state": "ready", "device": "cpu"}],
        }
    )
    assert status.models == ["a/b"] and status.replicas[0].model == "a/b"
    job = JobInfo.model_validate(
        {
            "id": "j",
            "kind": "pull",
            "repo": "a/b",
            "state": "started",
            "attempt": 2,
            "progress": {"phase": "download", "eta_s": 3},
        }
    )
    assert job.progress.phase == "download"
    model = ModelInfo.model_validate(
        {
            "name": "a/b",
            "revision": "main",
            "sha": "s",
            "path": "/p",
            "size_bytes": 1,
            "verified": True,
            "quantization": "awq",
            "files": [{"path": "config.json", "size": 1, "mtime": 0}],
        }
    )
    assert model.files[0].path == "config.json"
    pulled = PullResponse.model_validate({"state": "present", "repo": "a/b", "revision": "main", "sha": "s", "x": 1})
    assert pulled.state == "present"


def test_terminal_job_states_are_job_states_and_finished_is_the_only_success() -> None:
    assert TERMINAL_JOB_STATES <= JOB_STATES
    assert set(TERMINAL_JOB_STATES - UNSUCCESSFUL_JOB_STATES) == {"finished"}
    assert not {"queued", "started", "deferred", "scheduled"} & TERMINAL_JOB_STATES
