"""The registry's HTTP API over the Registry use cases, with its seams replaced by fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from llf_common.wire import FileEntry
from llf_models.app import create_app
from llf_models.hub import HubNotFound, RemoteFile
from llf_models.registry import Registry
from llf_models.settings import ModelsSettings
from llf_models.store import Manifest, Store

from tests.unit.models.fakes import SHA, FakeGateway, FakeHub, FakeIndex, FakeJobs, FakeLocks, job


class World:
    def __init__(self, tmp_path: Path, api_key: str | None = None) -> None:
        self.settings = ModelsSettings.load(
            home=tmp_path, disk_margin_bytes=0, progress_interval_s=0.01, api_key=api_key
        )
        self.store = Store(self.settings.models_path)
        self.index = FakeIndex()
        self.jobs = FakeJobs()
        self.hub = FakeHub()
        self.gateway = FakeGateway()
        self.locks = FakeLocks()
        self.registry = Registry(self.settings, self.store, self.index, self.jobs, self.hub, self.gateway, self.locks)

    def add_model(self, repo: str = "o/n", verified: bool = True, sha: str = SHA) -> Manifest:
        manifest = Manifest(
            repo=repo,
            revision="main",
            sha=sha,
            files=[FileEntry(path="config.json", size=10, sha256="c" * 64)],
            blobs={"config.json": "b" * 40},
            total_bytes=10,
            verified_at=datetime.now(UTC) if verified else None,
        )
        self.store.write_manifest(manifest)
        self.index.put(manifest)
        return manifest


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings, world.registry)) as test_client:
        yield test_client


def test_startup_rebuilds_the_index_and_survives_redis_being_down(tmp_path: Path) -> None:
    world = World(tmp_path)
    with TestClient(create_app(world.settings, world.registry)):
        assert world.index.rebuilt == 1
    world.index.fail_rebuild = True
    with TestClient(create_app(world.settings, world.registry)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}


def test_pull_queues_a_job_and_identical_pulls_join_it(client: TestClient, world: World) -> None:
    first = client.post("/v1/pulls", json={"repo": "o/n"})
    assert first.status_code == 202
    body = first.json()
    assert body["state"] == "queued" and body["sha"] == SHA and body["job"]["kind"] == "pull"
    second = client.post("/v1/pulls", json={"repo": "o/n", "revision": "main"})
    assert second.json()["job_id"] == body["job_id"]
    assert len(world.jobs.calls) == 1
    func, kwargs = world.jobs.calls[0]
    assert func == "llf_models.jobs.pull" and kwargs["sha"] == SHA and kwargs["revision"] == "main"
    other = client.post("/v1/pulls", json={"repo": "o/n", "allow_patterns": ["*.json"]})
    assert other.json()["job_id"] != body["job_id"]


def test_pull_of_a_present_verified_model_answers_200_without_a_job(client: TestClient, world: World) -> None:
    world.add_model()
    response = client.post("/v1/pulls", json={"repo": "o/n"})
    assert response.status_code == 200
    assert response.json() == {
        "state": "present", "repo": "o/n", "revision": "main", "sha": SHA, "job_id": None, "job": None
    }  # fmt: skip
    assert world.jobs.calls == []


def test_pull_of_an_unverified_or_older_model_queues_a_job(client: TestClient, world: World) -> None:
    world.add_model(verified=False)
    assert client.post("/v1/pulls", json={"repo": "o/n"}).status_code == 202
    world.add_model(repo="o/m", sha="f" * 40)
    assert client.post("/v1/pulls", json={"repo": "o/m"}).status_code == 202


def test_pull_errors_from_the_hub_and_the_disk_are_clear(client: TestClient, world: World) -> None:
    world.hub.error = HubNotFound("repository o/n not found on the hub")
    response = client.post("/v1/pulls", json={"repo": "o/n"})
    assert response.status_code == 404 and response.json() == {"detail": "repository o/n not found on the hub"}
    world.hub.error = None
    world.hub.files = (RemoteFile("model.safetensors", 1 << 62, "d" * 64, "d" * 64, True),)
    full = client.post("/v1/pulls", json={"repo": "o/n"})
    assert full.status_code == 507 and "not enough disk space" in full.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [{"repo": "../etc"}, {"repo": "a/b/c"}, {"repo": "o/n", "revision": "../x"}, {"repo": "o/n", "x": 1}, {}],
)
def test_malformed_pull_requests_are_422_and_never_reach_the_hub(
    client: TestClient, world: World, body: dict[str, object]
) -> None:
    response = client.post("/v1/pulls", json=body)
    assert response.status_code == 422 and response.json()["detail"]
    assert world.hub.calls == 0


def test_models_are_listed_shown_and_flagged_when_served(client: TestClient, world: World) -> None:
    world.add_model("o/n")
    world.add_model("a/b")
    world.gateway.models = {"o/n"}
    listed = client.get("/v1/models").json()
    assert [(m["name"], m["served"]) for m in listed] == [("a/b", False), ("o/n", True)]
    one = client.get("/v1/models/o/n").json()
    assert one["verified"] and one["path"].endswith(f"models--o--n/snapshots/{SHA}")
    assert client.get("/v1/models/x/y").status_code == 404
    for bad in ("/v1/models/a..b/c", "/v1/models/x", "/v1/models/a/b/c"):
        assert client.get(bad).status_code == 422


def test_force_deletes_when_the_gateway_cannot_say_but_never_what_it_serves(client: TestClient, world: World) -> None:
    world.add_model()
    world.gateway.models = None
    assert client.delete("/v1/models/o/n?force=true").status_code == 204
    world.add_model()
    world.gateway.models = {"o/n"}
    assert client.delete("/v1/models/o/n?force=true").status_code == 409


@pytest.mark.parametrize("state", ["queued", "started", "scheduled", "deferred"])
def test_delete_is_refused_naming_the_job_while_one_for_the_repo_is_waiting_or_running(
    client: TestClient, world: World, state: str
) -> None:
    world.add_model()
    world.jobs.jobs["pull-o--n-1"] = job("pull-o--n-1", state)
    world.jobs.jobs["pull-x--y-1"] = job("pull-x--y-1", "started").model_copy(update={"repo": "x/y"})
    refused = client.delete("/v1/models/o/n")
    assert refused.status_code == 409
    assert "pull-o--n-1" in refused.json()["detail"] and "--force" in refused.json()["detail"]
    assert world.store.read_manifest("o/n") is not None
    assert world.jobs.jobs["pull-x--y-1"].state == "started"


def test_delete_with_force_cancels_the_repos_jobs_first(client: TestClient, world: World) -> None:
    world.add_model()
    world.jobs.jobs["pull-o--n-1"] = job("pull-o--n-1", "started")
    world.jobs.jobs["verify-o--n-1"] = job("verify-o--n-1", "queued").model_copy(update={"kind": "verify"})
    world.jobs.jobs["pull-x--y-1"] = job("pull-x--y-1", "queued").model_copy(update={"repo": "x/y"})
    assert client.delete("/v1/models/o/n?force=true").status_code == 204
    assert world.jobs.jobs["pull-o--n-1"].state == "stopped"
    assert world.jobs.jobs["verify-o--n-1"].state == "canceled"
    assert world.jobs.jobs["pull-x--y-1"].state == "queued"
    assert world.store.read_manifest("o/n") is None


def test_delete_with_force_is_still_refused_when_a_job_would_not_stop(client: TestClient, world: World) -> None:
    world.add_model()
    world.jobs.jobs["pull-o--n-1"] = job("pull-o--n-1", "started")
    world.jobs.cancel = lambda job_id: world.jobs.jobs[job_id]  # type: ignore[method-assign]
    world.settings.cancel_wait_s = 0.3
    refused = client.delete("/v1/models/o/n?force=true")
    assert refused.status_code == 409 and "pull-o--n-1" in refused.json()["detail"]
    assert world.store.read_manifest("o/n") is not None


def test_finished_and_failed_jobs_do_not_block_a_delete(client: TestClient, world: World) -> None:
    world.add_model()
    for state in ("finished", "failed", "stopped", "canceled"):
        world.jobs.jobs[f"pull-{state}"] = job(f"pull-{state}", state)
    assert client.delete("/v1/models/o/n").status_code == 204


def test_delete_is_refused_while_served_or_written_and_404_when_unknown(client: TestClient, world: World) -> None:
    world.add_model()
    world.gateway.models = {"o/n"}
    served = client.delete("/v1/models/o/n")
    assert served.status_code == 409 and "served" in served.json()["detail"]
    world.gateway.models = None  # the gateway cannot say (slow, 401, 5xx): not a yes
    unsure = client.delete("/v1/models/o/n")
    assert unsure.status_code == 503 and unsure.headers["retry-after"]
    assert "cannot confirm the gateway is not serving o/n" in unsure.json()["detail"]
    world.gateway.models = set()  # nothing listens: nothing served
    world.locks.busy.add("o/n")
    busy = client.delete("/v1/models/o/n")
    assert busy.status_code == 409 and "running job" in busy.json()["detail"]
    world.locks.busy.clear()
    assert client.delete("/v1/models/o/n").status_code == 204
    assert client.get("/v1/models/o/n").status_code == 404
    assert client.delete("/v1/models/o/n").status_code == 404


def test_verify_queues_a_job_for_a_known_model(client: TestClient, world: World) -> None:
    assert client.post("/v1/models/o/n/verify").status_code == 404
    world.add_model()
    response = client.post("/v1/models/o/n/verify")
    assert response.status_code == 202 and response.json()["kind"] == "verify"
    assert world.jobs.calls[-1] == ("llf_models.jobs.verify", {"repo": "o/n"})


def test_import_validates_the_path_and_the_name(client: TestClient, world: World, tmp_path: Path) -> None:
    model_dir = tmp_path / "My Model!"
    model_dir.mkdir()
    assert client.post("/v1/imports", json={"path": "relative"}).status_code == 422
    assert client.post("/v1/imports", json={"path": str(tmp_path / "missing")}).status_code == 404
    assert client.post("/v1/imports", json={"path": str(model_dir), "name": "../x"}).status_code == 422
    response = client.post("/v1/imports", json={"path": str(model_dir)})
    assert response.status_code == 202 and response.json()["repo"] == "local/My-Model"
    assert world.jobs.calls[-1] == (
        "llf_models.jobs.import_dir", {"path": str(model_dir), "name": "local/My-Model", "link": True}
    )  # fmt: skip


def test_imports_from_outside_the_import_roots_are_refused_before_any_job(client: TestClient, world: World) -> None:
    refused = client.post("/v1/imports", json={"path": "/etc"})
    assert refused.status_code == 403 and "import_roots" in refused.json()["detail"]
    assert world.jobs.calls == []


def test_jobs_are_listed_shown_and_404_when_unknown(client: TestClient, world: World) -> None:
    queued = client.post("/v1/pulls", json={"repo": "o/n"}).json()["job_id"]
    assert [j["id"] for j in client.get("/v1/jobs").json()] == [queued]
    assert client.get(f"/v1/jobs/{queued}").json()["state"] == "queued"
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get("/v1/jobs/nope/events").status_code == 404
    assert client.delete("/v1/jobs/nope").status_code == 404


def test_cancel_with_purge_removes_partials_only_once_the_job_stopped(client: TestClient, world: World) -> None:
    job_id = client.post("/v1/pulls", json={"repo": "o/n"}).json()["job_id"]
    partial = world.store.partial_path("o/n", "d" * 64)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")
    kept = client.delete(f"/v1/jobs/{job_id}").json()
    assert kept["state"] == "canceled" and partial.exists()
    purged = client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"}).json()
    assert purged["warnings"] == [] and not partial.exists()

    partial.write_bytes(b"half")
    world.jobs.jobs[job_id] = job(job_id, "started")
    world.jobs.cancel = lambda job_id: world.jobs.jobs[job_id]  # type: ignore[method-assign]
    world.settings.cancel_wait_s = 0.3
    still = client.delete(f"/v1/jobs/{job_id}?purge=true").json()
    assert "not stopped yet" in still["warnings"][0] and partial.exists()


def test_purge_keeps_partials_a_running_job_on_the_same_repo_writes(client: TestClient, world: World) -> None:
    job_id = client.post("/v1/pulls", json={"repo": "o/n"}).json()["job_id"]
    world.locks.busy.add("o/n")
    reply = client.delete(f"/v1/jobs/{job_id}?purge=true").json()
    assert "another job" in reply["warnings"][0]


def test_events_stream_each_change_until_the_job_ends(client: TestClient, world: World) -> None:
    world.jobs.jobs["j1"] = job("j1", "queued")
    world.jobs.script["j1"] = [
        job("j1", "queued"),
        job("j1", "started", 10),
        job("j1", "started", 10),
        job("j1", "started", 60),
        job("j1", "finished", 100),
    ]
    with client.stream("GET", "/v1/jobs/j1/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert [(d["state"], d["progress"]["bytes_done"]) for d in data] == [
        ("queued", 0),
        ("started", 10),
        ("started", 60),
        ("finished", 100),
    ]


def test_readyz_reports_each_dependency(client: TestClient, world: World) -> None:
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"redis": "ok", "models_dir": "ok"}}
    world.jobs.up = False
    down = client.get("/readyz")
    assert down.status_code == 503 and "redis: unreachable (ConnectionError)" in down.json()["detail"]


def test_api_key_guards_everything_but_health(tmp_path: Path) -> None:
    world = World(tmp_path, api_key="k3y")
    with TestClient(create_app(world.settings, world.registry)) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.post("/v1/pulls", json={"repo": "o/n"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer k3y"}).status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        assert client.get("/openapi.json").status_code == 401  # the document maps every route
        documented = client.get("/openapi.json", headers={"Authorization": "Bearer k3y"}).json()
        assert "/v1/pulls" in documented["paths"]
