"""Container health probes (Docker HEALTHCHECK and Compose ``healthcheck``), standard library first.

``healthcheck.py http URL``   healthy when URL answers 2xx within 3 s (the services' ``/healthz``).
``healthcheck.py rq-worker``  healthy when an RQ worker started on this host (container) is
                              registered in Redis (``REDIS_URL``): it proves the worker got as far as
                              its work loop, not only that the process exists.
Exit 0 = healthy, 1 = unhealthy; one line on stdout says why (``docker inspect`` shows it).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path


def http(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            print(f"{url}: {response.status}")
            return 0 if 200 <= response.status < 300 else 1
    except Exception as exc:  # any failure is "unhealthy", with the reason
        print(f"{url}: {exc}")
        return 1


def rq_worker() -> int:
    from redis import Redis
    from rq import Worker

    password_file = os.environ.get("LLF_REDIS_PASSWORD_FILE")  # Kubernetes: a Secret mounted as a file
    password = Path(password_file).read_text(encoding="utf-8").strip() if password_file else None
    connection = Redis.from_url(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), password=password or None, socket_timeout=3
    )
    host = socket.gethostname()
    workers = [w.name for w in Worker.all(connection=connection) if w.hostname == host]
    print(f"rq workers on {host}: {workers or 'none'}")
    return 0 if workers else 1


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        return http(argv[1])
    if argv == ["rq-worker"]:
        try:
            return rq_worker()
        except Exception as exc:
            print(f"rq-worker: {exc}")
            return 1
    print("usage: healthcheck.py http URL | rq-worker")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
