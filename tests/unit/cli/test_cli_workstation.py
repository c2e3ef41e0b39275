"""``llf serve`` with replicas, GPUs and replace, ``llf stop``, and ``llf status`` of a multi-model workstation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakes import GATEWAY, MODEL, OTHER_MODEL, REGISTRY, Fake, gateway_status, model_info, placed_status

MODELS = f"{REGISTRY}/v1/models"
REFUSAL = "acme/huge needs 2 GPUs with ≥ 38 GiB each for tensor_parallel_size 2; free: GPU0 22 GiB, GPU1 9.5 GiB"


def downloaded(fake: Fake, *names: str) -> None:
    for name in names:
        fake.on("GET", f"{MODELS}/{name}", httpx.Response(200, json=model_info(name)))


def test_serve_adds_the_model_and_sends_only_what_was_asked(llf: Invoke, fake: Fake) -> None:
    downloaded(fake, OTHER_MODEL)
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(200, json=gateway_status(MODEL, OTHER_MODEL)))
    result = llf("serve", OTHER_MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"✓ serving {OTHER_MODEL}\n"
    assert fake.body("POST", "/v1/serve") == {"model": OTHER_MODEL, "replicas": 1, "wait": True}


def test_serve_replicas_auto_on_chosen_gpus_replacing_another_model(llf: Invoke, fake: Fake) -> None:
    downloaded(fake, OTHER_MODEL)
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(200, json=gateway_status(OTHER_MODEL)))
    result = llf("serve", OTHER_MODEL, "--replicas", "auto", "--gpus", "1,0", "--replace", MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"✓ serving {OTHER_MODEL} in place of {MODEL}\n"
    body = fake.body("POST", "/v1/serve")
    assert body == {"model": OTHER_MODEL, "replicas": "auto", "wait": True, "replace": MODEL, "gpus": [0, 1]}


def test_serve_rejects_bad_replicas_and_gpus_before_any_request(llf: Invoke, fake: Fake) -> None:
    for args, words in (
        (["--replicas", "0"], "'0' is not a number 1-16 or auto"),
        (["--replicas", "many"], "'many' is not a number 1-16 or auto"),
        (["--gpus", "0,x"], "'0,x' is not a list of GPU indices like 0,1"),
    ):
        result = llf("serve", MODEL, *args)
        assert result.exit_code == 2 and words in result.output, result.output
    assert fake.requests == []


def test_serve_that_fits_nowhere_is_one_line_and_exit_1(llf: Invoke, fake: Fake) -> None:
    downloaded(fake, "acme/huge")
    refusal = {"error": {"message": REFUSAL, "type": "insufficient_storage", "code": "does_not_fit"}}
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(507, json=refusal))
    waiting = "loading acme/huge (the first load takes a while) …\n"
    for args, before in (([], waiting), (["--json"], waiting), (["--no-wait"], "")):
        result = llf("serve", "acme/huge", *args)
        assert result.exit_code == 1
        assert result.stdout == "" and result.stderr == f"{before}error: {REFUSAL}\n"


def test_stop_unloads_one_model(llf: Invoke, fake: Fake) -> None:
    status = gateway_status(MODEL)
    fake.on("DELETE", f"{GATEWAY}/v1/serve/{OTHER_MODEL}", httpx.Response(200, json=status))
    result = llf("stop", OTHER_MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"✓ stopped {OTHER_MODEL}\n"
    assert json.loads(llf("stop", OTHER_MODEL, "--json").stdout) == status


def test_stop_of_a_model_not_loaded_is_the_gateways_line(llf: Invoke, fake: Fake) -> None:
    detail = {"error": {"message": f"{OTHER_MODEL} is not loaded (loaded: {MODEL})", "code": "model_not_found"}}
    fake.on("DELETE", f"{GATEWAY}/v1/serve/{OTHER_MODEL}", httpx.Response(404, json=detail))
    result = llf("stop", OTHER_MODEL)
    assert result.exit_code == 1 and result.stderr == f"error: {OTHER_MODEL} is not loaded (loaded: {MODEL})\n"
    assert llf("stop", "not-a-repo").stderr.startswith("error: invalid model name 'not-a-repo'")


def test_status_shows_each_model_its_state_and_each_device_and_what_it_holds(llf: Invoke, fake: Fake) -> None:
    status = placed_status()
    until = datetime.now(UTC) + timedelta(seconds=300.4)
    status["model_states"][0].update(keep_alive_s=300.0, until=until.isoformat())
    for replica in status["replicas"]:
        replica.update(tool_call_parser="hermes", runner="pooling" if replica["id"] == "r2" else "generate")
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok"}))
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=status))
    result = llf("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\n\n")[1:] == [
        "MODEL           STATE    REPLICAS  IN FLIGHT  WAITING  UNTIL\n"
        "acme/tiny-chat  loaded   2         1          0        in 5m00s\n"
        "acme/coder      loading  1         0          3        -",
        "REPLICA  MODEL           STATE     PID  PORT   UP   IN FLIGHT  TOK/S  RESTARTS  CONTEXT  TOOLS\n"
        "r0       acme/tiny-chat  ready     101  50001  30s  0          0.0    0         2048     hermes\n"
        "r1       acme/tiny-chat  ready     102  50002  30s  0          0.0    0         2048     hermes\n"
        "r2       acme/coder      starting  103  50003  30s  0          0.0    0         2048     pooling",
        "DEVICE                      REPLICA  MODEL           HOLDS\n"
        "GPU0                        r0       acme/tiny-chat  memory share 0.125\n"
        "GPU0 (tensor parallel 0,1)  r2       acme/coder      memory share 0.500\n"
        "GPU1                        r1       acme/tiny-chat  memory share 0.125\n"
        "GPU1 (tensor parallel 0,1)  r2       acme/coder      memory share 0.500\n",
    ]
    assert "state     loading\nserving   acme/tiny-chat\ntarget    acme/coder\n" in result.stdout
    assert json.loads(llf("status", "--json").stdout) == status


def test_status_of_cpu_replicas_shows_their_cores_and_ram(llf: Invoke, fake: Fake) -> None:
    status = gateway_status(MODEL)
    status["replicas"][0]["placement"] = {"device": "cpu", "cores": [1], "ram_bytes": 3_200_000_000}
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok"}))
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=status))
    result = llf("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "\n\nDEVICE  REPLICA  MODEL           HOLDS\nCPU     r0       acme/tiny-chat  core 1, 3.2 GB RAM\n"
    )


def test_status_lists_idle_gpus_the_gateway_reports_with_their_free_memory(llf: Invoke, fake: Fake) -> None:
    status = gateway_status(MODEL)
    status["replicas"][0]["placement"] = {"device": "cuda", "gpus": [0], "gpu_memory_utilization": 0.25}
    status["devices"] = [
        {"device": "cuda", "index": 0, "name": "A", "free_bytes": 24_000_000_000, "replicas": ["r0"]},
        {"device": "cuda", "index": 1, "name": "B", "free_bytes": 80_000_000_000, "replicas": []},
    ]
    fake.on("GET", f"{REGISTRY}/healthz", httpx.Response(200, json={"status": "ok"}))
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=status))
    result = llf("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "\n\nDEVICE  REPLICA  MODEL           HOLDS\n"
        "GPU0    r0       acme/tiny-chat  memory share 0.250\n"
        "GPU1    -        -               idle, 80.0 GB free\n"
    )


def test_chat_with_a_model_that_fits_nowhere_ends_in_the_gateways_one_line(llf: Invoke, fake: Fake) -> None:
    refusal = {
        "error": {"message": f"cannot load acme/huge: {REFUSAL}", "type": "server_error", "code": "does_not_fit"}
    }
    stream = f": loading acme/huge 0 s\n\ndata: {json.dumps(refusal)}\n\n".encode()
    fake.on("GET", f"{GATEWAY}/v1/status", httpx.Response(200, json=gateway_status("acme/huge")))
    fake.on(
        "POST",
        f"{GATEWAY}/v1/chat/completions",
        httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream),
    )
    result = llf("chat", "-m", "acme/huge", "hi")
    assert result.exit_code == 1
    assert result.stderr == f"loading acme/huge…\nerror: cannot load acme/huge: {REFUSAL}\n"
