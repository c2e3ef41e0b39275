"""The engine start-up hook: every engine process asks Linux for AMX tile permission first.

The hook is plain stdlib run by the engine's own Python; here its functions run against a fake
libc (the numbers of the system call are the point), and the spec's environment is checked to
put the hook first on ``PYTHONPATH`` — where ``spawn``ed vLLM workers inherit it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from llf_inference.engine.spec import STARTUP_DIR, EngineSpec
from llf_inference.engine.startup import sitecustomize as hook
from llf_inference.settings import EngineOptions


class FakeLibc:
    """Records ``syscall`` arguments; answers ``result`` and, for GET, writes ``mask``."""

    def __init__(self, result: int = 0, mask: int = 0) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.result = result
        self.mask = mask

    def syscall(self, *args: Any) -> int:
        self.calls.append(args)
        if args[1] == hook.ARCH_GET_XCOMP_PERM:
            args[2]._obj.value = self.mask  # the c_uint64 behind ctypes.byref
        return self.result


@pytest.fixture
def on_x86_64_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook, "_x86_64_linux", lambda: True)


def spec(env: dict[str, str] | None = None) -> EngineSpec:
    return EngineSpec(model="o/m", path="/m", options=EngineOptions(), launcher=("vllm",), env=env or {})


def test_the_hook_asks_for_xtiledata_with_arch_prctl(on_x86_64_linux: None) -> None:
    libc = FakeLibc(result=0)
    assert hook.request_amx_permission(libc) is True
    # arch_prctl is system call 158 on x86_64; ARCH_REQ_XCOMP_PERM = 0x1023; XFEATURE_XTILEDATA = 18
    assert libc.calls == [(158, 0x1023, 18)]


def test_the_hook_reports_a_refusal_where_the_cpu_has_no_amx(on_x86_64_linux: None) -> None:
    assert hook.request_amx_permission(FakeLibc(result=-1)) is False


def test_the_hook_does_nothing_off_x86_64_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook, "_x86_64_linux", lambda: False)
    libc = FakeLibc()
    assert hook.request_amx_permission(libc) is False
    assert hook.amx_permitted(libc) is False
    assert libc.calls == []


def test_the_granted_permission_is_read_back_from_the_xtiledata_bit(on_x86_64_linux: None) -> None:
    granted = FakeLibc(result=0, mask=0xE7 | 1 << 17 | 1 << 18)
    assert hook.amx_permitted(granted) is True
    assert granted.calls[0][:2] == (158, 0x1022)
    assert hook.amx_permitted(FakeLibc(result=0, mask=0xE7)) is False  # AVX-512 state only: no AMX


def test_the_real_system_call_answers_without_harm_on_this_host() -> None:
    granted = hook.request_amx_permission()
    assert granted == hook.amx_permitted(ctypes.CDLL(None, use_errno=True))


def test_main_leaves_its_outcome_for_child_processes(monkeypatch: pytest.MonkeyPatch, on_x86_64_linux: None) -> None:
    monkeypatch.setattr(hook, "request_amx_permission", lambda: True)
    monkeypatch.setattr(hook, "run_next_sitecustomize", lambda: None)
    monkeypatch.delenv(hook.MARKER, raising=False)
    hook.main()
    assert os.environ[hook.MARKER] == "granted"
    monkeypatch.setattr(hook, "request_amx_permission", lambda: False)
    hook.main()
    assert os.environ[hook.MARKER] == "unavailable"


def test_a_sitecustomize_further_down_the_path_still_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('yes')\n")
    monkeypatch.setattr(sys, "path", [str(STARTUP_DIR), str(other), *sys.path])
    hook.run_next_sitecustomize()
    assert (tmp_path / "ran").read_text() == "yes"


def test_the_hook_does_not_run_itself_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [str(STARTUP_DIR), str(tmp_path)])
    hook.run_next_sitecustomize()  # finds only itself: nothing to run, no recursion


def test_the_engine_environment_puts_the_hook_first_on_pythonpath() -> None:
    env = spec().environment({"PATH": "/bin", "PYTHONPATH": "/site/a:/site/b"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(STARTUP_DIR), "/site/a", "/site/b"]
    assert spec().environment({})["PYTHONPATH"] == str(STARTUP_DIR)


def test_an_engine_env_pythonpath_keeps_the_hook_first() -> None:
    env = spec({"PYTHONPATH": f"/mine{os.pathsep}{STARTUP_DIR}"}).environment({"PYTHONPATH": "/ignored"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(STARTUP_DIR), "/mine"]


def test_the_hook_ships_with_the_package() -> None:
    shipped = resources.files("llf_inference.engine.startup") / "sitecustomize.py"
    assert shipped.is_file()
    assert Path(str(shipped)).parent == STARTUP_DIR
