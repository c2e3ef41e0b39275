"""``llf pull`` / ``models`` / ``jobs`` against the real registry, a real worker, Redis and the hub stand-in.

Tests run in file order and build on each other: the first pulls the tiny model, later ones list,
verify and remove what is there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pexpect
import pytest

from tests.integration.cli.conftest import Llf, dead_url
from tests.support.hub import HubStandIn
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryStack

TINY = "llf-test/tiny-llama"
BIG = "llf-test/cli-big"


@pytest.fixture(scope="module")
def llf(registry: RegistryStack, llf_home: Path) -> Llf:
    return Llf(llf_home, registry.url, dead_url())


def test_pull_shows_progress_and_ends_verified(llf: Llf, hub: HubStandIn) -> None:
    # The weights stay held after their first bytes until a "downloading" line is printed.
    done = llf.held_until(hub, TINY, "model.safetensors", "pull", TINY)
    assert done.returncode == 0, done.stderr
    assert hub.bytes_served(TINY, "model.safetensors") > 4096
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"pulling {TINY}@main (job ")
    assert any(line.startswith("downloading") for line in lines), done.stderr
    assert "\x1b[" not in done.stderr + done.stdout
    assert re.fullmatch(rf"✓ {TINY} pulled \([0-9a-f]{{7}}, [0-9.]+ [kM]B, verified\)\n", done.stdout), done.stdout


def test_models_ls_json_lists_the_pulled_model(llf: Llf) -> None:
    (model,) = llf.json("models", "ls")
    assert model["name"] == TINY and model["verified"] is True and model["size_bytes"] > 0
    table = llf("models", "ls")
    assert table.returncode == 0 and TINY in table.stdout and "NAME" in table.stdout


def test_pull_again_says_the_model_is_present(llf: Llf) -> None:
    done = llf("pull", TINY)
    assert done.returncode == 0 and "already present" in done.stdout
    assert llf.json("pull", TINY)["state"] == "present"


def test_models_info_and_verify(llf: Llf) -> None:
    info = llf.json("models", "info", TINY)
    assert info["name"] == TINY and info["context_length"]
    assert "context length" in llf("models", "info", TINY).stdout
    done = llf("models", "verify", TINY)
    assert done.returncode == 0 and f"✓ {TINY} verified" in done.stdout, done.stderr
    assert any(line.startswith("verifying") or line.startswith("done") for line in done.stderr.splitlines())


def test_jobs_ls_and_show_list_the_pull(llf: Llf) -> None:
    jobs = llf.json("jobs", "ls")
    pull = next(job for job in jobs if job["kind"] == "pull" and job["repo"] == TINY)
    assert llf.json("jobs", "show", pull["id"])["state"] == "finished"
    assert pull["id"] in llf("jobs", "ls").stdout


def test_pull_detach_then_watch(llf: Llf, hub: HubStandIn) -> None:
    hub.add_tiny_model("llf-test/cli-tiny-b", seed=1)
    detached = llf("pull", "llf-test/cli-tiny-b", "--detach")
    assert detached.returncode == 0, detached.stderr
    job_id = detached.stdout.strip()
    watched = llf("jobs", "watch", job_id)
    assert watched.returncode == 0 and "✓ pull of llf-test/cli-tiny-b finished" in watched.stdout, watched.stderr


def test_ctrl_c_detaches_a_pull_on_a_terminal_and_jobs_cancel_stops_it(llf: Llf, hub: HubStandIn) -> None:
    hub.add_tiny_model(BIG, seed=2)
    hub.add_large_file(BIG, "extra.bin", 8_000_000)
    hub.hold(BIG, "extra.bin", after_bytes=1_000_000)  # in flight until the test says otherwise
    try:
        child = llf.spawn("pull", BIG)
        hub.wait_until_held(BIG, "extra.bin", timeout=60)
        child.expect("extra.bin", timeout=60)
        child.sendintr()
        child.expect(r"detached; job (\S+) keeps running", timeout=30)
        job_id = child.match.group(1)
        child.expect("llf jobs cancel")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130
        assert llf.json("jobs", "show", job_id)["state"] == "started"
        canceled = llf("jobs", "cancel", job_id, "--purge")
        assert canceled.returncode == 0, canceled.stderr
        assert llf.json("jobs", "show", job_id)["state"] in {"stopped", "canceled", "failed"}
    finally:
        hub.reset_faults()


def test_models_import_and_rm(llf: Llf, tiny_model_dir: Path) -> None:
    done = llf("models", "import", str(tiny_model_dir), "--name", "local/cli-tiny", "--copy")
    assert done.returncode == 0 and "✓ imported local/cli-tiny" in done.stdout, done.stderr
    assert llf.json("models", "info", "local/cli-tiny")["source"] == "import"
    removed = llf("models", "rm", "local/cli-tiny", "-y")
    assert removed.returncode == 0, removed.stderr
    gone = llf("models", "info", "local/cli-tiny")
    assert gone.returncode == 1 and gone.stderr.startswith("error: ") and len(gone.stderr.splitlines()) == 1


def test_an_invalid_job_id_is_the_registry_404(llf: Llf) -> None:
    done = llf("jobs", "show", "no-such-job")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_unreachable_registry_is_one_line_and_exit_2(llf_home: Path) -> None:
    url = dead_url()
    done = Llf(llf_home, url, dead_url())("models", "ls")
    assert done.returncode == 2
    assert done.stderr == f"error: cannot reach the registry at {url} — is the stack running? try `make up`\n"


def test_a_registry_without_a_hub_says_how_to_fix_it(redis_server: RedisServer, tmp_path: Path) -> None:
    with RegistryStack(tmp_path, redis_url=redis_server.url, hf_endpoint=dead_url()) as offline:
        offline.start_api()
        done = Llf(tmp_path / "home", offline.url, dead_url())("pull", TINY)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: cannot download {TINY} from the model hub")
    assert "HF_ENDPOINT" in line and "llf models import" in line and "make up" in line
