"""``llf chat``: the conversation, streaming an answer, and the choice of one-shot or REPL (``repl.py``).

Answers stream token by token from the gateway's OpenAI chat completions (SSE, with
``stream_options.include_usage`` so the token count is the engine's own). Ctrl-C during an
answer cancels that answer (closing the stream stops the generation) and leaves the
conversation as it was before the question; Ctrl-D or ``/bye`` leaves the REPL.
"""

from __future__ import annotations

import io
import select
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import click

from llf_cli import flows, inputs
from llf_cli.errors import CLIError

if TYPE_CHECKING:
    from llf_cli.main import State

OPTION_TYPES: dict[str, Callable[[str], float | int]] = {
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "seed": int,
}
OPTION_RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature": (0.0, 2.0),
    "top_p": (1e-9, 1.0),
    "max_tokens": (1, None),
    "seed": (None, None),
}


def new_session_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Conversation:
    """What is sent with every question; ``/save`` writes exactly this (but ``session``) as JSON.

    ``session`` goes out as ``X-Session-ID``: the gateway routes every turn of one conversation
    to the engine that already holds its prefix in cache. A cleared or loaded conversation is a
    new one, with a new id.
    """

    model: str
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    options: dict[str, float | int | None] = field(default_factory=dict)
    session: str = field(default_factory=new_session_id)

    def clear(self) -> None:
        self.messages.clear()
        self.session = new_session_id()

    def request(self, question: str) -> dict[str, Any]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [*system, *self.messages, {"role": "user", "content": question}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.update({key: value for key, value in self.options.items() if value is not None})
        return body

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "system": self.system, "messages": self.messages, "options": self.options}

    def load(self, data: Any) -> None:
        """Take messages, system prompt and options from a /save file (the model stays)."""
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or not all(map(is_message, messages)):
            raise CLIError('not a conversation file: expected {"messages": [{"role": ..., "content": ...}]}')
        options = data.get("options") or {}
        for key, value in options.items():
            check_option(key, value)
        self.messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        self.session = new_session_id()
        self.system = data.get("system") if isinstance(data.get("system"), str) else None
        self.options.update(options)


def is_message(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("role") in {"user", "assistant", "system"}
        and isinstance(value.get("content"), str)
    )


def check_option(name: str, value: Any) -> float | int | None:
    """A /set value parsed and range-checked; raises ``CLIError`` with the allowed range."""
    if name not in OPTION_TYPES:
        raise CLIError(f"unknown option {name!r}; /set accepts {', '.join(OPTION_TYPES)}")
    if value is None or (isinstance(value, str) and value.lower() in {"none", "default"}):
        return None
    try:
        parsed = OPTION_TYPES[name](value)
    except (TypeError, ValueError):
        raise CLIError(f"{name} must be a {OPTION_TYPES[name].__name__}, not {value!r}") from None
    low, high = OPTION_RANGES[name]
    if (low is not None and parsed < low) or (high is not None and parsed > high):
        raise CLIError(f"{name} must be between {low if low is not None else '-∞'} and {high or '∞'}")
    return parsed


@dataclass
class Answer:
    text: str = ""
    tokens: int = 0
    first_token_s: float | None = None
    total_s: float = 0.0
    finish_reason: str | None = None

    def stats(self) -> str:
        generating = self.total_s - (self.first_token_s or 0.0)
        rate = self.tokens / generating if generating > 0 else 0.0
        first = f"{self.first_token_s:.2f} s" if self.first_token_s is not None else "-"
        line = f"{self.tokens} tokens · {rate:.1f} tokens/s · first token {first}"
        return line + (" · stopped at max_tokens" if self.finish_reason == "length" else "")


class LoadingNote:
    """The gateway's ``: loading MODEL 12 s`` comments, shown while a model loads on demand.

    On a terminal one dim line on stderr counts the seconds in place and is wiped when the
    answer starts; elsewhere a single ``loading MODEL…`` line, so logs stay short.
    """

    def __init__(self, terminal: bool | None = None) -> None:
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.shown = False

    def __call__(self, comment: str) -> None:
        words = comment.split()
        if len(words) < 2 or words[0] != "loading":
            return
        waited = " ".join(words[2:])
        if self.terminal:
            _raw(f"\r\033[2mloading {words[1]}… {waited}\033[0m\033[K")
        elif not self.shown:
            click.echo(f"loading {words[1]}…", err=True)
        self.shown = True

    def done(self) -> None:
        if self.shown and self.terminal:
            _raw("\r\033[K")
        self.shown = False


def _raw(text: str) -> None:
    """Terminal control as is (``click.echo`` would strip it where it guesses no terminal)."""
    sys.stderr.write(text)
    sys.stderr.flush()


def stream_answer(
    state: State, body: dict[str, Any], write: Callable[[str], None], session: str | None = None
) -> Answer:
    """Send one question, write the answer as it streams, and measure it (a wait for the model's load included)."""
    answer = Answer()
    loading = LoadingNote()
    started = time.perf_counter()
    chunks = state.gateway.chat(body, stream_timeout=state.settings.stream_timeout, session=session, on_comment=loading)
    for chunk in chunks:
        loading.done()
        if not isinstance(chunk, dict):
            continue
        if isinstance(chunk.get("error"), dict):
            raise CLIError(str(chunk["error"].get("message") or chunk["error"]))
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                if answer.first_token_s is None:
                    answer.first_token_s = time.perf_counter() - started
                answer.text += content
                answer.tokens += 1
                write(content)
            answer.finish_reason = choice.get("finish_reason") or answer.finish_reason
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            answer.tokens = usage["completion_tokens"]
    answer.total_s = time.perf_counter() - started
    return answer


def write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def read_piped(stream: TextIO, patience: float = 2.0) -> str:
    """All of piped stdin (like ``ollama run``); if nothing comes for a while, say what is awaited.

    A pipe that nobody writes to or closes (some CI runners, ``subprocess`` without ``stdin=``)
    would otherwise look like a hang.
    """
    try:
        ready = select.select([stream], [], [], patience)[0]
    except (OSError, ValueError, io.UnsupportedOperation):  # no file descriptor (e.g. CliRunner)
        ready = [stream]
    if not ready:
        click.echo("(waiting for the rest of the question on stdin: end it with Ctrl-D, or pass < /dev/null)", err=True)
    return stream.read()


def pick_model(state: State, model: str | None) -> tuple[str, dict[str, Any] | None]:
    """``-m``, else what the gateway already serves, else LLF_DEFAULT_MODEL; plus the status.

    A plain OpenAI server (vllm-router in front of a Kubernetes fleet) has no ``/v1/status``: there
    the model comes from its ``/v1/models`` and the status is ``None`` (the cluster decides what is
    served, nothing is loaded on demand).
    """
    try:
        status: dict[str, Any] = state.gateway.status()
    except CLIError as exc:
        if exc.status != 404:
            raise
        listed = state.gateway.request("GET", "/v1/models").get("data") or []
        served = [m["id"] for m in listed if isinstance(m, dict) and m.get("id")]
        if model or state.settings.default_model in served:
            return model or state.settings.default_model, None
        if not served:
            raise CLIError(f"{state.settings.inference_url} serves no model (its /v1/models is empty)") from None
        return served[0], None
    if model:
        return model, status
    served = status.get("models") or []
    return (served[0] if served else state.settings.default_model), status


def run(
    state: State,
    prompt: str,
    *,
    model: str | None,
    system: str | None,
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    seed: int | None,
    interactive: bool,
    stats: bool,
) -> None:
    """Entry point of ``llf chat``: choose REPL or one-shot, make sure the model is served."""
    settings = state.settings
    stdin_tty = sys.stdin.isatty()
    question = prompt
    if not interactive and not stdin_tty:
        piped = read_piped(sys.stdin).strip()
        question = f"{prompt}\n\n{piped}" if prompt and piped else prompt or piped
    repl = interactive or (stdin_tty and not prompt)
    if not repl and not question:
        raise CLIError("nothing to ask: give a PROMPT, pipe text in, or run `llf chat` in a terminal")
    name, status = pick_model(state, model)
    if status is not None:
        flows.ensure_served(state, name, status=status)
    conversation = Conversation(
        model=name,
        system=system,
        options={
            "temperature": temperature if temperature is not None else settings.temperature,
            "top_p": top_p if top_p is not None else settings.top_p,
            "max_tokens": max_tokens if max_tokens is not None else settings.max_tokens,
            "seed": seed,
        },
    )
    if not repl:
        answer = stream_answer(state, conversation.request(question), write_stdout, conversation.session)
        write_stdout("\n" if not answer.text.endswith("\n") else "")
        if stats:
            click.secho(answer.stats(), dim=True, err=True)
        return
    reader: inputs.Reader
    if stdin_tty and sys.stdout.isatty():
        reader = inputs.TerminalReader(settings.history_path)
    else:
        reader = inputs.PlainReader(sys.stdin)
    from llf_cli.repl import Repl

    Repl(state, conversation, reader).loop(first=question)
