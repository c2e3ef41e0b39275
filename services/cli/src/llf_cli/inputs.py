"""Reading what the person types in the REPL: prompt_toolkit on a terminal, plain lines otherwise.

Multi-line input works the same in both: end a line with ``\\`` to continue it, or open a
block with ``\"\"\"`` and close it with ``\"\"\"`` (as in Ollama). On a terminal Alt-Enter (Esc
then Enter) also inserts a newline. ``read()`` raises ``EOFError`` for Ctrl-D / end of input
and ``KeyboardInterrupt`` for Ctrl-C at the prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TextIO

PROMPT = ">>> "
CONTINUATION = "... "
PLACEHOLDER = "Send a message (/? for help)"
BLOCK = '"""'


class Reader(Protocol):
    def read(self) -> str: ...


def needs_more(text: str) -> bool:
    """Is the message still open: a trailing backslash, or an unclosed \"\"\" block?"""
    if text.endswith("\\"):
        return True
    return text.lstrip().startswith(BLOCK) and text.count(BLOCK) % 2 == 1


def finish(text: str) -> str:
    """The message itself: without the \"\"\" fences and surrounding blank space."""
    text = text.strip()
    if text.startswith(BLOCK) and text.endswith(BLOCK) and len(text) >= 2 * len(BLOCK):
        text = text[len(BLOCK) : -len(BLOCK)]
    return text.strip()


class PlainReader:
    """Lines from a stream (a pipe, a file, CliRunner's input): no prompt, no editing."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def read(self) -> str:
        text = ""
        while True:
            line = self.stream.readline()
            if not line:
                if text:
                    return finish(text.rstrip("\\"))
                raise EOFError
            text += line.rstrip("\r\n")
            if not needs_more(text):
                return finish(text)
            text = text[:-1] + "\n" if text.endswith("\\") else text + "\n"


class TerminalReader:
    """prompt_toolkit with a history file; Enter sends unless the message is still open."""

    def __init__(self, history_path: Path, **session: Any) -> None:
        """``session`` goes to ``PromptSession`` (tests pass a pipe input and a dummy output)."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory

        history: History
        try:
            history_path.parent.mkdir(parents=True, exist_ok=True)
            history_path.touch(exist_ok=True)
            history = FileHistory(str(history_path))
        except OSError:
            history = InMemoryHistory()
        self.session: Any = PromptSession(
            history=history,
            key_bindings=_key_bindings(),
            prompt_continuation=lambda width, line_number, soft_wrap: CONTINUATION,
            placeholder=PLACEHOLDER,
            **session,
        )

    def read(self) -> str:
        return finish(self.session.prompt(PROMPT))


def _key_bindings() -> Any:
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        text = buffer.text
        if not needs_more(text):
            buffer.validate_and_handle()
        elif text.endswith("\\"):
            buffer.text = text[:-1] + "\n"
            buffer.cursor_position = len(buffer.text)
        else:
            buffer.insert_text("\n")

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return bindings
