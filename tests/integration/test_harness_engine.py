"""A real vLLM CPU engine loads the tiny model and streams a chat completion.

One engine start for the whole session (the ``engine`` fixture); the engine runs in its own
process group and the fixture kills the group, whatever happens here.
"""

from __future__ import annotations

import json

import httpx
from httpx_sse import EventSource

from tests.support.engine import VllmEngine


def test_the_engine_streams_a_chat_completion_from_the_tiny_model(engine: VllmEngine) -> None:
    request = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hello, who are you?"}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": True,
    }
    events: list[dict[str, object]] = []
    done = False
    with httpx.stream("POST", f"{engine.url}/chat/completions", json=request, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for sse in EventSource(response).iter_sse():  # an SSE parser: iter_lines() splits at U+2028 too
            if sse.data == "[DONE]":
                done = True
                break
            events.append(json.loads(sse.data))
    assert done
    choices = [event["choices"][0] for event in events if event.get("choices")]  # type: ignore[index]
    text = "".join(choice["delta"].get("content") or "" for choice in choices)  # type: ignore[index]
    assert len(choices) > 2, f"engine started in {engine.startup_seconds:.0f} s; log: {engine.log_tail()}"
    assert text.strip()
    assert choices[-1]["finish_reason"] == "length"  # type: ignore[index]


def test_the_engine_lists_the_served_model_name(engine: VllmEngine) -> None:
    models = httpx.get(f"{engine.url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
