"""Which dtype a vLLM CPU engine runs in on this host, chosen from the processor's flags.

Why: vLLM's ``--dtype auto`` picks bfloat16 on any CPU, and which kernels that selects (and how
fast they are) depends on the instruction set: AMX tiles on Intel Xeon since Sapphire Rapids,
AVX-512 BF16 on AMD Zen 4 and Intel Cooper Lake, emulation elsewhere. The rule below comes from
benchmark #9 (``python -m bench.run dtype``, float32 against bfloat16 on the same engine) on the
CPUs llf was run on; the README of the inference service has the figures. The user's own
``dtype`` (global or per model) always wins: this is only what ``auto`` means on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """The few facts of a processor the dtype rule reads (the first processor's, all are alike)."""

    vendor: str
    model: str
    flags: frozenset[str]


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype for ``--dtype`` and, for logs and docs, why."""

    dtype: str
    reason: str


def parse_cpuinfo(text: str) -> CpuInfo:
    """Vendor, model name and flags from ``/proc/cpuinfo`` or ``lscpu`` output."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:
            fields[key] = value.strip()
    return CpuInfo(
        vendor=fields.get("vendor_id") or fields.get("vendor id") or "",
        model=fields.get("model name") or "",
        flags=frozenset(fields.get("flags", "").split()),
    )


@lru_cache(maxsize=1)
def host_cpu(path: Path = CPUINFO) -> CpuInfo | None:
    """This machine's processor, or ``None`` where ``/proc/cpuinfo`` cannot be read."""
    try:
        return parse_cpuinfo(path.read_text(errors="replace"))
    except OSError:
        return None


def choose_dtype(cpu: CpuInfo | None) -> DtypeChoice:
    """The engine dtype for a CPU, when the user left ``dtype`` at ``auto``."""
    if cpu is None or not cpu.flags:
        return DtypeChoice("auto", "the CPU's flags are unknown: vLLM chooses")
    if {"amx_bf16", "amx_tile"} <= cpu.flags:
        return DtypeChoice("bfloat16", "AMX (amx_bf16): vLLM's bfloat16 kernels run on the matrix tiles")
    return DtypeChoice("float32", "no AMX: bfloat16's first token was slower than float32's (benchmark #9)")
