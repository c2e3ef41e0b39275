"""The engine dtype llf chooses per CPU, read from recorded flags of real processors.

``data/cpuinfo/`` holds the first processor's lines of ``/proc/cpuinfo`` (and one ``lscpu``)
of: an Intel Xeon with AMX (Sapphire Rapids), the AMD EPYC (Zen 4, AVX-512 BF16, no AMX) the
suite runs on, and two CPUs without AVX-512 (AMD EPYC Rome, Intel Skylake client).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from llf_inference.cpu import CpuInfo, choose_dtype, host_cpu, parse_cpuinfo
from llf_inference.engine.spec import EngineSpec
from llf_inference.settings import EngineOptions, InferenceSettings

DATA = Path(__file__).with_name("data") / "cpuinfo"


def recorded(name: str) -> CpuInfo:
    return parse_cpuinfo((DATA / name).read_text())


@pytest.mark.parametrize(
    ("name", "vendor", "dtype"),
    [
        ("intel-xeon-sapphire-rapids.txt", "GenuineIntel", "bfloat16"),
        ("amd-epyc-zen4-kvm.txt", "AuthenticAMD", "bfloat16"),
        ("amd-epyc-zen4-kvm.lscpu.txt", "AuthenticAMD", "bfloat16"),
        ("amd-epyc-rome.txt", "AuthenticAMD", "float32"),
        ("intel-core-skylake-client.txt", "GenuineIntel", "float32"),
    ],
)
def test_each_recorded_cpu_gets_its_dtype(name: str, vendor: str, dtype: str) -> None:
    cpu = recorded(name)
    assert cpu.vendor == vendor and "sse2" in cpu.flags
    choice = choose_dtype(cpu)
    assert choice.dtype == dtype
    assert choice.reason


def test_the_flags_that_decide_are_where_the_records_say() -> None:
    intel = recorded("intel-xeon-sapphire-rapids.txt")
    assert {"amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_fp16"} <= intel.flags
    amd = recorded("amd-epyc-zen4-kvm.txt")
    assert "avx512_bf16" in amd.flags and not any(flag.startswith("amx") for flag in amd.flags)
    assert recorded("amd-epyc-zen4-kvm.lscpu.txt").flags == amd.flags
    for name in ("amd-epyc-rome.txt", "intel-core-skylake-client.txt"):
        assert not any(flag.startswith("avx512") for flag in recorded(name).flags)


def test_avx512_without_bf16_gets_float32() -> None:
    zen4 = recorded("amd-epyc-zen4-kvm.txt")
    ice_lake_like = CpuInfo(zen4.vendor, zen4.model, zen4.flags - {"avx512_bf16"})
    assert "avx512f" in ice_lake_like.flags
    assert choose_dtype(ice_lake_like).dtype == "float32"


def test_amx_without_its_bf16_part_is_not_enough_on_its_own() -> None:
    intel = recorded("intel-xeon-sapphire-rapids.txt")
    assert (
        choose_dtype(CpuInfo(intel.vendor, intel.model, intel.flags - {"amx_bf16", "avx512_bf16"})).dtype == "float32"
    )


def test_a_cpu_whose_flags_are_unknown_is_left_to_vllm() -> None:
    assert choose_dtype(None).dtype == "auto"
    assert choose_dtype(parse_cpuinfo("processor : 0\nFeatures : fp asimd bf16\n")).dtype == "auto"


def test_an_unreadable_cpuinfo_is_no_cpu(tmp_path: Path) -> None:
    assert host_cpu.__wrapped__(tmp_path / "missing") is None


def test_auto_on_a_cpu_engine_becomes_the_hosts_choice(tmp_path: Path) -> None:
    settings = InferenceSettings(home=tmp_path, device="cpu", engine_command=["vllm"])
    chosen = choose_dtype(host_cpu()).dtype
    assert settings.engine_options("o/m").dtype == chosen
    argv = " ".join(EngineSpec.from_settings(settings, "o/m", "/m").command(1))
    assert f"--dtype {chosen}" in argv


def test_a_dtype_the_user_set_always_wins(tmp_path: Path) -> None:
    assert InferenceSettings(home=tmp_path, device="cpu", dtype="bfloat16").engine_options("o/m").dtype == "bfloat16"
    overridden = InferenceSettings(
        home=tmp_path, device="cpu", model_overrides={"o/m": EngineOptions(dtype="float16")}
    ).engine_options("o/m")
    assert overridden.dtype == "float16"


def test_a_gpu_engine_keeps_vllms_auto(tmp_path: Path) -> None:
    assert InferenceSettings(home=tmp_path, device="cuda").engine_options("o/m").dtype == "auto"
