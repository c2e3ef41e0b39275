"""Ready means a real chat completion; failures carry the container's last log lines."""

from __future__ import annotations

import httpx
import pytest
from llf_testing.wait import LlfStartError, answered, wait_until_answers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def client(replies: list[httpx.Response | Exception], seen: list[dict[str, object]]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        import json

        seen.append(json.loads(request.content))
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.Client(base_url="http://llf.test/v1/", transport=httpx.MockTransport(handle))


def ok() -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"content": "OK"}}]})


def test_waits_through_refused_connections_and_loading_503s_until_a_completion() -> None:
    clock, seen = Clock(), []
    replies: list[httpx.Response | Exception] = [
        httpx.ConnectError("refused"),
        httpx.Response(503, json={"error": "loading"}),
        ok(),
    ]
    waited = wait_until_answers(
        client(replies, seen), "m", timeout=60, exited=lambda: None, logs=lambda: "", clock=clock, sleep=clock.sleep
    )
    assert waited == 2.0
    assert seen[-1]["model"] == "m" and seen[-1]["max_tokens"] == 1


def test_the_timeout_names_the_model_the_last_reply_and_the_logs() -> None:
    clock = Clock()
    with pytest.raises(LlfStartError) as failure:
        wait_until_answers(
            client([httpx.Response(503, text="engine loading")], []),
            "org/m",
            timeout=5,
            exited=lambda: None,
            logs=lambda: "engine: out of memory",
            clock=clock,
            sleep=clock.sleep,
        )
    message = str(failure.value)
    assert "'org/m' within 5 s" in message and "HTTP 503: engine loading" in message
    assert "engine: out of memory" in message
    assert clock.now == 5.0


def test_an_exited_container_fails_at_once() -> None:
    clock = Clock()
    with pytest.raises(LlfStartError, match="exited before answering \\(exit code 1\\)"):
        wait_until_answers(
            client([httpx.ConnectError("refused")], []),
            "m",
            timeout=600,
            exited=lambda: "exit code 1",
            logs=lambda: "Traceback",
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.now == 0.0


def test_a_200_without_choices_is_not_an_answer() -> None:
    assert not answered(httpx.Response(200, json={"object": "error"}))
    assert not answered(httpx.Response(200, text="not json"))
    assert answered(ok())
