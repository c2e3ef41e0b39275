"""What people see: tables and key/value views (rich); job progress is in ``progress.py``.

Data arrives as the services' JSON dicts and is read tolerantly (``.get``), so a newer
service with more keys never breaks an older CLI. On a terminal, progress is a live bar on
stderr; anywhere else (pipes, CI, CliRunner) there are no colour codes and no animation,
only a few plain lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table

PLAIN_WIDTH = 160
"""Width for non-terminals: wide enough that repo ids and paths never wrap in logs."""

LOG_TAIL_LINES = 8
"""Engine log lines shown under a replica that failed: enough to see why, not a log dump."""


def console(*, stderr: bool = False) -> Console:
    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out.width = PLAIN_WIDTH
    return out


def print_json(data: Any) -> None:
    """The service's data, unchanged: stable keys, indented, no colour."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


class Out:
    """Prints rich renderables: styled on a terminal; elsewhere plain text without trailing padding."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.stderr = stderr
        self.console = console(stderr=stderr)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self.console.is_terminal:
            self.console.print(*objects, **kwargs)
            return
        with self.console.capture() as captured:
            self.console.print(*objects, **kwargs)
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()), err=self.stderr)


def show(data: Any, as_json: bool, view: Callable[[Any], None]) -> None:
    """``--json`` prints the data unchanged; otherwise ``view`` renders it for people."""
    if as_json:
        print_json(data)
    else:
        view(data)


def note(message: str, *, err: bool = True) -> None:
    """A dim side remark (to stderr by default so stdout stays the answer)."""
    click.secho(message, dim=True, err=err)


def size(value: Any) -> str:
    return decimal(int(value)) if isinstance(value, int | float) and value >= 0 else "-"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def age(timestamp: str | None) -> str:
    """``2 min ago`` from an ISO timestamp (naive ones are taken as UTC)."""
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return duration((datetime.now(UTC) - then).total_seconds()) + " ago"


def yes_no(value: Any) -> str:
    return "-" if value is None else "yes" if value else "no"


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _pairs(rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, "-" if value is None or value == "" else str(value))
    return table


def _warnings(out: Out, warnings: Any) -> None:
    for warning in warnings or []:
        out.print(f"warning: {warning}", style="yellow", markup=False)


def models_table(models: list[dict[str, Any]]) -> None:
    out = Out()
    if not models:
        out.print("no models yet — try `llf pull OWNER/NAME` or `llf models import DIR`")
        return
    table = _table("NAME", "REVISION", "SIZE", "VERIFIED", "SERVED")
    for model in models:
        revision = f"{model.get('revision', '-')} ({str(model.get('sha') or '')[:7] or '-'})"
        table.add_row(
            model.get("name", "?"),
            revision,
            size(model.get("size_bytes")),
            yes_no(model.get("verified")),
            yes_no(model.get("served")),
        )
    out.print(table)


def model_detail(model: dict[str, Any]) -> None:
    out = Out()
    supported = model.get("architecture_supported")
    architecture = model.get("architecture") or "-"
    if supported is False:
        architecture += " (not supported by the engine)"
    params = model.get("params")
    out.print(
        _pairs(
            [
                ("name", model.get("name")),
                ("revision", model.get("revision")),
                ("sha", model.get("sha")),
                ("path", model.get("path")),
                ("size", size(model.get("size_bytes"))),
                ("verified", f"{yes_no(model.get('verified'))}  {model.get('verified_at') or ''}".strip()),
                ("architecture", architecture),
                ("parameters", f"{params / 1e9:.2f} B" if isinstance(params, int) else None),
                ("dtype", model.get("dtype")),
                ("weight memory", size(model.get("weight_bytes")) if model.get("weight_bytes") else None),
                ("context length", model.get("context_length")),
                ("source", model.get("source")),
                ("served", yes_no(model.get("served"))),
                ("files", len(model.get("files") or [])),
            ]
        )
    )
    _warnings(out, model.get("warnings"))


def job_percent(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    total = progress.get("bytes_total") or 0
    if job.get("state") == "finished":
        return "100%"
    return f"{100 * (progress.get('bytes_done') or 0) / total:.0f}%" if total else "-"


def jobs_table(jobs: list[dict[str, Any]]) -> None:
    out = Out()
    if not jobs:
        out.print("no jobs")
        return
    table = _table("ID", "KIND", "REPO", "STATE", "PHASE", "PROGRESS", "QUEUED")
    for job in jobs:
        phase = (job.get("progress") or {}).get("phase", "-")
        table.add_row(
            job.get("id", "?"),
            job.get("kind", "-"),
            job.get("repo", "-"),
            job.get("state", "-"),
            phase,
            job_percent(job),
            age(job.get("enqueued_at")),
        )
    out.print(table)


def job_detail(job: dict[str, Any]) -> None:
    out = Out()
    progress = job.get("progress") or {}
    rows: list[tuple[str, Any]] = [
        ("id", job.get("id")),
        ("kind", job.get("kind")),
        ("repo", job.get("repo")),
        ("revision", job.get("revision")),
        ("sha", job.get("sha")),
        ("state", job.get("state")),
        ("position", job.get("position")),
        ("phase", progress.get("phase")),
        ("bytes", f"{size(progress.get('bytes_done'))} / {size(progress.get('bytes_total'))} ({job_percent(job)})"),
        ("files", f"{progress.get('files_done', 0)} / {progress.get('files_total', 0)}"),
        ("current file", progress.get("current_file")),
        ("enqueued", job.get("enqueued_at")),
        ("started", job.get("started_at")),
        ("ended", job.get("ended_at")),
        ("error", job.get("error")),
    ]
    if job.get("result"):
        rows.append(("result", json.dumps(job["result"], ensure_ascii=False)))
    out.print(_pairs(rows))
    _warnings(out, job.get("warnings"))


def status_view(registry_url: str, registry_up: bool, gateway_url: str, status: dict[str, Any] | None) -> None:
    """Both services (up or DOWN), then the gateway's state and replicas like `ollama ps`."""
    out = Out()
    services = [
        ("registry", f"{registry_url}  {'up' if registry_up else 'DOWN'}"),
        ("gateway", f"{gateway_url}  {'up' if status is not None else 'DOWN'}"),
    ]
    if status is None:
        out.print(_pairs(services))
        return
    out.print(
        _pairs(
            [
                *services,
                ("state", status.get("state")),
                ("serving", ", ".join(status.get("models") or []) or None),
                ("target", status.get("target")),
                ("message", status.get("message")),
            ]
        )
    )
    models_states(out, status.get("model_states") or [])
    replicas = status.get("replicas") or []
    if not replicas:
        return
    table = _table(
        "REPLICA", "MODEL", "STATE", "PID", "PORT", "UP", "IN FLIGHT", "TOK/S", "RESTARTS", "CONTEXT", "TOOLS"
    )
    for replica in replicas:
        table.add_row(
            str(replica.get("id", "?")),
            replica.get("model", "-"),
            replica.get("state", "-"),
            str(replica.get("pid") or "-"),
            str(replica.get("port") or "-"),
            duration(replica.get("uptime_s")),
            str(replica.get("in_flight", 0)),
            f"{replica.get('tokens_per_s') or 0:.1f}",
            str(replica.get("restarts", 0)),
            str(replica.get("max_model_len") or "-"),
            tools_column(replica),
        )
    out.print()
    out.print(table)
    devices_table(out, replicas, status.get("devices") or [])
    for replica in replicas:
        if replica.get("last_error"):
            out.print(f"{replica.get('id')}: {replica['last_error']}", style="red", markup=False)
            for line in (replica.get("log_tail") or [])[-LOG_TAIL_LINES:]:
                out.print(f"  {line}", style="dim", markup=False)


def tools_column(replica: dict[str, Any]) -> str:
    """The engine's tool-call parser; ``pooling`` for an embedding engine; ``-`` when tools are off."""
    if replica.get("runner") == "pooling":
        return "pooling"
    return str(replica.get("tool_call_parser") or "-")


def until(timestamp: str | None, state: str | None) -> str:
    """When an idle model unloads (``ollama ps``'s UNTIL): ``in 4m59s``; ``-`` when not by time."""
    if not timestamp or state not in ("loaded", "asleep"):
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return "in " + duration(max(0.0, (then - datetime.now(UTC)).total_seconds()))


def models_states(out: Out, states: list[dict[str, Any]]) -> None:
    """Every model in the pool: loading, loaded, asleep …, its requests and when it unloads."""
    if not states:
        return
    table = _table("MODEL", "STATE", "REPLICAS", "IN FLIGHT", "WAITING", "UNTIL")
    for model in states:
        table.add_row(
            model.get("model", "?"),
            model.get("state", "-"),
            str(model.get("replicas", 0)),
            str(model.get("in_flight", 0)),
            str(model.get("waiting", 0)),
            until(model.get("until"), model.get("state")),
        )
    out.print()
    out.print(table)
    for model in states:
        if model.get("error"):
            out.print(f"{model.get('model')}: {model['error']}", style="red", markup=False)


def placement_share(placement: dict[str, Any]) -> str:
    """What a replica holds: ``memory share 0.412`` (of each of its GPUs) or ``cores 2,3, 3.2 GB RAM``."""
    if placement.get("device") == "cuda":
        share = placement.get("gpu_memory_utilization")
        return f"memory share {share:.3f}" if isinstance(share, int | float) else "-"
    cores = placement.get("cores") or []
    ram = placement.get("ram_bytes")
    parts = [f"core{'s' if len(cores) > 1 else ''} {','.join(map(str, cores))}" if cores else ""]
    parts.append(f"{size(ram)} RAM" if ram else "")
    return ", ".join(part for part in parts if part) or "-"


def devices_table(out: Out, replicas: list[dict[str, Any]], devices: list[dict[str, Any]] | None = None) -> None:
    """Each device and what it holds: one row per (GPU or CPU, replica), from the replicas' placement.

    A device the gateway lists (``devices``, newer gateways) that holds no replica gets one
    ``idle`` row with its free memory, so the next model's room is visible too.
    """
    rows: list[tuple[tuple[int, int], str, dict[str, Any], dict[str, Any]]] = []
    for replica in replicas:
        placement = replica.get("placement")
        if not isinstance(placement, dict):
            continue
        gpus = placement.get("gpus") or []
        if placement.get("device") == "cuda" and gpus:
            group = f" (tensor parallel {','.join(map(str, gpus))})" if len(gpus) > 1 else ""
            rows += [((0, g), f"GPU{g}{group}", replica, placement) for g in gpus]
        else:
            rows.append(((1, 0), "CPU", replica, placement))
    for device in devices or []:
        if device.get("replicas"):
            continue
        free = device.get("free_bytes")
        holds = f"idle, {size(free)} free" if isinstance(free, int) else "idle"
        if device.get("device") == "cuda":
            index = device.get("index", 0)
            rows.append(((0, index), f"GPU{index}", {"id": "-", "model": "-"}, {"idle": holds}))
        else:
            rows.append(((1, 0), "CPU", {"id": "-", "model": "-"}, {"idle": holds}))
    if not rows:
        return
    table = _table("DEVICE", "REPLICA", "MODEL", "HOLDS")
    for _, device, replica, placement in sorted(rows, key=lambda row: row[0]):
        holds = placement.get("idle") or placement_share(placement)
        table.add_row(device, str(replica.get("id", "?")), replica.get("model", "-"), holds)
    out.print()
    out.print(table)


def config_view(values: dict[str, Any], path: str, exists: bool) -> None:
    out = Out()
    out.print(_pairs([(key, value) for key, value in values.items()]))
    out.print(f"\nconfig file: {path} ({'found' if exists else 'not present; defaults and environment apply'})")
