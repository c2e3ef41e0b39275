"""Every ``llf`` command except chat, against faked services: human output, --json, errors."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from llf_cli.main import State, cli

from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakes import (
    GATEWAY,
    MODEL,
    REGISTRY,
    Fake,
    gateway_status,
    job_info,
    model_info,
    no_ansi,
    pull_response,
    sse,
)

JOBS = f"{REGISTRY}/v1/jobs"
MODELS = f"{REGISTRY}/v1/models"


def progress_events() -> list[dict[str, object]]:
    return [
        job_info("started", phase="preflight", done=0),
        job_info("started", phase="download", done=700_000),
        job_info("started", phase="download", done=1_900_000),
        job_info("started", phase="verify", done=2_500_000),
        job_info("finished"),
    ]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("chat", "pull", "models", "jobs", "serve", "status", "config"):
        assert command in result.output
    models_help = CliRunner().invoke(cli, ["models", "--help"]).output
    assert all(sub in models_help for sub in ("ls", "info", "rm", "verify", "import"))


def test_version_is_the_installed_packages() -> None:
    """``--version`` and ``-V`` print the version pip/uv installed, not a string that drifted from it."""
    expected = f"llf, version {importlib.metadata.version('llf-cli')}\n"
    for flag in ("--version", "-V"):
        result = CliRunner().invoke(cli, [flag])
        assert (result.exit_code, result.output) == (0, expected)


# ---------------------------------------------------------------- models
def test_models_ls_prints_a_table_without_colour_codes(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, httpx.Response(200, json=[model_info(), model_info("local/other", verified=False)]))
    result = llf("models", "ls")
    assert result.exit_code == 0, result.output
    assert "NAME" in result.output and MODEL in result.output and "local/other" in result.output
    assert "2.5 MB" in result.output and "main (0123456)" in result.output
    assert no_ansi(result)
    assert not any(line != line.rstrip() for line in result.output.splitlines())


def test_models_ls_json_prints_the_registry_data_unchanged(llf: Invoke, fake: Fake) -> None:
    data = [model_info()]
    fake.on("GET", MODELS, httpx.Response(200, json=data))
    result = llf("models", "ls", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == data


def test_models_ls_with_no_models_says_how_to_get_one(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, httpx.Response(200, json=[]))
    assert "llf pull" in llf("models", "ls").output


def test_models_info_shows_the_details_and_json(llf: Invoke, fake: Fake) -> None:
    info = model_info(warnings=["tokenizer missing"], architecture_supported=False)
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=info))
    result = llf("models", "info", MODEL)
    assert result.exit_code == 0
    assert "context length" in result.output and "2048" in result.output
    assert "not supported" in result.output and "warning: tokenizer missing" in result.output
    assert json.loads(llf("models", "info", MODEL, "--json").output) == info


def test_models_info_of_an_unknown_model_is_the_registry_detail_and_exit_1(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{MODELS}/acme/nope", httpx.Response(404, json={"detail": "model acme/nope is not in the store"}))
    result = llf("models", "info", "acme/nope")
    assert result.exit_code == 1
    assert result.output == "error: model acme/nope is not in the store\n"


@pytest.mark.parametrize("command", [("models", "info"), ("models", "rm", "-y"), ("models", "verify"), ("serve",)])
def test_a_malformed_model_name_fails_before_any_request(llf: Invoke, fake: Fake, command: tuple[str, ...]) -> None:
    result = llf(*command, "just-a-name")
    assert result.exit_code == 1
    assert result.output.startswith("error: invalid model name 'just-a-name': repo id must look like 'owner/name'")
    assert fake.requests == []


def test_models_rm_with_yes_deletes_without_asking(llf: Invoke, fake: Fake) -> None:
    fake.on("DELETE", f"{MODELS}/{MODEL}", httpx.Response(204))
    result = llf("models", "rm", MODEL, "-y")
    assert result.exit_code == 0 and f"removed {MODEL}" in result.output
    assert fake.paths() == [f"DELETE /v1/models/{MODEL}"]


def test_models_rm_asks_first_and_a_no_keeps_the_model(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("DELETE", f"{MODELS}/{MODEL}", httpx.Response(204))
    declined = llf("models", "rm", MODEL, input="n\n")
    assert declined.exit_code == 1 and "2.5 MB" in declined.output
    assert not fake.sent("DELETE", f"/v1/models/{MODEL}")
    accepted = llf("models", "rm", MODEL, input="y\n")
    assert accepted.exit_code == 0 and fake.sent("DELETE", f"/v1/models/{MODEL}")


def test_models_rm_of_a_served_model_shows_the_conflict(llf: Invoke, fake: Fake) -> None:
    fake.on("DELETE", f"{MODELS}/{MODEL}", httpx.Response(409, json={"detail": f"{MODEL} is being served"}))
    result = llf("models", "rm", MODEL, "--yes")
    assert result.exit_code == 1 and f"{MODEL} is being served" in result.output


def test_models_rm_force_asks_the_registry_to_cancel_jobs_and_skip_an_unsure_gateway(llf: Invoke, fake: Fake) -> None:
    fake.on("DELETE", f"{MODELS}/{MODEL}", httpx.Response(204))
    result = llf("models", "rm", MODEL, "--yes", "--force")
    assert result.exit_code == 0 and f"removed {MODEL}" in result.output
    assert fake.paths() == [f"DELETE /v1/models/{MODEL}"]
    assert fake.requests[0].url.params.get("force") == "true"


def test_models_verify_follows_the_job_and_reports_success(llf: Invoke, fake: Fake) -> None:
    job = job_info("queued", kind="verify", phase="waiting", done=0)
    fake.on("POST", f"{MODELS}/{MODEL}/verify", httpx.Response(202, json=job))
    fake.on(
        "GET",
        f"{JOBS}/job-1/events",
        sse(
            [
                job_info("started", kind="verify", phase="verify", done=10),
                job_info("finished", kind="verify", result={"verified": True}),
            ]
        ),
    )
    result = llf("models", "verify", MODEL)
    assert result.exit_code == 0, result.output
    assert "verifying" in result.output and f"✓ {MODEL} verified" in result.output
    assert no_ansi(result)


def test_models_verify_json_prints_the_final_job(llf: Invoke, fake: Fake) -> None:
    final = job_info("finished", kind="verify", result={"verified": True})
    fake.on("POST", f"{MODELS}/{MODEL}/verify", httpx.Response(202, json=job_info("queued", kind="verify")))
    fake.on("GET", f"{JOBS}/job-1/events", sse([final]))
    result = llf("models", "verify", MODEL, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == final


def test_models_verify_mismatch_exits_1(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{MODELS}/{MODEL}/verify", httpx.Response(202, json=job_info("queued", kind="verify")))
    fake.on(
        "GET",
        f"{JOBS}/job-1/events",
        sse([job_info("finished", kind="verify", result={"verified": False, "error": "sha mismatch"})]),
    )
    result = llf("models", "verify", MODEL)
    assert result.exit_code == 1 and "did not verify: sha mismatch" in result.output


def test_models_verify_detach_prints_only_the_job_id(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{MODELS}/{MODEL}/verify", httpx.Response(202, json=job_info("queued", kind="verify")))
    result = llf("models", "verify", MODEL, "--detach")
    assert result.exit_code == 0 and result.stdout == "job-1\n"


def test_models_import_sends_an_absolute_path_and_follows_the_job(
    llf: Invoke, fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    job = job_info("queued", kind="import", repo="local/tiny")
    fake.on("POST", f"{REGISTRY}/v1/imports", httpx.Response(202, json=job))
    fake.on("GET", f"{JOBS}/job-1/events", sse([job_info("finished", kind="import", repo="local/tiny")]))
    result = llf("models", "import", "tiny", "--name", "local/tiny", "--copy")
    assert result.exit_code == 0, result.output
    assert fake.body("POST", "/v1/imports") == {"path": str(tmp_path / "tiny"), "name": "local/tiny", "link": False}
    assert "✓ imported local/tiny" in result.output


def test_models_import_with_a_bad_name_fails_before_any_request(llf: Invoke, fake: Fake) -> None:
    result = llf("models", "import", "/somewhere", "--name", "../etc")
    assert result.exit_code == 1 and "invalid name" in result.output
    assert fake.requests == []


# ---------------------------------------------------------------- pull
def test_pull_shows_plain_progress_lines_and_ends_verified(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on("GET", f"{JOBS}/job-1/events", sse(progress_events()))
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    result = llf("pull", MODEL)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"pulling {MODEL}@main (job job-1)"
    assert any(line.startswith("downloading") and "28%" in line and "1.0 MB/s" in line for line in lines)
    assert any(line.startswith("verifying") for line in lines)
    assert len(lines) <= 10
    assert result.stdout == f"✓ {MODEL} pulled (0123456, 2.5 MB, verified)\n"
    assert no_ansi(result)


def test_pull_sends_revision_and_file_patterns(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    llf(
        "pull",
        MODEL,
        "-r",
        "v1.0",
        "--include",
        "*.json",
        "--include",
        "*.safetensors",
        "--exclude",
        "*.bin",
        "--detach",
    )
    assert fake.body("POST", "/v1/pulls") == {
        "repo": MODEL,
        "revision": "v1.0",
        "allow_patterns": ["*.json", "*.safetensors"],
        "ignore_patterns": ["*.bin"],
    }


def test_pull_detach_prints_the_job_id(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    result = llf("pull", MODEL, "--detach")
    assert result.exit_code == 0 and result.stdout == "job-1\n"


def test_pull_detach_json_prints_the_pull_response(llf: Invoke, fake: Fake) -> None:
    reply = pull_response()
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=reply))
    assert json.loads(llf("pull", MODEL, "-d", "--json").stdout) == reply


def test_pull_json_prints_the_pull_response_with_the_final_job(llf: Invoke, fake: Fake) -> None:
    reply = pull_response()
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=reply))
    fake.on("GET", f"{JOBS}/job-1/events", sse(progress_events()))
    result = llf("pull", MODEL, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {**reply, "job": job_info("finished")}
    assert result.stderr == ""


def test_pull_of_a_present_model_says_so(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(200, json=pull_response("present")))
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    result = llf("pull", MODEL)
    assert result.exit_code == 0 and "already present" in result.stdout
    assert llf("pull", MODEL, "--detach").stderr == f"{MODEL} is already present\n"


def test_pull_that_fails_prints_the_job_error_and_exits_1(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on("GET", f"{JOBS}/job-1/events", sse([job_info("failed", phase="download", error="disk full")]))
    result = llf("pull", MODEL)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"error: pull of {MODEL} failed: disk full"


def test_pull_canceled_elsewhere_exits_1(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on("GET", f"{JOBS}/job-1/events", sse([job_info("canceled")]))
    result = llf("pull", MODEL)
    assert result.exit_code == 1 and "was canceled" in result.output


def test_pull_when_the_hub_is_unreachable_says_how_to_fix_it(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(502, json={"detail": "cannot reach the hub"}))
    result = llf("pull", MODEL)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "HF_ENDPOINT" in result.output and "llf models import" in result.output and "make up" in result.output


def test_pull_with_an_invalid_repo_id_fails_before_any_request(llf: Invoke, fake: Fake) -> None:
    result = llf("pull", "not-a-repo")
    assert result.exit_code == 1 and result.output.startswith("error: invalid repo: repo id must look like")
    assert fake.requests == []


def test_ctrl_c_during_a_pull_detaches_and_says_how_to_reattach(llf: Invoke, fake: Fake) -> None:
    def interrupted() -> Iterator[bytes]:
        yield f"data: {json.dumps(job_info('started', phase='download', done=10))}\n\n".encode()
        raise KeyboardInterrupt

    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on(
        "GET",
        f"{JOBS}/job-1/events",
        httpx.Response(200, headers={"content-type": "text/event-stream"}, content=interrupted()),
    )
    result = llf("pull", MODEL)
    assert result.exit_code == 130
    assert "llf jobs watch job-1" in result.output and "llf jobs cancel job-1" in result.output
    assert "error" not in result.output and not fake.sent("DELETE", "/v1/jobs/job-1")


def test_pull_falls_back_to_polling_when_the_registry_has_no_event_stream(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on("GET", f"{JOBS}/job-1", *[httpx.Response(200, json=e) for e in progress_events()])
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    result = llf("pull", MODEL)
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout and len(fake.sent("GET", "/v1/jobs/job-1")) >= 5


def test_pull_falls_back_to_polling_when_the_event_stream_drops(llf: Invoke, fake: Fake) -> None:
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on("GET", f"{JOBS}/job-1/events", sse(progress_events()[:2]))
    fake.on("GET", f"{JOBS}/job-1", httpx.Response(200, json=job_info("finished")))
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    assert llf("pull", MODEL).exit_code == 0


# ---------------------------------------------------------------- jobs
def test_jobs_ls_table_and_json(llf: Invoke, fake: Fake) -> None:
    jobs = [job_info("started", phase="download", done=1_250_000), job_info("queued", job_id="job-2", position=0)]
    fake.on("GET", JOBS, httpx.Response(200, json=jobs))
    result = llf("jobs", "ls")
    assert result.exit_code == 0
    assert "job-1" in result.output and "50%" in result.output and "job-2" in result.output
    assert json.loads(llf("jobs", "ls", "--json").output) == jobs


def test_jobs_ls_when_empty(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", JOBS, httpx.Response(200, json=[]))
    assert llf("jobs", "ls").output == "no jobs\n"


def test_jobs_show_details_and_json(llf: Invoke, fake: Fake) -> None:
    job = job_info("failed", error="hub said 401", warnings=["slow mirror"], result={"files": 2})
    fake.on("GET", f"{JOBS}/job-1", httpx.Response(200, json=job))
    result = llf("jobs", "show", "job-1")
    assert result.exit_code == 0
    assert (
        "hub said 401" in result.output
        and "warning: slow mirror" in result.output
        and "model.safetensors" in result.output
    )
    assert json.loads(llf("jobs", "show", "job-1", "--json").output) == job


def test_jobs_show_unknown_is_404_detail(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{JOBS}/nope", httpx.Response(404, json={"detail": "no job nope"}))
    result = llf("jobs", "show", "nope")
    assert (result.exit_code, result.output) == (1, "error: no job nope\n")


def test_jobs_cancel_prints_the_new_state_and_json(llf: Invoke, fake: Fake) -> None:
    fake.on("DELETE", f"{JOBS}/job-1", httpx.Response(200, json=job_info("canceled")))
    result = llf("jobs", "cancel", "job-1", "--purge")
    assert result.exit_code == 0 and result.output == "job-1: canceled\n"
    assert fake.sent("DELETE", "/v1/jobs/job-1")[0].url.params["purge"] == "true"
    assert json.loads(llf("jobs", "cancel", "job-1", "--json").output)["state"] == "canceled"


def test_jobs_watch_follows_to_the_end(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{JOBS}/job-1", httpx.Response(200, json=job_info("started", phase="download", done=1)))
    fake.on("GET", f"{JOBS}/job-1/events", sse(progress_events()))
    result = llf("jobs", "watch", "job-1")
    assert result.exit_code == 0 and f"✓ pull of {MODEL} finished" in result.output
    assert json.loads(llf("jobs", "watch", "job-1", "--json").stdout)["state"] == "finished"


def test_jobs_watch_of_a_finished_job_returns_at_once(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{JOBS}/job-1", httpx.Response(200, json=job_info("finished")))
    assert llf("jobs", "watch", "job-1").exit_code == 0
    assert not fake.sent("GET", "/v1/jobs/job-1/events")


def test_jobs_watch_of_an_unknown_job_is_exit_1(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{JOBS}/gone", httpx.Response(404, json={"detail": "no job gone"}))
    assert llf("jobs", "watch", "gone").exit_code == 1


# ---------------------------------------------------------------- serve / status / config
def test_serve_waits_until_the_model_is_ready(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(MODEL)))
    result = llf("serve", MODEL)
    assert result.exit_code == 0 and f"✓ serving {MODEL}" in result.output
    assert fake.body("POST", "/v1/serve") == {"model": MODEL, "replicas": 1, "wait": True}


def test_serve_runner_pooling_asks_for_a_pooling_engine(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(MODEL)))
    result = llf("serve", MODEL, "--runner", "pooling", "--convert", "embed")
    assert result.exit_code == 0, result.output
    body = fake.body("POST", "/v1/serve")
    assert body == {"model": MODEL, "replicas": 1, "wait": True, "runner": "pooling", "convert": "embed"}
    assert llf("serve", MODEL, "--runner", "sideways").exit_code == 2


def test_serve_polls_the_status_when_the_gateway_answers_before_ready(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(state="starting", target=MODEL)))
    fake.on(
        "GET",
        f"{GATEWAY}/v1/status",
        httpx.Response(200, json=gateway_status(state="switching")),
        httpx.Response(200, json=gateway_status(MODEL)),
    )
    result = llf("serve", MODEL, "--json", "--replicas", "2")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == gateway_status(MODEL)
    assert fake.body("POST", "/v1/serve")["replicas"] == 2


def test_serve_no_wait_returns_at_once(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(state="starting")))
    result = llf("serve", MODEL, "--no-wait")
    assert result.exit_code == 0 and "llf status" in result.output
    assert fake.body("POST", "/v1/serve")["wait"] is False


def test_serve_of_a_model_not_downloaded_says_to_pull_it(llf: Invoke, fake: Fake) -> None:
    result = llf("serve", MODEL)
    assert result.exit_code == 1 and f"llf pull {MODEL}" in result.output
    assert not fake.sent("POST", "/v1/serve")


def test_serve_that_fails_shows_the_engine_error(llf: Invoke, fake: Fake) -> None:
    failed = gateway_status(state="failed")
    failed["replicas"] = [{"id": "r0", "model": MODEL, "state": "failed", "last_error": "CUDA out of memory"}]
    fake.on("GET", f"{MODELS}/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=failed))
    result = llf("serve", MODEL)
    assert result.exit_code == 1 and "could not serve" in result.output and "CUDA out of memory" in result.output


def test_status_shows_services_and_replicas(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok"}))
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=gateway_status(MODEL)))
    result = llf("status")
    assert result.exit_code == 0, result.output
    for text in ("registry", "up", MODEL, "r0", "4242", "12.5", "1m15s", "2048"):
        assert text in result.output
    assert no_ansi(result)


def test_status_json_is_the_gateway_status_unchanged(llf: Invoke, fake: Fake) -> None:
    status = gateway_status(MODEL)
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok"}))
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=status))
    assert json.loads(llf("status", "--json").output) == status


def test_status_with_the_registry_down_shows_it_and_exits_2(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=gateway_status()))
    fake.on("GET", f"{REGISTRY}/healthz", lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused")))
    result = llf("status")
    assert result.exit_code == 2
    assert "DOWN" in result.output and f"cannot reach the registry at {REGISTRY}" in result.output


def test_status_with_the_gateway_down_exits_2(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok"}))
    fake.on("GET", f"{GATEWAY}/v1/status", lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused")))
    result = llf("status")
    assert result.exit_code == 2 and "gateway   http://gateway.test  DOWN" in result.output
    json_result = llf("status", "--json")
    assert json_result.exit_code == 2 and json_result.stdout == ""


def test_config_show_masks_the_api_key(llf: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_API_KEY", "sekrit")
    result = llf("config", "show", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["api_key"] == "**********" and data["models_url"] == REGISTRY and data["temperature"] == 0.7
    human = llf("config", "show")
    assert "sekrit" not in human.output and "config file:" in human.output and "not present" in human.output


def test_config_file_cli_section_sets_chat_defaults(
    llf: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"cli": {"temperature": 0.2, "history_file": "~/hist"}}))
    monkeypatch.setenv("LLF_CONFIG", str(config))
    data = json.loads(llf("config", "show", "--json").output)
    assert data["temperature"] == 0.2 and data["history_file"].endswith("/hist")
    assert "found" in llf("config", "show").output


def test_invalid_config_is_one_line_and_exit_2(llf: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"cli": {"temperature": "hot"}}))
    monkeypatch.setenv("LLF_CONFIG", str(config))
    result = llf("models", "ls")
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1 and "cli.temperature" in result.output


# ---------------------------------------------------------------- errors and headers
def test_unreachable_registry_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    state = State(transport=httpx.MockTransport(refuse), models_url=REGISTRY)
    result = CliRunner().invoke(cli, ["models", "ls"], obj=state)
    assert result.exit_code == 2
    assert result.output == f"error: cannot reach the registry at {REGISTRY} — is the stack running? try `make up`\n"


def test_a_timeout_is_exit_2(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow")))
    result = llf("models", "ls")
    assert result.exit_code == 2 and "did not answer in time" in result.output


def test_a_server_error_names_the_request_id(llf: Invoke, fake: Fake) -> None:
    fake.on(
        "GET",
        MODELS,
        httpx.Response(500, json={"detail": "internal error; see the service log"}, headers={"X-Request-ID": "abc123"}),
    )
    result = llf("models", "ls")
    assert result.exit_code == 1
    assert "registry failed (500): internal error; see the service log [request id abc123]" in result.output


def test_requests_carry_the_api_key_and_a_request_id(llf: Invoke, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_API_KEY", "sekrit")
    fake.on("GET", MODELS, httpx.Response(200, json=[]))
    llf("models", "ls")
    request = fake.requests[0]
    assert request.headers["Authorization"] == "Bearer sekrit"
    assert request.headers["X-Request-ID"].startswith("cli-")


def test_no_api_key_sends_no_authorization(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, httpx.Response(200, json=[]))
    llf("models", "ls")
    assert "Authorization" not in fake.requests[0].headers


def test_a_wrong_api_key_shows_the_401_detail(llf: Invoke, fake: Fake) -> None:
    detail = "missing or wrong API key: send 'Authorization: Bearer $LLF_API_KEY'"
    fake.on("GET", MODELS, httpx.Response(401, json={"detail": detail}))
    assert llf("models", "ls").output == f"error: {detail}\n"


def test_an_unexpected_failure_is_one_line_without_traceback(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, httpx.Response(200, json={"not": "a list"}))
    result = llf("models", "ls")
    assert result.exit_code == 1
    assert result.output.startswith("error: unexpected") and "LLF_DEBUG=1" in result.output
    assert "Traceback" not in result.output


def test_llf_debug_shows_the_traceback(
    llf: Invoke, fake: Fake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLF_DEBUG", "1")
    fake.on("GET", MODELS, httpx.Response(200, json={"not": "a list"}))
    result = llf("models", "ls")
    assert result.exit_code == 1 and isinstance(result.exception, AttributeError)
    fake.on("GET", f"{MODELS}/acme/x", httpx.Response(404, json={"detail": "nope"}))
    result = llf("models", "info", "acme/x")
    assert result.exit_code == 1 and "Traceback" in result.output


def test_a_reply_that_is_not_json_is_one_line(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, httpx.Response(200, content=b"<html>proxy</html>"))
    result = llf("models", "ls")
    assert result.exit_code == 1 and "not JSON" in result.output


def test_error_text_replies_and_validation_lists_are_readable(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", MODELS, httpx.Response(400, content=b"plain words"))
    assert llf("models", "ls").output == "error: plain words\n"
    fake.on("GET", JOBS, httpx.Response(422, json={"detail": [{"msg": "bad field"}, "other"]}))
    assert llf("jobs", "ls").output == "error: bad field; other\n"
    fake.on("GET", f"{JOBS}/x", httpx.Response(400, json={"error": {"message": "openai says no"}}))
    assert llf("jobs", "show", "x").output == "error: openai says no\n"
    fake.on("GET", f"{JOBS}/y", httpx.Response(400, json={"weird": 1}))
    assert llf("jobs", "show", "y").output == 'error: {"weird": 1}\n'
