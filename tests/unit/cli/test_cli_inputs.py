"""The REPL's input: multi-line rules, the plain reader, and prompt_toolkit's key bindings."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from llf_cli.inputs import PlainReader, TerminalReader, finish, needs_more
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput


@pytest.mark.parametrize(
    ("text", "more"),
    [
        ("hello", False),
        ("hello \\", True),
        ('"""', True),
        ('"""\nabc', True),
        ('"""\nabc\n"""', False),
        ('say """hi"""', False),
        ("", False),
    ],
)
def test_a_message_stays_open_after_a_backslash_or_an_unclosed_block(text: str, more: bool) -> None:
    assert needs_more(text) is more


def test_finish_strips_the_block_fences() -> None:
    assert finish('  """\nabc\n"""  ') == "abc"
    assert finish("plain") == "plain"


def test_plain_reader_joins_continued_lines_and_raises_eof_at_the_end() -> None:
    reader = PlainReader(io.StringIO('one \\\ntwo\n"""\nx\n"""\nlast\\'))
    assert [reader.read(), reader.read(), reader.read()] == ["one \ntwo", "x", "last"]
    with pytest.raises(EOFError):
        reader.read()


def read_typed(tmp_path: Path, typed: str) -> str:
    with create_pipe_input() as pipe:
        reader = TerminalReader(tmp_path / "sub" / "history", input=pipe, output=DummyOutput())
        pipe.send_text(typed)
        return reader.read()


def test_terminal_reader_sends_on_enter_and_keeps_history(tmp_path: Path) -> None:
    assert read_typed(tmp_path, "hello\r") == "hello"
    assert "hello" in (tmp_path / "sub" / "history").read_text()


def test_terminal_reader_continues_after_a_backslash(tmp_path: Path) -> None:
    assert read_typed(tmp_path, "one\\\rtwo\r") == "one\ntwo"


def test_terminal_reader_keeps_a_triple_quoted_block_open(tmp_path: Path) -> None:
    assert read_typed(tmp_path, '"""\rabc\r\rdef\r"""\r') == "abc\n\ndef"


def test_terminal_reader_alt_enter_inserts_a_newline(tmp_path: Path) -> None:
    assert read_typed(tmp_path, "one\x1b\rtwo\r") == "one\ntwo"


def test_terminal_reader_ctrl_d_is_eof_and_ctrl_c_interrupts(tmp_path: Path) -> None:
    with pytest.raises(EOFError):
        read_typed(tmp_path, "\x04")
    with pytest.raises(KeyboardInterrupt):
        read_typed(tmp_path, "abc\x03")


def test_an_unwritable_history_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    reader = TerminalReader(blocker / "history")
    assert type(reader.session.history).__name__ == "InMemoryHistory"
