"""Ports of the local stack: read from the settings' URLs, with a way around a foreign Redis.

The API ports are what the CLI and the user's tools talk to, so they are never moved silently:
a busy one is an error that says which variable to set. Redis is private to the stack, so when
its port is held by someone else's Redis we take the next free one and hand the services the
new ``REDIS_URL``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", ""})


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def with_port(url: str, port: int) -> str:
    """The same URL with another port (user, password, path and query kept)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    creds = netloc[0] + "@" if len(netloc) == 2 else ""
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, f"{creds}{host}:{port}", parts.path, parts.query, parts.fragment))


def is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOCAL_HOSTS


def listening(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    """Something accepts connections on the port (a connect, so TIME_WAIT sockets do not count)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_redis_port(
    preferred: int,
    ours: int | None,
    is_listening: Callable[[int], bool] = listening,
    fallback: Callable[[], int] = free_port,
    tries: int = 20,
) -> int:
    """Keep our own running Redis; else the preferred port if free; else the next free one."""
    if ours is not None:
        return ours
    for port in range(preferred, min(preferred + tries, 65536)):
        if not is_listening(port):
            return port
    return fallback()


def busy_api_ports(ports: dict[str, int], is_listening: Callable[[int], bool] = listening) -> list[str]:
    """Messages for API ports that something else already holds."""
    return [
        f"port {port} ({name}) is already in use by another program: stop it, or set "
        f"LLF_{name.upper()}_URL=http://127.0.0.1:<free port>"
        for name, port in ports.items()
        if is_listening(port)
    ]
