"""Which image and model source a container gets, as plain functions (no Docker)."""

from __future__ import annotations

import json

import pytest
from llf_testing import models as m
from llf_testing.container import base_url
from llf_testing.images import choose_image, host_has_nvidia, image_name, variant_for
from llf_testing.stack import find_compose_dir, override, stack_env

SHA = "a" * 40


def test_images_are_tagged_with_the_package_version_by_default() -> None:
    assert image_name("inference-cpu", {}, version="1.2.3") == "llf/inference-cpu:1.2.3"


def test_a_teams_registry_and_tag_come_from_the_environment() -> None:
    env = {"LLF_IMAGE_PREFIX": "registry.example/team/llf/", "LLF_TAG": "ci-7"}
    assert image_name("inference-gpu", env) == "registry.example/team/llf/inference-gpu:ci-7"


def test_a_local_latest_build_is_used_when_the_version_tag_is_absent() -> None:
    assert choose_image("inference-cpu", {}, {"llf/inference-cpu:latest"}, "0.1.0") == "llf/inference-cpu:latest"
    both = {"llf/inference-cpu:latest", "llf/inference-cpu:0.1.0"}
    assert choose_image("inference-cpu", {}, both, "0.1.0") == "llf/inference-cpu:0.1.0"
    assert choose_image("inference-cpu", {}, set(), "0.1.0") == "llf/inference-cpu:0.1.0"  # pulled


def test_an_explicit_tag_is_never_swapped_for_latest() -> None:
    local = {"llf/inference-cpu:latest"}
    assert choose_image("inference-cpu", {"LLF_TAG": "9"}, local, "0.1.0") == "llf/inference-cpu:9"


def test_gpu_needs_nvidia_smi_and_the_nvidia_runtime() -> None:
    info = {"Runtimes": {"runc": {}, "nvidia": {}}}
    assert host_has_nvidia(info, nvidia_smi="/usr/bin/nvidia-smi")
    assert not host_has_nvidia(info, nvidia_smi="")
    assert not host_has_nvidia({"Runtimes": {"runc": {}}}, nvidia_smi="/usr/bin/nvidia-smi")
    assert variant_for({"Runtimes": {}}, nvidia_smi="") == "cpu"


def test_base_url_ends_in_v1_and_brackets_ipv6() -> None:
    assert base_url("127.0.0.1", 32768) == "http://127.0.0.1:32768/v1"
    assert base_url("::1", 80) == "http://[::1]:80/v1"


def test_the_gateway_serves_one_pinned_directory_at_start_without_a_registry() -> None:
    env = m.gateway_env("org/model", "/data/models/x")
    assert json.loads(env["LLF_INFERENCE_MODEL_PATHS"]) == {"org/model": "/data/models/x"}
    assert env["LLF_INFERENCE_SERVE_ON_START"] == "org/model"
    assert env["LLF_MODELS_URL"] == m.NO_REGISTRY


def test_a_verified_manifest_gives_the_snapshot_directory() -> None:
    manifest = {"repo": "org/model", "sha": SHA, "verified_at": "2026-12-01T00:00:00Z"}
    assert m.manifest_file("org/model") == "/data/models/manifests/org--model.json"
    assert m.snapshot_path("org/model", manifest) == f"/data/models/models--org--model/snapshots/{SHA}"


@pytest.mark.parametrize(
    "manifest",
    [
        {"repo": "org/model", "sha": SHA, "verified_at": None},
        {"repo": "other/model", "sha": SHA, "verified_at": "x"},
        {"repo": "org/model", "sha": "../../etc", "verified_at": "x"},
    ],
)
def test_an_unverified_or_foreign_manifest_is_refused(manifest: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        m.snapshot_path("org/model", manifest)


def test_repo_ids_that_could_leave_the_store_are_refused() -> None:
    for bad in ("../x", "a/../b", "noslash", "a/b/c", "a/b'; rm -rf /"):
        with pytest.raises(ValueError):
            m.check_repo(bad)


def test_a_baked_image_is_tagged_by_base_model_and_revision() -> None:
    tag = m.baked_tag("llf/inference-cpu:0.1.0", "Qwen/Qwen2.5-0.5B-Instruct", SHA)
    assert tag == "llf/inference-cpu-baked:0.1.0-qwen--qwen2.5-0.5b-instruct-aaaaaaaaaaaa"
    assert m.baked_tag("localhost:5000/llf/inference-cpu", "o/n", SHA).startswith(
        "localhost:5000/llf/inference-cpu-baked:latest-"
    )


def test_commit_changes_run_the_gateway_as_llf_and_serve_the_baked_model() -> None:
    changes = m.commit_changes("o/n", m.gateway_env("o/n", m.baked_dir("o/n")))
    assert changes[:3] == ["USER llf", 'CMD ["llf-inference"]', f"LABEL {m.MODEL_LABEL}=o/n org.llf.testing.managed=0"]
    assert """ENV LLF_INFERENCE_MODEL_PATHS='{"o/n": "/opt/llf-models/o--n"}'""" in changes


def test_the_stack_keeps_the_shared_model_volume_and_labels_its_services() -> None:
    doc = override("llf-testing-models", {"org.llf.testing.session": "s"})
    assert doc["volumes"]["models"] == {"external": True, "name": "llf-testing-models"}
    assert doc["services"]["inference"]["labels"] == {"org.llf.testing.session": "s"}


def test_the_stack_uses_this_versions_images_or_latest_and_free_ports() -> None:
    env = stack_env({"PATH": "/bin"}, {"llf/models:latest", "llf/redis:7"}, version="0.1.0")
    assert env["LLF_TAG"] == "latest" and env["LLF_REDIS_IMAGE"] == "llf/redis:7"
    assert env["LLF_MODELS_PORT"] == env["LLF_INFERENCE_PORT"] == env["LLF_WEB_PORT"] == ""
    assert stack_env({}, {"llf/models:0.1.0", "redis:7"}, version="0.1.0")["LLF_TAG"] == "0.1.0"


def test_the_stack_gets_a_redis_password_unless_one_is_given() -> None:
    generated = stack_env({}, set(), version="0.1.0")["LLF_REDIS_PASSWORD"]
    assert len(generated) == 32 and generated != stack_env({}, set(), version="0.1.0")["LLF_REDIS_PASSWORD"]
    assert stack_env({"LLF_REDIS_PASSWORD": "mine"}, set())["LLF_REDIS_PASSWORD"] == "mine"


def test_the_compose_files_are_found_from_a_checkout_or_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "deploy").mkdir()
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / "deploy" / "compose.cpu.yml").write_text("services: {}\n")
    deep = tmp_path / "services" / "testing" / "src" / "llf_testing" / "stack.py"
    assert find_compose_dir(deep, env={}) == tmp_path
    assert find_compose_dir(deep, env={"LLF_COMPOSE_DIR": "/x"}).as_posix() == "/x"
