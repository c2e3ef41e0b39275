"""``llf chat``: one-shot, first run, streaming, and every REPL slash command (driven through ``-i``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llf_cli.chat import LoadingNote

from tests.unit.cli.conftest import Invoke
from tests.unit.cli.fakes import (
    GATEWAY,
    MODEL,
    REGISTRY,
    Fake,
    answer,
    answer_after_loading,
    chat_chunks,
    gateway_status,
    job_info,
    model_info,
    no_ansi,
    old_gateway_status,
    pull_response,
    sse,
)

CHAT = f"{GATEWAY}/v1/chat/completions"
STATUS = f"{GATEWAY}/v1/status"
OTHER = "acme/other-chat"


def serving(fake: Fake, *answers: httpx.Response, model: str = MODEL) -> None:
    fake.on("GET", STATUS, httpx.Response(200, json=gateway_status(model)))
    fake.on("POST", CHAT, *(answers or [answer("Hello", " there", usage=2)]))


def chat_bodies(fake: Fake) -> list[dict[str, object]]:
    return [json.loads(r.content) for r in fake.sent("POST", "/v1/chat/completions")]


# ---------------------------------------------------------------- one-shot
def test_one_shot_prints_the_streamed_answer_and_exits(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    result = llf("chat", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello there\n"
    body = chat_bodies(fake)[0]
    assert body["model"] == MODEL and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["temperature"] == 0.7 and body["max_tokens"] == 1024 and "seed" not in body and "top_p" not in body


def test_one_shot_joins_the_words_and_sends_the_options(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    llf(
        "chat", "what", "is", "2+2", "-s", "be brief", "-t", "0.1", "--top-p", "0.9", "--max-tokens", "5", "--seed", "7"
    )
    body = chat_bodies(fake)[0]
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is 2+2"}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.1, 0.9, 5, 7)


def test_one_shot_appends_piped_stdin_to_the_prompt(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    assert llf("chat", "summarise", input="line one\nline two\n").exit_code == 0
    assert chat_bodies(fake)[0]["messages"] == [{"role": "user", "content": "summarise\n\nline one\nline two"}]


def test_piped_stdin_alone_is_the_question(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    llf("chat", input="just this\n")
    assert chat_bodies(fake)[0]["messages"] == [{"role": "user", "content": "just this"}]


def test_nothing_to_ask_is_an_error(llf: Invoke, fake: Fake) -> None:
    result = llf("chat")
    assert result.exit_code == 1 and "nothing to ask" in result.output
    assert fake.requests == []


def test_stats_flag_prints_tokens_speed_and_first_token_time_to_stderr(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer("a", "b", "c", usage=3))
    result = llf("chat", "hi", "--stats")
    assert result.stdout == "abc\n"
    assert result.stderr.startswith("3 tokens · ") and "tokens/s · first token " in result.stderr
    assert no_ansi(result)


def test_without_usage_the_chunks_are_counted(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer("a", "b"))
    assert llf("chat", "hi", "--stats").stderr.startswith("2 tokens")


def test_an_answer_cut_at_max_tokens_says_so(llf: Invoke, fake: Fake) -> None:
    serving(fake, sse(chat_chunks("a", usage=1, finish="length"), done=True))
    assert "stopped at max_tokens" in llf("chat", "hi", "--stats").stderr


def test_the_served_model_is_used_when_none_is_given(llf: Invoke, fake: Fake) -> None:
    serving(fake, model=OTHER)
    assert llf("chat", "hi").exit_code == 0
    assert chat_bodies(fake)[0]["model"] == OTHER
    assert not fake.sent("POST", "/v1/serve")


def test_an_error_event_in_the_stream_is_one_line_exit_1(llf: Invoke, fake: Fake) -> None:
    serving(fake, sse([{"error": {"message": "engine crashed", "type": "server_error"}}]))
    result = llf("chat", "hi")
    assert result.exit_code == 1 and result.output.endswith("error: engine crashed\n")


def test_an_openai_error_reply_shows_its_message(llf: Invoke, fake: Fake) -> None:
    error = {"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}, "detail": "x"}
    serving(fake, httpx.Response(400, json={"error": error["error"]}))
    result = llf("chat", "hi")
    assert (result.exit_code, result.output) == (1, "error: max_tokens is too large\n")


def test_chat_with_the_gateway_down_is_exit_2(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", STATUS, lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused")))
    result = llf("chat", "hi")
    assert result.exit_code == 2 and f"cannot reach the gateway at {GATEWAY}" in result.output


# ---------------------------------------------------------------- first run
def first_run(fake: Fake, events: list[dict[str, object]] | None = None) -> None:
    fake.on("GET", STATUS, httpx.Response(200, json=gateway_status()))
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on("GET", f"{REGISTRY}/v1/jobs/job-1/events", sse(events or [job_info("finished")]))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(MODEL)))
    fake.on("POST", CHAT, answer("Hi!"))


def test_first_run_pulls_serves_then_answers(llf: Invoke, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLF_DEFAULT_MODEL", MODEL)
    first_run(fake, [job_info("started", phase="download", done=1_000_000), job_info("finished")])
    result = llf("chat", "hi")
    assert result.exit_code == 0, result.output
    assert fake.paths() == [
        "GET /v1/status",
        f"GET /v1/models/{MODEL}",
        "POST /v1/pulls",
        "GET /v1/jobs/job-1/events",
        "POST /v1/serve",
        "POST /v1/chat/completions",
    ]
    assert f"{MODEL} is not downloaded yet; pulling it first" in result.stderr
    assert "downloading" in result.stderr and f"loading {MODEL}" in result.stderr
    assert result.stdout == "Hi!\n"
    assert fake.body("POST", "/v1/serve") == {"model": MODEL, "replicas": 1, "wait": True}


def test_first_run_with_a_downloaded_model_only_serves_it(llf: Invoke, fake: Fake) -> None:
    first_run(fake)
    fake.on("GET", f"{REGISTRY}/v1/models/{MODEL}", httpx.Response(200, json=model_info()))
    assert llf("chat", "-m", MODEL, "hi").exit_code == 0
    assert not fake.sent("POST", "/v1/pulls")


def test_first_run_without_a_hub_says_so_in_one_sentence(llf: Invoke, fake: Fake) -> None:
    first_run(fake)
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(503, json={"detail": "hub unreachable"}))
    result = llf("chat", "-m", MODEL, "hi")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: cannot download {MODEL} from the model hub")
    assert "HF_ENDPOINT" in line and f"llf models import DIR --name {MODEL}" in line and "make up" in line
    assert not fake.sent("POST", "/v1/serve")


def test_first_run_whose_pull_job_fails_gives_the_same_hint(llf: Invoke, fake: Fake) -> None:
    first_run(fake, [job_info("failed", error="ConnectError: hub down")])
    result = llf("chat", "-m", MODEL, "hi")
    assert result.exit_code == 1 and "ConnectError: hub down" in result.output and "HF_ENDPOINT" in result.output


def test_first_run_pull_canceled_elsewhere_stops_the_chat(llf: Invoke, fake: Fake) -> None:
    first_run(fake, [job_info("canceled")])
    result = llf("chat", "-m", MODEL, "hi")
    assert result.exit_code == 1 and "was canceled" in result.output


def test_a_model_the_engine_cannot_load_is_reported(llf: Invoke, fake: Fake) -> None:
    first_run(fake)
    fake.on("GET", f"{REGISTRY}/v1/models/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(state="failed", message="bad arch")))
    result = llf("chat", "-m", MODEL, "hi")
    assert result.exit_code == 1 and f"the gateway could not serve {MODEL}: bad arch" in result.output


def test_serving_that_never_gets_ready_times_out_with_exit_2(llf: Invoke, fake: Fake) -> None:
    first_run(fake)
    fake.on("GET", f"{REGISTRY}/v1/models/{MODEL}", httpx.Response(200, json=model_info()))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(state="starting")))
    result = llf("chat", "-m", MODEL, "hi", serve_timeout=0.01)
    assert result.exit_code == 2 and "was not ready after" in result.output


# ---------------------------------------------------------------- the REPL
def repl(llf: Invoke, *lines: str) -> str:
    result = llf("chat", "-i", input="".join(line + "\n" for line in lines))
    assert result.exit_code == 0, result.output
    assert no_ansi(result)
    return result.output


def test_repl_answers_and_keeps_the_conversation(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer("one", usage=1), answer("two", usage=1))
    output = repl(llf, "first", "second")
    assert f"chatting with {MODEL}" in output and "one\n" in output and "two\n" in output
    assert output.count("1 tokens · ") == 2
    second = chat_bodies(fake)[1]["messages"]
    assert second == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"},
    ]


def test_repl_asks_the_prompt_given_with_interactive_first(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    result = llf("chat", "-i", "hello", input="/bye\n")
    assert result.exit_code == 0 and "Hello there" in result.output


@pytest.mark.parametrize("command", ["/help", "/?"])
def test_repl_help_lists_the_commands(llf: Invoke, fake: Fake, command: str) -> None:
    serving(fake)
    output = repl(llf, command)
    for name in ("/info", "/clear", "/model", "/system", "/set", "/save", "/load", "/bye", '"""'):
        assert name in output


@pytest.mark.parametrize("command", ["/exit", "/bye", "/BYE"])
def test_repl_exit_commands_leave_before_reading_more(llf: Invoke, fake: Fake, command: str) -> None:
    serving(fake)
    repl(llf, command, "never asked")
    assert chat_bodies(fake) == []


def test_repl_ends_at_end_of_input_like_ctrl_d(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    assert "chatting with" in repl(llf)


def test_repl_unknown_command_gives_a_one_line_hint(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    assert "unknown command /frobnicate — /help lists the commands\n" in repl(llf, "/frobnicate now")


def test_repl_clear_forgets_the_conversation(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer("one"), answer("two"))
    output = repl(llf, "first", "/clear", "second")
    assert "conversation cleared" in output
    assert chat_bodies(fake)[1]["messages"] == [{"role": "user", "content": "second"}]


def test_repl_system_sets_and_shows_the_system_prompt(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    output = repl(llf, "/system", "/system talk like a pirate", "/system", "hi")
    assert "system prompt: -" in output and "system prompt: talk like a pirate" in output
    assert chat_bodies(fake)[0]["messages"][0] == {"role": "system", "content": "talk like a pirate"}


def test_repl_set_changes_the_sampling_options(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    output = repl(llf, "/set temperature 0.2", "/set top_p 0.5", "/set max_tokens 9", "/set seed 3", "/set", "hi")
    assert "temperature=0.2, top_p=0.5, max_tokens=9, seed=3" in output
    body = chat_bodies(fake)[0]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.2, 0.5, 9, 3)


def test_repl_set_none_goes_back_to_the_engine_default(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    assert "max_tokens = default" in repl(llf, "/set max_tokens none", "hi")
    assert "max_tokens" not in chat_bodies(fake)[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/set temperature hot", "temperature must be a float, not 'hot'"),
        ("/set temperature 5", "temperature must be between 0.0 and 2.0"),
        ("/set max_tokens 0", "max_tokens must be between 1 and ∞"),
        ("/set colour blue", "unknown option 'colour'; /set accepts temperature, top_p, max_tokens, seed"),
        ("/set seed", "usage: /set seed VALUE"),
    ],
)
def test_repl_set_rejects_bad_values_and_stays(llf: Invoke, fake: Fake, line: str, message: str) -> None:
    serving(fake)
    assert f"error: {message}\n" in repl(llf, line, "hi")
    assert len(chat_bodies(fake)) == 1


def test_repl_save_and_load_round_trip_a_conversation(llf: Invoke, fake: Fake, tmp_path: Path) -> None:
    serving(fake, answer("one"), answer("two"))
    saved = tmp_path / "talk.json"
    output = repl(llf, "/system be kind", "first", f"/save {saved}")
    assert f"saved 2 messages to {saved}" in output
    data = json.loads(saved.read_text())
    assert data["model"] == MODEL and data["system"] == "be kind" and len(data["messages"]) == 2
    data["model"] = OTHER
    saved.write_text(json.dumps(data))
    output = repl(llf, f"/load {saved}", "second")
    assert f"loaded 2 messages from {saved}" in output and f"/model {OTHER}" in output
    messages = chat_bodies(fake)[1]["messages"]
    assert messages[0] == {"role": "system", "content": "be kind"} and messages[1]["content"] == "first"
    assert messages[-1] == {"role": "user", "content": "second"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ('{"messages": [{"role": "wizard", "content": "x"}]}', "not a conversation file"),
        ('{"messages": [], "options": {"temperature": 9}}', "temperature must be between"),
    ],
)
def test_repl_load_rejects_bad_files(llf: Invoke, fake: Fake, tmp_path: Path, content: str, message: str) -> None:
    serving(fake)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert message in repl(llf, f"/load {bad}")


def test_repl_save_and_load_need_a_file_that_works(llf: Invoke, fake: Fake, tmp_path: Path) -> None:
    serving(fake)
    output = repl(llf, "/save", "/load", f"/load {tmp_path}/missing.json", f"/save {tmp_path}/no/such/dir/x.json")
    assert "usage: /save FILE" in output and "usage: /load FILE" in output
    assert "cannot read" in output and "cannot write" in output


def test_repl_info_shows_model_engine_and_context_length(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    output = repl(llf, "/set seed 1", "/info")
    assert f"model           {MODEL}" in output and "ready (r0 ready)" in output
    assert "context length  2048" in output and "seed=1" in output


def test_repl_info_asks_the_registry_for_context_when_no_replica_says(llf: Invoke, fake: Fake) -> None:
    serving(fake)
    repl_status = gateway_status(MODEL)
    repl_status["replicas"][0]["max_model_len"] = None
    fake.on("GET", STATUS, httpx.Response(200, json=repl_status))
    fake.on("GET", f"{REGISTRY}/v1/models/{MODEL}", httpx.Response(200, json=model_info(context_length=4096)))
    assert "context length  4096" in repl(llf, "/info")


def test_repl_model_switches_pulling_and_serving_first_on_a_gateway_without_load_on_demand(
    llf: Invoke, fake: Fake
) -> None:
    fake.on("GET", STATUS, httpx.Response(200, json=old_gateway_status(MODEL)))
    fake.on("POST", CHAT, answer("Hello", usage=1))
    fake.on("POST", f"{REGISTRY}/v1/pulls", httpx.Response(202, json=pull_response()))
    fake.on("GET", f"{REGISTRY}/v1/jobs/job-1/events", sse([job_info("finished", repo=OTHER)]))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(202, json=gateway_status(OTHER)))
    output = repl(llf, "/model", f"/model {OTHER}", "/model", "hi")
    assert f"model: {MODEL}" in output and f"now chatting with {OTHER}" in output and f"model: {OTHER}" in output
    assert fake.body("POST", "/v1/serve")["model"] == OTHER
    assert chat_bodies(fake)[0]["model"] == OTHER


def test_repl_model_loads_on_the_first_question_showing_one_loading_line(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer_after_loading(OTHER, "Hi", " there"))
    fake.on("GET", f"{REGISTRY}/v1/models/{OTHER}", httpx.Response(200, json=model_info(OTHER)))
    output = repl(llf, f"/model {OTHER}", "hi")
    assert fake.sent("POST", "/v1/serve") == []
    assert chat_bodies(fake)[0]["model"] == OTHER
    assert output.splitlines()[1:4] == [f"now chatting with {OTHER}", f"loading {OTHER}…", "Hi there"]


def test_one_shot_answer_after_a_load_on_demand_prints_the_loading_line_once(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer_after_loading(MODEL, "ok", seconds=(0, 5, 10)))
    result = llf("chat", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok\n" and result.stderr == f"loading {MODEL}…\n"


def test_loading_note_on_a_terminal_counts_in_place_and_is_wiped(capsys: pytest.CaptureFixture[str]) -> None:
    note = LoadingNote(terminal=True)
    note("loading acme/x 0 s")
    note("loading acme/x 5 s")
    note("keep-alive")
    note.done()
    err = capsys.readouterr().err
    assert err == ("\r\x1b[2mloading acme/x… 0 s\x1b[0m\x1b[K\r\x1b[2mloading acme/x… 5 s\x1b[0m\x1b[K\r\x1b[K")


def test_repl_model_that_cannot_be_served_keeps_the_old_one(llf: Invoke, fake: Fake) -> None:
    fake.on("GET", STATUS, httpx.Response(200, json=old_gateway_status(MODEL)))
    fake.on("POST", CHAT, answer("Hello", usage=1))
    fake.on("GET", f"{REGISTRY}/v1/models/{OTHER}", httpx.Response(200, json=model_info(OTHER)))
    fake.on("POST", f"{GATEWAY}/v1/serve", httpx.Response(409, json={"detail": "a switch is already running"}))
    output = repl(llf, f"/model {OTHER}", "hi")
    assert "error: a switch is already running" in output
    assert chat_bodies(fake)[0]["model"] == MODEL


def test_repl_survives_a_failed_answer(llf: Invoke, fake: Fake) -> None:
    serving(fake, httpx.Response(503, json={"detail": "engine restarting"}), answer("ok"))
    output = repl(llf, "first", "second")
    assert "engine restarting" in output and "ok\n" in output


def test_ctrl_c_cancels_the_answer_and_the_repl_goes_on(llf: Invoke, fake: Fake) -> None:
    def interrupted() -> Iterator[bytes]:
        yield f"data: {json.dumps(chat_chunks('partial')[0])}\n\n".encode()
        raise KeyboardInterrupt

    cut = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=interrupted())
    serving(fake, cut, answer("full"))
    output = repl(llf, "first", "second")
    assert "partial\n(answer canceled)" in output and "full\n" in output
    assert chat_bodies(fake)[1]["messages"] == [{"role": "user", "content": "second"}]


def test_repl_multiline_with_backslash_and_triple_quotes(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer("a"), answer("b"))
    repl(llf, "line one \\", "line two", '"""', "block one", "", "block two", '"""')
    bodies = chat_bodies(fake)
    assert bodies[0]["messages"][-1]["content"] == "line one \nline two"
    assert bodies[1]["messages"][-1]["content"] == "block one\n\nblock two"


def test_ctrl_c_at_the_prompt_only_says_how_to_leave(llf: Invoke, fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    from llf_cli import inputs

    lines = iter(["/help"])

    def read(self: inputs.PlainReader) -> str:
        if "interrupted" not in vars(self):
            self.interrupted = True  # type: ignore[attr-defined]
            raise KeyboardInterrupt
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(inputs.PlainReader, "read", read)
    serving(fake)
    output = repl(llf)
    assert "(Ctrl-D or /bye to leave)" in output and "/save FILE" in output


def test_a_non_object_chunk_is_ignored(llf: Invoke, fake: Fake) -> None:
    serving(fake, sse(["[1, 2]", *chat_chunks("ok")], done=True))
    assert llf("chat", "hi").stdout == "ok\n"


def test_piped_stdin_is_read_to_the_end(tmp_path: Path) -> None:
    import os

    from llf_cli.chat import read_piped

    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stream, os.fdopen(write_end, "w") as writer:
        writer.write("late text")
        writer.close()
        assert read_piped(stream, patience=0.01) == "late text"
    read_end, write_end = os.pipe()
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        assert read_piped(stream, patience=0.01) == ""


def test_a_pipe_nobody_writes_to_gets_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import threading

    from llf_cli.chat import read_piped

    read_end, write_end = os.pipe()
    threading.Timer(0.2, os.close, [write_end]).start()
    with os.fdopen(read_end) as stream:
        assert read_piped(stream, patience=0.01) == ""
    assert "waiting for the rest of the question on stdin" in capsys.readouterr().err


# ---------------------------------------------------------------- sessions
def sessions(fake: Fake) -> list[str]:
    return [r.headers.get("X-Session-ID", "") for r in fake.sent("POST", "/v1/chat/completions")]


def test_every_turn_of_a_conversation_carries_one_session_id(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer("one"), answer("two"), answer("three"))
    repl(llf, "first", "second", "third")
    ids = sessions(fake)
    assert len(ids) == 3 and len(set(ids)) == 1 and len(ids[0]) == 32


def test_clear_and_load_start_a_new_session(llf: Invoke, fake: Fake, tmp_path: Path) -> None:
    serving(fake, answer("one"), answer("two"), answer("three"), answer("four"))
    saved = tmp_path / "talk.json"
    repl(llf, "first", f"/save {saved}", "/clear", "second", f"/load {saved}", "third", "fourth")
    ids = sessions(fake)
    assert ids[0] != ids[1] != ids[2] and ids[2] == ids[3] and ids[0] != ids[2]
    assert "session" not in json.loads(saved.read_text())  # the file format is unchanged


def test_one_shot_answers_send_a_session_id_of_their_own(llf: Invoke, fake: Fake) -> None:
    serving(fake, answer("one"), answer("two"))
    llf("chat", "hi")
    llf("chat", "again")
    first, second = sessions(fake)
    assert first and second and first != second
