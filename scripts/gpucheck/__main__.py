"""``scripts/gpu-check.sh [--fake [GPUS]] [--models A,B] [--url URL]``: one PASS/FAIL/SKIP line per behaviour.

Without ``--url`` the check starts its own gateways (a free port, its own ``LLF_HOME``): the
first with ``model_overrides`` giving the second model ``tensor_parallel_size 2`` (on ≥ 2 GPUs)
and a pinned oversized model for the fit refusal; the second with ``sleep_mode``. With ``--url``
(or ``LLF_INFERENCE_URL`` and ``--use-running``) it checks a running gateway as configured,
and skips what needs those settings. Exit code 1 if any check failed (no GPU is a failed
inventory), 2 if a gateway could not be started.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.gpucheck import checks, launch
from scripts.gpucheck.checks import Api, Result

DEFAULT_MODELS = "Qwen/Qwen2.5-0.5B-Instruct,Qwen/Qwen2.5-1.5B-Instruct"
FAKE_MODELS = "llf-check/chat,llf-check/coder"
FAKE_GPUS = "24,24,48,80"
OVERSIZED = "llf-check/oversized"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/gpu-check.sh", description=__doc__)
    parser.add_argument("--fake", nargs="?", const=FAKE_GPUS, metavar="GPUS", help=f"fake GPUs (default {FAKE_GPUS})")
    parser.add_argument("--models", help=f"two verified models A,B (default {DEFAULT_MODELS}; --fake: pinned dirs)")
    parser.add_argument("--url", help="check this running gateway instead of starting one")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with the gateway logs")
    parser.add_argument("--workdir", type=Path, help="work directory (kept); default a new temporary one")
    return parser.parse_args(argv)


def inventory_check(fake: str | None) -> tuple[Result, int]:
    """The GPUs NVML lists (the fake one with ``--fake``), as the gateway's ``devices.discover`` sees them."""
    from llf_inference.devices import discover

    if fake is not None:
        from tests.support.nvml import FakeNvml

        inventory = discover(FakeNvml.parse(fake))
    else:
        inventory = discover()
    gpus = ", ".join(
        f"GPU{g.index} {g.name} {g.free_bytes / 2**30:.1f}/{g.total_bytes / 2**30:.1f} GiB free" for g in inventory.gpus
    )
    if not inventory.gpus:
        return Result("NVML inventory", "FAIL", f"no GPU: {inventory.nvml_error}"), 0
    return Result("NVML inventory", "PASS", f"{len(inventory.gpus)} GPUs: {gpus}"), len(inventory.gpus)


def base_settings(workdir: Path, fake: str | None, models: list[str], gpus: int) -> dict[str, Any]:
    overrides: dict[str, Any] = {OVERSIZED: {"max_model_len": 1 << 20}}
    if gpus >= 2:
        overrides[models[1]] = {"tensor_parallel_size": 2}
    settings: dict[str, Any] = {
        "model_overrides": overrides,
        "loading_comment_interval_s": 0.2 if fake is not None else 2,
        "retry_after_s": 1,
    }
    pins = {OVERSIZED: launch.oversized_model(workdir)}
    if fake is not None:
        settings.update(launch.fake_engine_settings())
        pins.update(launch.fake_models(workdir, models))
    settings["model_paths"] = pins
    return settings


@contextmanager
def gateway(workdir: Path, settings: dict[str, Any], fake: str | None, name: str) -> Iterator[Api]:
    with launch.GatewayRun(workdir, settings, fake_nvml=fake, name=name) as run:
        api = Api(run.url, os.environ.get("LLF_API_KEY"))
        try:
            yield api
        finally:
            api.http.close()


def run_checks(args: argparse.Namespace, workdir: Path) -> list[Result]:
    inventory, gpus = inventory_check(args.fake)
    results = [inventory]
    report(inventory)
    if not gpus:
        return results
    models = (args.models or (FAKE_MODELS if args.fake is not None else DEFAULT_MODELS)).split(",")
    first, second = models[0], models[1]

    def main_checks(api: Api, own: bool) -> None:
        results.append(report(checks.two_models(api, first, second)))
        if own:
            results.append(report(checks.tensor_parallel(api, second, gpus)))
        results.append(report(checks.replica_per_gpu(api, first, gpus)))
        if own:
            results.append(report(checks.fit_refusal(api, OVERSIZED)))
        else:
            results.append(report(Result("fit refusal", "SKIP", "needs the oversized model this check pins")))
        results.append(report(checks.load_on_demand(api, first)[0]))
        results.append(report(checks.keep_alive_unload(api, first)))

    if args.url:
        api = Api(args.url, os.environ.get("LLF_API_KEY"))
        main_checks(api, own=False)
        results.append(report(checks.sleep_wake(api, first)))
        return results
    settings = base_settings(workdir, args.fake, models, gpus)
    with gateway(workdir, settings, args.fake, "-1") as api:
        main_checks(api, own=True)
    with gateway(workdir, {**settings, "sleep_mode": True}, args.fake, "-2-sleep") as api:
        results.append(report(checks.sleep_wake(api, first)))
    return results


def report(result: Result) -> Result:
    print(result.line(), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="llf-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mode = f"fake GPUs {args.fake} + fake engine" if args.fake is not None else "real GPUs + vLLM"
    print(f"llf gpu-check ({mode}); logs in {workdir}", flush=True)
    try:
        results = run_checks(args, workdir)
    except (RuntimeError, OSError) as exc:
        print(f"FAIL  {'gpu-check':<18} could not run: {exc}", flush=True)
        return 2
    failed = [r.name for r in results if r.verdict == "FAIL"]
    print(f"{len(results) - len(failed)} of {len(results)} passed or skipped; failed: {', '.join(failed) or 'none'}")
    if not failed and not args.keep_logs and args.workdir is None:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
