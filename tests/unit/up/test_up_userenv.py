"""The served model becomes the CLI's default only when the user has not chosen one; llf goes on PATH."""

from __future__ import annotations

import json
import os

from scripts.up.userenv import choose_model, put_on_path, set_cli_default

BUILTIN = "Qwen/Qwen2.5-0.5B-Instruct"


def test_model_argument_beats_environment_and_config():
    choice = choose_model("a/b", {"LLF_DEFAULT_MODEL": "c/d"}, {"default_model": "e/f"}, None, BUILTIN)
    assert (choice.model, choice.source) == ("a/b", "--model")


def test_users_config_value_is_used_but_our_own_demo_value_is_not():
    assert choose_model(None, {}, {"default_model": "e/f"}, None, BUILTIN).model == "e/f"
    assert choose_model(None, {}, {"default_model": "llf/demo-tiny"}, "llf/demo-tiny", BUILTIN).model == BUILTIN


def test_served_model_is_written_into_a_missing_config(tmp_path):
    path = tmp_path / "config.json"
    update = set_cli_default(path, "llf/demo-tiny", {}, None)
    assert update.wrote == "llf/demo-tiny"
    assert json.loads(path.read_text()) == {"default_model": "llf/demo-tiny"}
    assert path.stat().st_mode & 0o777 == 0o600


def test_other_keys_and_the_file_mode_are_kept(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"api_key": "s", "cli": {"temperature": 0.1}}))
    os.chmod(path, 0o640)
    set_cli_default(path, "a/b", {}, None)
    assert json.loads(path.read_text()) == {"api_key": "s", "cli": {"temperature": 0.1}, "default_model": "a/b"}
    assert path.stat().st_mode & 0o777 == 0o640


def test_users_own_default_is_never_overwritten(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"default_model": "mine/model"}))
    update = set_cli_default(path, "llf/demo-tiny", {}, None)
    assert update.wrote is None and "llf chat -m llf/demo-tiny" in (update.note or "")
    assert json.loads(path.read_text())["default_model"] == "mine/model"


def test_a_value_we_wrote_before_is_ours_to_update(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"default_model": "llf/demo-tiny"}))
    assert set_cli_default(path, "a/b", {}, "llf/demo-tiny").wrote == "a/b"
    assert json.loads(path.read_text())["default_model"] == "a/b"


def test_environment_default_is_respected_and_explained(tmp_path):
    update = set_cli_default(tmp_path / "config.json", "a/b", {"LLF_DEFAULT_MODEL": "c/d"}, None)
    assert update.wrote is None and "LLF_DEFAULT_MODEL" in (update.note or "")
    assert not (tmp_path / "config.json").exists()


def test_broken_config_is_left_alone(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    assert set_cli_default(path, "a/b", {}, None).wrote is None
    assert path.read_text() == "{not json"


def make_llf(tmp_path):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    llf = venv_bin / "llf"
    llf.write_text("#!/bin/sh\n")
    llf.chmod(0o755)
    return venv_bin, llf


def test_llf_is_linked_into_local_bin_when_that_is_on_path(tmp_path):
    venv_bin, llf = make_llf(tmp_path)
    local_bin = tmp_path / "home" / ".local" / "bin"
    local_bin.mkdir(parents=True)
    env = {"PATH": f"{venv_bin}:{local_bin}:/usr/bin"}
    message = put_on_path(llf, env, tmp_path / "home", tmp_path / "llf-home", hidden=venv_bin, system_bin=tmp_path)
    assert (local_bin / "llf").resolve() == llf and "linked" in message
    again = put_on_path(llf, env, tmp_path / "home", tmp_path / "llf-home", hidden=venv_bin, system_bin=tmp_path)
    assert "on your PATH" in again


def test_without_local_bin_or_system_bin_on_path_the_exact_export_line_is_printed(tmp_path):
    venv_bin, llf = make_llf(tmp_path)
    system_bin = tmp_path / "usr-local-bin"
    system_bin.mkdir()
    env = {"PATH": f"{venv_bin}:/usr/bin"}
    message = put_on_path(llf, env, tmp_path / "home", tmp_path / "h", hidden=venv_bin, system_bin=system_bin)
    assert f'export PATH="{tmp_path / "h" / "bin"}:$PATH"' in message
    assert (tmp_path / "h" / "bin" / "llf").resolve() == llf
    assert not (system_bin / "llf").exists()


def test_a_missing_local_bin_that_path_names_is_created(tmp_path):
    venv_bin, llf = make_llf(tmp_path)
    local_bin = tmp_path / "home" / ".local" / "bin"
    env = {"PATH": f"{venv_bin}:{local_bin}:/usr/bin"}
    message = put_on_path(llf, env, tmp_path / "home", tmp_path / "h", hidden=venv_bin, system_bin=tmp_path / "none")
    assert message == f"linked {local_bin / 'llf'} -> {llf}"
    assert (local_bin / "llf").resolve() == llf


def test_without_local_bin_on_path_a_writable_usr_local_bin_gets_the_link(tmp_path):
    """Root's default PATH has /usr/local/bin but no ~/.local/bin: a new shell must find llf."""
    venv_bin, llf = make_llf(tmp_path)
    system_bin = tmp_path / "usr-local-bin"
    system_bin.mkdir()
    env = {"PATH": f"{venv_bin}:{system_bin}:/usr/bin"}
    message = put_on_path(llf, env, tmp_path / "home", tmp_path / "h", hidden=venv_bin, system_bin=system_bin)
    assert message == f"linked {system_bin / 'llf'} -> {llf}"
    assert (system_bin / "llf").resolve() == llf
    again = put_on_path(llf, env, tmp_path / "home", tmp_path / "h", hidden=venv_bin, system_bin=system_bin)
    assert again == f"`llf` is on your PATH ({system_bin / 'llf'})"


def test_an_unwritable_usr_local_bin_falls_back_to_the_export_line(tmp_path, monkeypatch):
    venv_bin, llf = make_llf(tmp_path)
    system_bin = tmp_path / "usr-local-bin"
    system_bin.mkdir()
    monkeypatch.setattr("scripts.up.userenv.os.access", lambda path, mode: False)
    env = {"PATH": f"{venv_bin}:{system_bin}:/usr/bin"}
    message = put_on_path(llf, env, tmp_path / "home", tmp_path / "h", hidden=venv_bin, system_bin=system_bin)
    assert message == f'`llf` is not on your PATH; run:  export PATH="{tmp_path / "h" / "bin"}:$PATH"'
    assert not (system_bin / "llf").exists()


def test_someone_elses_llf_file_is_never_replaced(tmp_path):
    venv_bin, llf = make_llf(tmp_path)
    system_bin = tmp_path / "usr-local-bin"
    system_bin.mkdir()
    theirs = system_bin / "llf"
    theirs.write_text("#!/bin/sh\necho theirs\n")
    env = {"PATH": f"{venv_bin}:{system_bin}:/usr/bin"}
    message = put_on_path(llf, env, tmp_path / "home", tmp_path / "h", hidden=venv_bin, system_bin=system_bin)
    assert "export PATH=" in message
    assert theirs.read_text() == "#!/bin/sh\necho theirs\n"


def test_a_stale_link_from_another_checkout_is_repointed(tmp_path):
    venv_bin, llf = make_llf(tmp_path)
    _, old_llf = make_llf(tmp_path / "old")
    system_bin = tmp_path / "usr-local-bin"
    system_bin.mkdir()
    (system_bin / "llf").symlink_to(old_llf)
    env = {"PATH": f"{venv_bin}:{system_bin}:/usr/bin"}
    message = put_on_path(llf, env, tmp_path / "home", tmp_path / "h", hidden=venv_bin, system_bin=system_bin)
    assert message == f"linked {system_bin / 'llf'} -> {llf}"
    assert (system_bin / "llf").resolve() == llf
