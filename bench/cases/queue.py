"""#6 Queue latency: enqueue → job start with an idle worker, llf's registry vs bare RQ.

llf side: ``POST /v1/models/{repo}/verify`` on a small present model, one job at a time;
the latency is ``started_at - enqueued_at`` of the job as the API reports it (both stamped
by RQ in Redis, so polling does not blur it). Bare side, alternating: ``Queue.enqueue`` of a
no-op on another queue of the same Redis, served by a plain ``rq worker`` — what RQ itself
costs on this machine. The ratio is llf's overhead (its worker class, maintenance, API).
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from redis import Redis
from rq import Queue
from rq.job import Job

from bench import api, stack
from bench.context import Context
from bench.procs import VENV_BIN, Proc
from bench.report import TIMES, Result, percentile

MODEL = "bench/queue-tiny"
JOBS_PER_REP = 20
BARE_QUEUE = "llf-bench-bare"


def noop() -> None:
    """The bare side's job: nothing, so only the queue's own latency is measured."""


def _seconds(start: str | datetime | None, end: str | datetime | None) -> float:
    if start is None or end is None:
        return float("nan")
    a = start if isinstance(start, datetime) else datetime.fromisoformat(start)
    b = end if isinstance(end, datetime) else datetime.fromisoformat(end)
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return (b - a).total_seconds()


def llf_latency(http: httpx.Client) -> float:
    info = api.verify(http, MODEL)
    job_id = info.get("id") or info.get("job_id")
    final = api.wait_job(http, str(job_id), timeout=120, poll=0.01)
    return _seconds(final.get("enqueued_at"), final.get("started_at"))


def bare_latency(queue: Queue) -> float:
    job = queue.enqueue(noop, result_ttl=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = Job.fetch(job.id, connection=queue.connection)
        if job.get_status(refresh=False) in ("finished", "failed"):
            return _seconds(job.enqueued_at, job.started_at)
        time.sleep(0.01)
    raise TimeoutError("bare rq job not finished in 60 s")


def run(ctx: Context, result: Result) -> None:
    registry = stack.registry(ctx)
    stack.add_tiny_model(stack.hub(ctx), MODEL)
    redis_url = stack.redis(ctx).url
    with httpx.Client(base_url=registry.url, timeout=30) as http:
        api.pull_and_wait(http, MODEL)
        worker = Proc(
            [str(VENV_BIN / "rq"), "worker", "--url", redis_url, "--quiet", "--with-scheduler", BARE_QUEUE],
            ctx.workdir / "queue" / "rq-worker.log",
        )
        try:
            queue = Queue(BARE_QUEUE, connection=Redis.from_url(redis_url))
            bare_latency(queue)  # warm-up: the worker has registered and is blocked on its queue
            llf_latency(http)
            for _ in range(ctx.reps):
                ours, theirs = [], []
                for _ in range(JOBS_PER_REP):
                    theirs.append(bare_latency(queue))
                    ours.append(llf_latency(http))
                    time.sleep(0.05)  # idle worker: nothing queued behind the job
                for key, values, who in (("llf", ours, "llf verify job"), ("rq", theirs, "bare rq no-op")):
                    for q in (50, 99):
                        result.metric(f"{key}_p{q}_ms", "ms", f"{who}: enqueue -> start p{q}").add(
                            percentile(values, q) * 1e3
                        )
                result.metric("ratio_p50", TIMES, "llf p50 / bare rq p50").add(
                    percentile(ours, 50) / max(percentile(theirs, 50), 1e-6)
                )
        finally:
            worker.stop()
    result.params.update({"jobs_per_rep": JOBS_PER_REP, "model": MODEL, "bare_worker": "rq worker (default class)"})
    result.commands["llf"] = f"POST {registry.url}/v1/models/{MODEL}/verify; started_at - enqueued_at of its job"
    result.commands["bare"] = f"rq worker --url {redis_url} {BARE_QUEUE}; Queue.enqueue(noop)"
    result.reported += [
        ("enqueue → start p50 (llf)", "llf_p50_ms"),
        ("enqueue → start p99 (llf)", "llf_p99_ms"),
        ("enqueue → start p50 (bare rq)", "rq_p50_ms"),
        ("enqueue → start p99 (bare rq)", "rq_p99_ms"),
        ("llf p50 ÷ bare rq p50", "ratio_p50"),
    ]
