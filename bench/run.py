"""``make bench``: run the benchmarks, write ``bench/results/<name>.json``, regenerate the README table.

Usage: ``python -m bench.run [NAME ...] [--reps N] [--no-readme] [--list]``.

Knobs (environment; each one used is recorded in the results' ``command``):
  LLF_BENCH_REPS      repetitions per figure (default 3, never fewer than 3 in the table's sense)
  LLF_BENCH_PULL_MB   size of the generated repo for the pull/verify benchmarks (default 512)
  LLF_BENCH_KEEP      keep the scratch directory (logs, model store) for inspection

A benchmark that cannot run (a service missing, a crash) is recorded as "not measured" with the
reason; the exit code is 1 only then — never because a number missed its target.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import traceback
from collections.abc import Callable
from importlib import import_module

# huggingface_hub reads these at import time; the hub stand-in speaks plain HTTP, never Xet.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from bench.context import Context
from bench.report import Result, update_readme

# name -> (number in issue 8, title). Order = run order: cheap and independent ones first.
CASES: dict[str, tuple[int, str]] = {
    "cli": (7, "CLI start"),
    "relay": (2, "SSE relay capacity"),
    "queue": (6, "Queue latency"),
    "dedupe": (5, "Pull dedupe"),
    "pull": (3, "Pull + verify vs snapshot_download"),
    "verify": (4, "Re-verify vs sha256sum"),
    "gateway": (1, "Gateway vs vllm-router vs direct vLLM"),
    "coldstart": (8, "Cold start to first token"),
    "dtype": (9, "Engine dtype: float32 vs bfloat16"),
    "routing": (10, "Routing for the prefix cache: gateway vs vllm-router"),
    "bake": (11, "llf-testing: first start vs baked image"),
}


def run_case(name: str, ctx: Context) -> Result:
    number, title = CASES[name]
    module = import_module(f"bench.cases.{name}")
    case: Callable[[Context, Result], None] = module.run
    result = Result(name=name, number=number, title=title, repetitions=ctx.reps)
    started = time.monotonic()
    try:
        case(ctx, result)
    except Exception as exc:  # a broken benchmark is reported, the others still run
        result.status = "error"
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        result.notes.append("traceback: " + traceback.format_exc(limit=4).replace("\n", " | ")[-800:])
    result.params.setdefault("duration_s", round(time.monotonic() - started, 1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"subset of: {', '.join(CASES)}")
    parser.add_argument("--reps", type=int, default=int(os.environ.get("LLF_BENCH_REPS", "3")))
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (number, title) in sorted(CASES.items(), key=lambda item: item[1][0]):
            print(f"{number}. {name:10} {title}")
        return 0
    unknown = sorted(set(args.names) - set(CASES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    names = args.names or list(CASES)
    # SIGTERM (`kill`, a CI timeout) ends the run through every server's `finally`, as Ctrl-C does;
    # Python's default would end it at once and leave the gateways and engines it started running.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    failed = 0
    with Context(reps=max(3, args.reps)) as ctx:
        for name in names:
            print(f"bench: {name} ...", flush=True)
            result = run_case(name, ctx)
            path = result.write()
            failed += result.status == "error"
            why = f" ({result.error})" if result.error else ""
            print(f"bench: {name}: {result.status} -> {path}{why}", flush=True)
            for target in result.targets:
                median = result.median(target.metric)
                verdict = {True: "met", False: "MISSED", None: "-"}[target.verdict(result.metrics)]
                print(f"    {target.figure}: {median} (target {target.text()}) {verdict}", flush=True)
    if not args.no_readme:
        update_readme()
        print("bench: README table updated")
    return 1 if failed else 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    raise SystemExit(main())
