"""Results: min/median/max over repetitions, the JSON file of one benchmark, the README table.

Why one module: the JSON files and the README table must say the same thing, so both are
written from the same ``Result`` object, and the table is rebuilt from the JSON files on disk
(so running one benchmark alone keeps the other rows).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PROFILES_DIR = RESULTS_DIR / "profiles"
README = ROOT / "README.md"
START_MARK = "<!-- bench:start -->"
END_MARK = "<!-- bench:end -->"

Op = Literal[">=", "<=", "=="]
NONE = "\u2013"  # an en dash: the empty cell of the table
TIMES = "\u00d7"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Metric:
    """One measured quantity over repetitions: every sample kept, summarised by min/median/max."""

    unit: str
    samples: list[float] = field(default_factory=list)
    description: str = ""

    def add(self, value: float) -> None:
        self.samples.append(float(value))

    def summary(self) -> dict[str, Any]:
        finite = [s for s in self.samples if math.isfinite(s)]
        stats = (
            {"min": min(finite), "median": statistics.median(finite), "max": max(finite)}
            if finite
            else {"min": None, "median": None, "max": None}
        )
        samples = [_round(s) for s in self.samples]
        return {"unit": self.unit, **stats, "samples": samples, "description": self.description}


@dataclass
class Target:
    """A figure of the issue's list: which metric, the bound it should meet.

    With ``rival`` the bound is not a constant but a peer measured in the same rounds (the
    router beside the gateway): the rival metric's median plus ``value``. With ``overlap`` too,
    a miss counts only when the two min-max ranges (the rival's shifted by ``value``) do not
    overlap, for figures whose run-to-run spread is larger than the difference sought.
    """

    figure: str
    metric: str
    op: Op
    value: float
    rival: str | None = None
    rival_label: str = ""
    overlap: bool = False

    def text(self, unit: str = "") -> str:
        symbol = {">=": "≥", "<=": "≤", "==": "="}[self.op]
        if self.rival is None:
            return f"{symbol} {_fmt(self.value, unit if unit != TIMES else '')}"
        offset = f" + {_fmt(self.value, unit)}" if self.value else ""
        spread = f" (min {NONE} max ranges)" if self.overlap else ""
        return f"{symbol} {self.rival_label or self.rival}{offset}{spread}"

    def verdict(self, metrics: dict[str, Metric]) -> bool | None:
        """Met, missed or unknown (None), from the measured metrics."""
        ours = metrics[self.metric].summary() if self.metric in metrics else None
        if self.rival is None or ours is None:
            return self.met(ours["median"] if ours else None)
        theirs = metrics[self.rival].summary() if self.rival in metrics else None
        if theirs is None or None in (ours["median"], theirs["median"]):
            return None
        if not self.overlap:
            return Target(self.figure, self.metric, self.op, theirs["median"] + self.value).met(ours["median"])
        if self.op == ">=":
            return bool(ours["max"] >= theirs["min"] + self.value)
        if self.op == "<=":
            return bool(ours["min"] <= theirs["max"] + self.value)
        return None

    def met(self, measured: float | None) -> bool | None:
        if measured is None or not math.isfinite(measured):
            return None
        if self.op == ">=":
            return measured >= self.value
        if self.op == "<=":
            return measured <= self.value
        return measured == self.value


@dataclass
class Result:
    """Everything one benchmark reports; ``write()`` puts it in ``bench/results/<name>.json``."""

    name: str
    number: int
    title: str
    repetitions: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    # Informational rows for the README (figures with no target in the issue).
    reported: list[tuple[str, str]] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profile: str | None = None
    status: Literal["ok", "error", "skipped"] = "ok"
    error: str | None = None

    def metric(self, key: str, unit: str, description: str = "") -> Metric:
        if key not in self.metrics:
            self.metrics[key] = Metric(unit, description=description)
        return self.metrics[key]

    def median(self, key: str) -> float | None:
        metric = self.metrics.get(key)
        return metric.summary()["median"] if metric else None

    def missed(self) -> list[Target]:
        return [t for t in self.targets if t.verdict(self.metrics) is False]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "number": self.number,
            "title": self.title,
            "status": self.status,
            "error": self.error,
            "command": bench_command(),
            "commands": self.commands,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": git_info(),
            "machine": machine_info(),
            "repetitions": self.repetitions,
            "params": self.params,
            "metrics": {key: metric.summary() for key, metric in self.metrics.items()},
            "targets": [
                {
                    **asdict(t),
                    "target": t.text(self.metrics[t.metric].unit if t.metric in self.metrics else ""),
                    "measured_median": _round(self.median(t.metric)),
                    "met": t.verdict(self.metrics),
                }
                for t in self.targets
            ],
            "reported": [{"figure": figure, "metric": metric} for figure, metric in self.reported],
            "profile": self.profile,
            "notes": self.notes,
        }

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        text = json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"
        path.write_text(repo_relative(text), encoding="utf-8")
        return path


def repo_relative(text: str) -> str:
    """``text`` with this checkout's absolute path taken out: committed results name paths inside the
    repository relative to its root (``.venv/bin/llf``), not where one machine keeps the checkout."""
    return text.replace(f"{ROOT}/", "").replace(str(ROOT), ".")


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return NONE
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def bench_command() -> str:
    """The command line that produced the result, with the ``LLF_BENCH_*`` knobs that were set."""
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("LLF_BENCH_")]
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    argv = [exe, "-m", "bench.run", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("run.py") else [exe, *sys.argv]
    return " ".join([*env, *map(shlex.quote, argv)])


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"sha": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--", "services"))}


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


# ----------------------------------------------------------------------------- README table
def load_results() -> list[dict[str, Any]]:
    if not RESULTS_DIR.is_dir():
        return []
    results = []
    for path in sorted(RESULTS_DIR.glob("*.json")):
        if path.stem == "soak":
            continue
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(results, key=lambda r: (r.get("number", 99), r.get("name", "")))


def _measured(result: dict[str, Any], metric: str) -> str:
    summary = result.get("metrics", {}).get(metric)
    if not summary or summary.get("median") is None:
        return NONE
    unit = summary.get("unit", "")
    return f"**{_fmt(summary['median'], unit)}** ({_fmt(summary['min'])} {NONE} {_fmt(summary['max'])})"


def load_soak() -> dict[str, Any] | None:
    """The last ``make soak`` report (written by ``tests/soak``), if any."""
    try:
        return dict(json.loads((RESULTS_DIR / "soak.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def render_soak(soak: dict[str, Any] | None) -> list[str]:
    if not soak:
        return ["", "Soak (`make soak`): not run yet."]
    growth = ", ".join(f"{name} {soak['rss_before_mib'].get(name)} → {soak['rss_after_mib'].get(name)} MiB "
                       f"({pct:+.1f} %)" for name, pct in soak.get("rss_growth_pct", {}).items())  # fmt: skip
    lost = soak.get("lost_or_failed_jobs") or {}
    return [
        "",
        f"Soak (`make soak`, {soak.get('date', '?')[:10]}): {soak.get('streams')} concurrent chat streams for "
        f"{soak.get('seconds'):.0f} s plus {soak.get('pulls')} parallel pulls through the local-mode stack: "
        f"{soak.get('requests')} streams, {soak.get('errors')} errors, {soak.get('pulls_finished')}/"
        f"{soak.get('pulls')} pulls finished ({len(lost)} lost or failed), {soak.get('tokens_per_s')} tokens/s; "
        f"RSS before → after: {growth or NONE} (limit +10 %).",
    ]


def render_table(results: list[dict[str, Any]]) -> str:
    """The Markdown that goes between the README markers."""
    lines = [
        f"| # | benchmark | figure | target | median (min {NONE} max) | met? |",
        "|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    dates: set[str] = set()
    for result in results:
        number, title = result.get("number", "?"), result.get("title", result.get("name"))
        dates.add(f"{result.get('date', '?')[:10]} @ {str((result.get('git') or {}).get('sha') or '?')[:10]}")
        if result.get("status") != "ok":
            why = result.get("error") or result.get("status")
            lines.append(f"| {number} | {title} | {NONE} | {NONE} | not measured: {why} | {NONE} |")
            continue
        for target in result.get("targets", []):
            met = {True: "met", False: "**missed**", None: NONE}[target.get("met")]
            measured = _measured(result, target["metric"])
            lines.append(f"| {number} | {title} | {target['figure']} | {target['target']} | {measured} | {met} |")
        for row in result.get("reported", []):
            measured = _measured(result, row["metric"])
            lines.append(f"| {number} | {title} | {row['figure']} | {NONE} | {measured} | {NONE} |")
        if result.get("profile") and any(t.get("met") is False for t in result.get("targets", [])):
            notes.append(f"- #{number} {title}: target missed; profile `{result['profile']}`.")
        for note in result.get("notes", []):
            notes.append(f"- #{number} {title}: {note}")
    machine = results[0].get("machine", {}) if results else {}
    # The benchmarks' own durations, summed from their results: a fixed figure goes stale with each new case.
    minutes = sum(float((r.get("params") or {}).get("duration_s") or 0) for r in results) / 60
    header = [
        f"`make bench` (`.venv/bin/python -m bench.run [NAME ...]`, {minutes:.0f} min on"
        f" {machine.get('cpus', '?')} cores in the runs below) measures what llf",
        "costs on top of vLLM, the Hub client and RQ; `python -m bench.run --list` names the benchmarks. Knobs:",
        "`LLF_BENCH_REPS` (≥ 3), `LLF_BENCH_PULL_MB` (size of the pull/verify repo, default 512 MiB),",
        "`LLF_BENCH_KEEP=1` (keep logs). Every figure is measured side by side with its baseline in one run,",
        "min/median/max over the repetitions; raw samples, the exact commands, machine, date and git sha are in",
        "`bench/results/<name>.json`, py-spy/pyinstrument profiles of missed targets in `bench/results/profiles/`.",
        "A benchmark never fails on a number. The hardening suite (fuzzing, bad inputs, faults, secrets) is",
        "`tests/integration/hardening` and runs in `make test` (`LLF_FUZZ_EXAMPLES`, default 10 per operation);",
        "`make soak` runs the load/soak test (`LLF_SOAK_STREAMS`, `LLF_SOAK_SECONDS`, `LLF_SOAK_PULLS`).",
        "",
        f"Last run: {', '.join(sorted(dates)) or NONE} on {machine.get('cpus', '?')} {TIMES} {machine.get('cpu', '?')},"
        f" {machine.get('memory_gib', '?')} GiB.",
        "",
    ]
    return "\n".join([*header, *lines, *(["", *notes] if notes else []), *render_soak(load_soak())])


def update_readme(results: list[dict[str, Any]] | None = None) -> None:
    """Rewrite only what lies between the bench markers (adding them under "## Benchmarks")."""
    text = README.read_text(encoding="utf-8")
    table = render_table(load_results() if results is None else results)
    block = f"{START_MARK}\n{table}\n{END_MARK}"
    if START_MARK in text and END_MARK in text:
        before, rest = text.split(START_MARK, 1)
        _, after = rest.split(END_MARK, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n## Benchmarks\n\n" + block + "\n"
    README.write_text(text, encoding="utf-8")
