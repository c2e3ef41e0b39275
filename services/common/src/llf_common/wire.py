"""Wire models: the JSON the registry, the gateway and the CLI exchange.

These are the stable, documented keys of every ``--json`` output too, so fields are only
ever added, never renamed. Endpoint map (see README "API"):

Registry (``LLF_MODELS_URL``)
  POST   /v1/pulls                      PullRequest   -> 202 PullResponse (200 if present)
  GET    /v1/jobs                       -> list[JobInfo]
  GET    /v1/jobs/{id}                  -> JobInfo
  GET    /v1/jobs/{id}/events           -> text/event-stream of JobInfo
  DELETE /v1/jobs/{id}?purge=false      -> JobInfo
  GET    /v1/models                     -> list[ModelInfo]
  GET    /v1/models/{owner}/{name}      -> ModelInfo
  DELETE /v1/models/{owner}/{name}      -> 204 (409 while served)
  POST   /v1/models/{owner}/{name}/verify -> 202 JobInfo
  POST   /v1/imports                    ImportRequest -> 202 JobInfo

Gateway (``LLF_INFERENCE_URL``)
  POST   /v1/chat/completions, /v1/completions, GET /v1/models   (OpenAI)
  POST   /v1/serve                      ServeRequest -> 202 GatewayStatus
  GET    /v1/status                     -> GatewayStatus
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

REPO_ID_PATTERN = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$"
)
REVISION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def check_repo_id(value: str) -> str:
    """``owner/name`` as the Hub spells it; never a path that could leave the store."""
    if ".." in value or not REPO_ID_PATTERN.fullmatch(value):  # fullmatch: "$" would accept a trailing "\n"
        raise ValueError(
            "repo id must look like 'owner/name' (letters, digits, '.', '_', '-'; at most 96 characters each, no '..')"
        )
    return value


def check_revision(value: str) -> str:
    """A branch, tag or commit sha; no traversal, no leading slash."""
    if ".." in value or "//" in value or not REVISION_PATTERN.fullmatch(value):
        raise ValueError("revision must be a branch, tag or commit sha (letters, digits, '.', '_', '-', '/')")
    return value


RepoId = Annotated[str, AfterValidator(check_repo_id)]
Revision = Annotated[str, AfterValidator(check_revision)]
GlobPattern = Annotated[str, Field(min_length=1, max_length=200)]


class Request(BaseModel):
    """Base of what a service validates from its callers: an unknown key is a 422, so a typo never passes."""

    model_config = ConfigDict(extra="forbid")


class Reply(BaseModel):
    """Base of what a service answers and another party parses: unknown keys are ignored.

    Keys are only ever added, so a reader must accept a newer writer's reply: a registry that
    could not read a newer gateway's status would take a served model for an idle one.
    """

    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- registry
class PullRequest(Request):
    repo: RepoId
    revision: Revision = "main"
    allow_patterns: list[GlobPattern] | None = Field(None, max_length=64)
    ignore_patterns: list[GlobPattern] | None = Field(None, max_length=64)


JobState = Literal["queued", "started", "deferred", "scheduled", "finished", "failed", "stopped", "canceled"]
JOB_STATES: frozenset[JobState] = frozenset(get_args(JobState))
TERMINAL_JOB_STATES: frozenset[JobState] = frozenset({"finished", "failed", "stopped", "canceled"})
"""A job in one of these states never changes again: followers stop, waiters return."""
UNSUCCESSFUL_JOB_STATES: frozenset[JobState] = TERMINAL_JOB_STATES - {"finished"}
"""Terminal states in which the job did not do its work (it failed, or was stopped or canceled)."""
JobKind = Literal["pull", "verify", "import"]
Phase = Literal["waiting", "preflight", "download", "verify", "done"]


class Progress(Reply):
    phase: Phase = "waiting"
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    current_file: str | None = None
    rate_bps: float = 0.0
    updated_at: datetime | None = None


class JobInfo(Reply):
    id: str
    kind: JobKind
    repo: str
    revision: str | None = None
    sha: str | None = None
    state: JobState
    position: int | None = Field(None, description="Place in the queue while queued (0 = next).")
    progress: Progress = Field(default_factory=Progress)
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    result: dict[str, object] | None = None


class PullResponse(Reply):
    state: Literal["queued", "started", "present"]
    repo: str
    revision: str
    sha: str
    job_id: str | None = None
    job: JobInfo | None = None


class FileEntry(Reply):
    path: str
    size: int
    sha256: str | None = None
    lfs: bool = False


class ModelFacts(Reply):
    """What verification learns about a model's files; the registry's manifest and ``ModelInfo`` carry it."""

    architecture: str | None = None
    architecture_supported: bool | None = None
    params: int | None = None
    dtype: str | None = None
    weight_bytes: int | None = Field(None, description="Estimated weight memory: params x dtype size.")
    context_length: int | None = None
    warnings: list[str] = Field(default_factory=list)


class ModelInfo(ModelFacts):
    name: str = Field(description="Repo id, e.g. Qwen/Qwen2.5-0.5B-Instruct.")
    revision: str
    sha: str
    path: str = Field(description="Snapshot directory an engine loads.")
    size_bytes: int
    verified: bool
    verified_at: datetime | None = None
    source: Literal["hub", "import"] = "hub"
    served: bool = False
    files: list[FileEntry] = Field(default_factory=list)


class ImportRequest(Request):
    path: str = Field(min_length=1, max_length=4096, description="Directory visible to the registry.")
    name: RepoId | None = Field(None, description="Repo id to list it under; default local/<dirname>.")
    link: bool = Field(True, description="Hard-link instead of copy where possible.")


# ---------------------------------------------------------------- gateway
ReplicaState = Literal["starting", "ready", "draining", "restarting", "failed", "stopped"]
GatewayState = Literal["idle", "starting", "loading", "ready", "switching", "degraded", "failed"]
ModelState = Literal["loading", "loaded", "asleep", "unloading", "failed", "available"]


class ServeRequest(Request):
    model: RepoId
    replicas: int | Literal["auto"] = Field(
        1, description="Replicas to start (1-16), or auto: as many as fit on free devices."
    )
    wait: bool = Field(False, description="Answer only when the model is ready (or failed).")
    replace: RepoId | None = Field(
        None, description="Hot-swap this loaded model for the new one; otherwise the new one is added."
    )
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, max_length=64, description="Place replicas only on these GPUs (NVML indices); default all."
    )
    runner: Literal["generate", "pooling"] | None = Field(
        None, description="vLLM --runner: pooling serves embeddings/score/rerank; default the settings'."
    )
    convert: Literal["embed", "classify"] | None = Field(
        None, description="vLLM --convert: adapt a generative checkpoint to a pooling task."
    )

    @field_validator("replicas")
    @classmethod
    def _replicas_in_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 16:
            raise ValueError("replicas must be 1-16 or 'auto'")
        return value


class ReplicaPlacement(Reply):
    """Where a replica runs: its GPUs and memory share, or its CPU cores."""

    device: str
    gpus: list[int] = Field(default_factory=list)
    gpu_memory_utilization: float | None = None
    cores: list[int] = Field(default_factory=list)
    ram_bytes: int | None = None


class DeviceStatus(Reply):
    """One device engines can be placed on, and what llf placed there (``llf status``).

    ``free_bytes`` is what the device had free when the gateway took its inventory (before its
    own engines started); ``reserved_bytes`` is what placement gave llf's replicas on it.
    """

    device: str = Field("cpu", description="`cuda` (one GPU) or `cpu` (the cores the gateway may use).")
    index: int | None = Field(None, description="NVML index of a GPU.")
    name: str = ""
    total_bytes: int | None = None
    free_bytes: int | None = None
    reserved_bytes: int = 0
    cores: list[int] = Field(default_factory=list)
    replicas: list[str] = Field(default_factory=list, description="Ids of the replicas placed on it.")
    models: list[str] = Field(default_factory=list)


class ModelStatus(Reply):
    """One model in the gateway's pool (``llf status``, like ``ollama ps``)."""

    model: str
    state: ModelState
    replicas: int = 0
    in_flight: int = 0
    waiting: int = Field(0, description="Requests waiting for the model to load.")
    keep_alive_s: float | None = Field(None, description="Idle seconds before unload; null: until room is needed.")
    until: datetime | None = Field(None, description="When the model unloads if it stays idle (null: not by time).")
    error: str | None = None


class ReplicaStatus(Reply):
    id: str
    model: str
    state: ReplicaState
    pid: int | None = None
    port: int | None = None
    uptime_s: float | None = None
    in_flight: int = 0
    tokens_per_s: float = 0.0
    restarts: int = 0
    last_error: str | None = None
    log_tail: list[str] = Field(default_factory=list)
    memory_bytes: int | None = None
    max_model_len: int | None = None
    placement: ReplicaPlacement | None = None
    runner: str | None = Field(None, description="generate, or pooling (embeddings, score, rerank).")
    tool_call_parser: str | None = Field(None, description="The engine's --tool-call-parser; null: no auto tools.")


class GatewayStatus(Reply):
    state: GatewayState
    models: list[str] = Field(default_factory=list, description="Models with a ready replica.")
    target: str | None = Field(None, description="Model being loaded or last asked for.")
    replicas: list[ReplicaStatus] = Field(default_factory=list)
    message: str | None = None
    model_states: list[ModelStatus] = Field(default_factory=list, description="Every model in the pool.")
    devices: list[DeviceStatus] = Field(default_factory=list, description="Every device and what it holds.")
