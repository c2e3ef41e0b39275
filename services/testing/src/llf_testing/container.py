"""``LlfContainer``: one container, llf's gateway + vLLM serving one model, answering OpenAI's API.

What a test gets is the engine it deploys (vLLM behind llf's gateway), ready when it *answers*, and
thrown away at the end; a run killed half-way is cleaned up by the next one (``llf_testing.reaper``).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import httpx

from llf_testing import models as m
from llf_testing.images import choose_image, host_has_nvidia, local_tags
from llf_testing.labels import OWNER
from llf_testing.reaper import reap
from llf_testing.wait import LlfStartError, wait_until_answers

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk is an image we cannot count on
import contextlib

from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

if TYPE_CHECKING:
    import openai

    from llf_testing.stack import LlfStack

__all__ = ["LlfContainer", "LlfStartError"]
PORT = 8000
testcontainers_config.ryuk_disabled = True


class LlfContainer(DockerContainer):  # type: ignore[misc]
    """The gateway serving ``model`` from a directory, on a free port of 127.0.0.1.

    ``model``: ``"demo"`` (the generated tiny model: no network), a repo id found verified in the
    ``models_volume`` (filled by ``LlfStack``; pulled there first when ``pull_missing``), or the
    model an image made by ``bake`` holds (``image=`` that tag; ``model`` may then be omitted).
    ``image``: default ``llf/inference-cpu`` (``-gpu`` with NVIDIA GPUs and the container toolkit)
    tagged with this package's version; ``LLF_IMAGE_PREFIX``/``LLF_TAG`` point at a team's registry.
    """

    def __init__(
        self,
        model: str | None = m.DEMO,
        image: str | None = None,
        *,
        models_volume: str = m.MODELS_VOLUME,
        gpu: bool | None = None,
        startup_timeout: float = 600.0,
        network: str | None = None,
        env: dict[str, str] | None = None,
        pull_missing: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(image or "", **kwargs)
        self._requested_model = model
        self._image_given = image is not None
        self._models_volume = models_volume
        self._gpu = gpu
        self.startup_timeout = startup_timeout
        self._network_name = network
        self._extra_env = dict(env or {})
        self._pull_missing = pull_missing
        self._served = ""
        self._loopback = False
        self.ready_after_s: float | None = None

    # ------------------------------------------------------------------ what a test uses
    @property
    def model(self) -> str:
        """The name to send as ``model`` (known once started)."""
        return self._served

    def get_base_url(self) -> str:
        """``http://host:port/v1``: OpenAI's base URL for this container."""
        if testcontainers_config.tc_host_override:
            host = testcontainers_config.tc_host_override
        elif self._loopback:
            host = "127.0.0.1"  # published on loopback only (testcontainers may guess a gateway IP)
        else:
            host = self.get_container_host_ip()
        return base_url(host, int(self.get_exposed_port(PORT)))

    def openai_client(self, **kwargs: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` pointed at this container (the key is ignored unless the image sets one)."""
        import openai

        kwargs.setdefault("api_key", os.environ.get("LLF_API_KEY") or "llf-testing")
        return openai.OpenAI(base_url=self.get_base_url(), **kwargs)

    def logs_tail(self, lines: int = 60) -> str:
        """The gateway's last log lines (container logs) and the engine's (its log tail in /v1/status)."""
        try:
            gateway = self.get_wrapped_container().logs(tail=lines).decode(errors="replace")
        except Exception as exc:  # the container may be gone already
            gateway = f"(no container logs: {exc})"
        return f"{gateway}\n--- engine ---\n{self.engine_log_tail(lines)}"

    def engine_log_tail(self, lines: int = 60) -> str:
        """The engine's last lines as the gateway keeps them (the engine writes to the gateway, not Docker)."""
        try:
            status = httpx.get(self.get_base_url()[: -len("/v1")] + "/v1/status", timeout=5).json()
        except Exception as exc:
            return f"(no engine status: {exc})"
        tails = [line for replica in status.get("replicas", []) for line in replica.get("log_tail") or []]
        return "\n".join(tails[-lines:]) or f"(no engine lines; gateway state {status.get('state')!r})"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LlfContainer:
        client = self.get_docker_client().client
        reap(client)
        gpu = self._gpu if self._gpu is not None else host_has_nvidia(client.info())
        if not self._image_given:
            self.image = choose_image(f"inference-{'gpu' if gpu else 'cpu'}", os.environ, local_tags(client))
        self._configure_model(client)
        self.with_envs(**self._extra_env)
        local = str(client.api.base_url).startswith(("http+unix://", "http+docker://local"))
        self._loopback = local and not testcontainers_config.tc_host_override
        self.ports[PORT] = ("127.0.0.1", None) if self._loopback else None
        extra: dict[str, Any] = {"labels": OWNER.labels(), "shm_size": "1g"}
        if gpu:
            import docker.types

            extra["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        if self._network_name:
            extra["network"] = self._network_name
        self.with_kwargs(**{**self._kwargs, **extra})  # with_kwargs replaces: keep the caller's
        super().start()
        try:
            with httpx.Client(base_url=self.get_base_url() + "/", timeout=30) as http:
                self.ready_after_s = wait_until_answers(
                    http, self._served, timeout=self.startup_timeout, exited=self._exited, logs=self.logs_tail
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        """Remove the container; a second call (or one after a failed start) does nothing."""
        import docker.errors

        if self._container is None:
            return
        with contextlib.suppress(docker.errors.NotFound):
            super().stop(force, delete_volume)
        self._container = None

    def _exited(self) -> str | None:
        container = self.get_wrapped_container()
        container.reload()
        if container.status in ("exited", "dead"):
            return f"status {container.status}, exit code {container.attrs['State'].get('ExitCode')}"
        return None

    # ------------------------------------------------------------------ the model's source
    def _configure_model(self, client: Any) -> None:
        baked = (_image(client, self.image).labels or {}).get(m.MODEL_LABEL) if self._image_given else None
        wanted = self._requested_model
        if baked and wanted in (None, m.DEMO, baked):
            self._served = baked  # the image holds it, and its ENV already serves it
            return
        if wanted in (None, m.DEMO):
            ensure_demo(client, self.image)
            self._served = m.DEMO_NAME
            self.with_volume_mapping(m.DEMO_VOLUME, "/data/models", "ro")
            self.with_envs(**m.gateway_env(m.DEMO_NAME, m.DEMO_DIR))
            return
        path = snapshot_in_volume(client, self.image, self._models_volume, wanted)
        if path is None and self._pull_missing:
            from llf_testing.stack import LlfStack

            with LlfStack(models_volume=self._models_volume) as stack:
                stack.pull(wanted)
            path = snapshot_in_volume(client, self.image, self._models_volume, wanted)
        if path is None:
            raise LlfStartError(
                f"{wanted} is not in the volume {self._models_volume}: pull it with "
                f"LlfStack(models_volume={self._models_volume!r}).pull({wanted!r}) or bake it"
            )
        self._served = wanted
        self.with_volume_mapping(self._models_volume, m.STORE, "ro")
        self.with_envs(**m.gateway_env(wanted, path))

    # ------------------------------------------------------------------ bake
    @classmethod
    def bake(
        cls, model: str, *, stack: LlfStack | None = None, image: str | None = None, tag: str | None = None
    ) -> str:
        """Pull ``model`` once (verified, through ``stack`` or a temporary ``LlfStack``) and commit an
        image that holds its weights and serves it at start; returns the image tag.

        Ollama's ``commit_to_image`` for llf: CI caches this image and the next start downloads nothing.
        """
        from llf_testing.stack import LlfStack

        if stack is None:
            with LlfStack() as temporary:
                return cls.bake(model, stack=temporary, image=image, tag=tag)
        info = stack.pull(model)
        client = stack.docker()
        base = image or choose_image(f"inference-{stack.variant}", os.environ, local_tags(client))
        target = m.baked_dir(model)
        script = f"mkdir -p {m.BAKED_ROOT} && cp -rL '{info['path']}' '{target}' && chown -R llf:llf {m.BAKED_ROOT}"
        builder = client.containers.run(
            base,
            ["sh", "-c", script],
            user="root",
            volumes={stack.models_volume: {"bind": m.STORE, "mode": "ro"}},
            labels=OWNER.labels("helper"),
            detach=True,
        )
        try:
            result = builder.wait(timeout=1800)
            if result.get("StatusCode") != 0:
                raise LlfStartError(f"copying {model} into the image failed: {builder.logs().decode()[-2000:]}")
            name = tag or m.baked_tag(base, model, str(info["sha"]))
            repository, _, version = name.rpartition(":")
            changes = m.commit_changes(model, m.gateway_env(model, target))
            builder.commit(repository=repository, tag=version, changes=changes)
            return name
        finally:
            builder.remove(force=True)


def _image(client: Any, name: str) -> Any:
    """The local image ``name``, pulled first when absent (a team's registry)."""
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return client.images.pull(name)


def base_url(host: str, port: int) -> str:
    """OpenAI's base URL for a host and port (IPv6 literals in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/v1"


def ensure_demo(client: Any, inference_image: str) -> None:
    """Write the tiny model into the shared demo volume once, with ``llf-tiny-model`` of the models image."""
    models_image = inference_image.replace("/inference-cpu:", "/models:").replace("/inference-gpu:", "/models:")
    models_image = choose_image_like(client, models_image)
    # Written aside and renamed: a run killed mid-write never leaves a half model for the next.
    script = (
        f"test -f {m.DEMO_DIR}/config.json || {{ t={m.DEMO_DIR}.tmp.$$ && llf-tiny-model $t >/dev/null"
        f" && mv $t {m.DEMO_DIR}; }}"
    )
    output = client.containers.run(
        models_image,
        ["sh", "-c", script],
        volumes={m.DEMO_VOLUME: {"bind": "/data/models", "mode": "rw"}},
        labels=OWNER.labels("helper"),
        remove=True,
    )
    del output


def choose_image_like(client: Any, name: str) -> str:
    """``name``, or its ``latest`` twin when only that is present here (see ``images.choose_image``)."""
    local = local_tags(client)
    latest = name.rsplit(":", 1)[0] + ":latest"
    return name if name in local or latest not in local else latest


def snapshot_in_volume(client: Any, image: str, volume: str, repo: str) -> str | None:
    """The verified snapshot of ``repo`` in ``volume`` (read through a one-shot container), or None."""
    import docker.errors

    try:
        raw = client.containers.run(
            image,
            ["cat", m.manifest_file(repo)],
            volumes={volume: {"bind": m.STORE, "mode": "ro"}},
            labels=OWNER.labels("helper"),
            remove=True,
        )
    except docker.errors.ContainerError:
        return None
    try:
        return m.snapshot_path(repo, json.loads(raw))
    except ValueError:
        return None
