"""The chat REPL: read a message, stream the answer, and Ollama's slash commands.

Ctrl-C at the prompt only reminds how to leave; Ctrl-C during an answer cancels it (closing
the stream stops the generation) and leaves the conversation as it was before the question.
A failed request is one error line and the REPL goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from llf_cli import flows, inputs
from llf_cli.chat import Conversation, check_option, stream_answer, write_stdout
from llf_cli.errors import CLIError

if TYPE_CHECKING:
    from llf_cli.main import State

HELP = """\
  /help, /?           this help
  /info               model, engine state, context length, options
  /clear              forget the conversation (keeps the system prompt)
  /model [NAME]       show or switch the model (pulled if needed, loaded on the first question)
  /system [TEXT]      show or set the system prompt
  /set [NAME VALUE]   show or set temperature, top_p, max_tokens, seed ('none' resets)
  /save FILE          save the conversation as JSON
  /load FILE          load a conversation saved with /save
  /exit, /bye         leave (Ctrl-D too)

  Multi-line: end a line with \\ or wrap the text in \"\"\" … \"\"\"; Alt-Enter adds a newline.
  Ctrl-C stops the current answer."""


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
            answer = stream_answer(
                self.state, self.conversation.request(question), write_stdout, self.conversation.session
            )
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
        self.conversation.clear()
        say("conversation cleared", dim=True)

    def exit(self, argument: str) -> bool:
        return True

    def model(self, argument: str) -> None:
        if not argument:
            say(f"model: {self.conversation.model}")
            return
        flows.ensure_served(self.state, argument, on_demand=True)  # the first question loads it
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
