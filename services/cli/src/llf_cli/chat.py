"""``llf chat``: a one-shot answer, or the REPL with Ollama's slash commands.

Answers stream token by token from the gateway's OpenAI chat completions (SSE, with
``stream_options.include_usage`` so the token count is the engine's own). Ctrl-C during an
answer cancels that answer (closing the stream stops the generation) and leaves the
conversation as it was before the question; Ctrl-D or ``/bye`` leaves the REPL.
"""

from __future__ import annotations

import io
import json
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
HELP = """\
  /help, /?           this help
  /info               model, engine state, context length, options
  /clear              forget the conversation (keeps the system prompt)
  /model [NAME]       show or switch the model (pulled and loaded if needed)
  /system [TEXT]      show or set the system prompt
  /set [NAME VALUE]   show or set temperature, top_p, max_tokens, seed ('none' resets)
  /save FILE          save the conversation as JSON
  /load FILE          load a conversation saved with /save
  /exit, /bye         leave (Ctrl-D too)

  Multi-line: end a line with \\ or wrap the text in \"\"\" … \"\"\"; Alt-Enter adds a newline.
  Ctrl-C stops the current answer."""


@dataclass
class Conversation:
    """What is sent with every question; ``/save`` writes exactly this as JSON."""

    model: str
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    options: dict[str, float | int | None] = field(default_factory=dict)

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


def stream_answer(state: State, body: dict[str, Any], write: Callable[[str], None]) -> Answer:
    """Send one question, write the answer as it streams, and measure it."""
    answer = Answer()
    started = time.perf_counter()
    for chunk in state.gateway.chat(body, stream_timeout=state.settings.stream_timeout):
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


def pick_model(state: State, model: str | None) -> tuple[str, dict[str, Any]]:
    """``-m``, else what the gateway already serves, else LLF_DEFAULT_MODEL; plus the status."""
    status: dict[str, Any] = state.gateway.status()
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
        answer = stream_answer(state, conversation.request(question), write_stdout)
        write_stdout("\n" if not answer.text.endswith("\n") else "")
        if stats:
            click.secho(answer.stats(), dim=True, err=True)
        return
    reader: inputs.Reader
    if stdin_tty and sys.stdout.isatty():
        reader = inputs.TerminalReader(settings.history_path)
    else:
        reader = inputs.PlainReader(sys.stdin)
    Repl(state, conversation, reader).loop(first=question)


class Repl:
    """The read-answer loop and its slash commands (one small method each)."""

    def __init__(self, state: State, conversation: Conversation, reader: inputs.Reader) -> None:
        self.state = state
        self.conversation = conversation
        self.reader = reader
        self.commands: dict[str, Callable[[str], bool | None]] = {
            "/help": self.help,
            "/?": self.help,
            "/info": self.info,
            "/clear": self.clear,
            "/exit": self.exit,
            "/bye": self.exit,
            "/model": self.model,
            "/system": self.system,
            "/save": self.save,
            "/load": self.load,
            "/set": self.set,
        }

    def loop(self, first: str = "") -> None:
        """Read and answer until /bye or Ctrl-D; ``first`` (``llf chat -i PROMPT``) is asked first."""
        say(f"chatting with {self.conversation.model} — /help for commands, Ctrl-D or /bye to leave", dim=True)
        pending = first
        while True:
            try:
                text, pending = pending or self.reader.read(), ""
            except KeyboardInterrupt:
                say("(Ctrl-D or /bye to leave)", dim=True)
                continue
            except EOFError:
                return
            if not text:
                continue
            try:
                if text.startswith("/"):
                    if self.command(text):
                        return
                else:
                    self.ask(text)
            except CLIError as exc:  # the REPL outlives a failed request
                exc.show()

    def command(self, text: str) -> bool:
        """Run a slash command; True means leave."""
        name, _, argument = text.partition(" ")
        handler = self.commands.get(name.lower())
        if handler is None:
            say(f"unknown command {name} — /help lists the commands", dim=True)
            return False
        return bool(handler(argument.strip()))

    def ask(self, question: str) -> None:
        try:
            answer = stream_answer(self.state, self.conversation.request(question), write_stdout)
        except KeyboardInterrupt:
            write_stdout("\n")
            say("(answer canceled)", dim=True)
            return
        write_stdout("\n" if not answer.text.endswith("\n") else "")
        self.conversation.messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer.text},
        ]
        say(answer.stats(), dim=True)

    def help(self, argument: str) -> None:
        say(HELP)

    def info(self, argument: str) -> None:
        conversation = self.conversation
        status = self.state.gateway.status()
        replicas = [r for r in status.get("replicas") or [] if r.get("model") == conversation.model]
        context = next((r["max_model_len"] for r in replicas if r.get("max_model_len")), None)
        if context is None:
            context = (self.state.registry.find_model(conversation.model) or {}).get("context_length")
        engine = ", ".join(f"{r.get('id')} {r.get('state')}" for r in replicas) or "no replica"
        options = ", ".join(f"{k}={v}" for k, v in conversation.options.items() if v is not None) or "engine defaults"
        say(f"model           {conversation.model}")
        say(f"gateway         {status.get('state')} ({engine})")
        say(f"context length  {context if context is not None else 'unknown'}")
        say(f"options         {options}")
        say(f"system prompt   {conversation.system or '-'}")
        say(f"messages        {len(conversation.messages)}")

    def clear(self, argument: str) -> None:
        self.conversation.messages.clear()
        say("conversation cleared", dim=True)

    def exit(self, argument: str) -> bool:
        return True

    def model(self, argument: str) -> None:
        if not argument:
            say(f"model: {self.conversation.model}")
            return
        flows.ensure_served(self.state, argument)
        self.conversation.model = argument
        say(f"now chatting with {argument}", dim=True)

    def system(self, argument: str) -> None:
        if not argument:
            say(f"system prompt: {self.conversation.system or '-'}")
            return
        self.conversation.system = argument
        say("system prompt set", dim=True)

    def save(self, argument: str) -> None:
        if not argument:
            raise CLIError("usage: /save FILE")
        path = Path(argument).expanduser()
        try:
            path.write_text(json.dumps(self.conversation.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        except OSError as exc:
            raise CLIError(f"cannot write {path}: {exc.strerror}") from None
        say(f"saved {len(self.conversation.messages)} messages to {path}", dim=True)

    def load(self, argument: str) -> None:
        if not argument:
            raise CLIError("usage: /load FILE")
        path = Path(argument).expanduser()
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise CLIError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise CLIError(f"{path} is not JSON: {exc}") from None
        self.conversation.load(data)
        say(f"loaded {len(self.conversation.messages)} messages from {path}", dim=True)
        saved_with = data.get("model")
        if saved_with and saved_with != self.conversation.model:
            say(f"(saved with {saved_with}; /model {saved_with} switches to it)", dim=True)

    def set(self, argument: str) -> None:
        name, _, value = argument.partition(" ")
        if not name:
            say(", ".join(f"{k}={v if v is not None else 'default'}" for k, v in self.conversation.options.items()))
            return
        if not value.strip():
            raise CLIError(f"usage: /set {name} VALUE")
        self.conversation.options[name] = check_option(name, value.strip())
        say(
            f"{name} = {self.conversation.options[name] if self.conversation.options[name] is not None else 'default'}",
            dim=True,
        )


def say(text: str, *, dim: bool = False) -> None:
    click.secho(text, dim=dim)
