"""The web container of the Compose stack: its chat page loads and streams an answer through it."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import TINY, Stack

pytestmark = pytest.mark.timeout(1800)


def test_the_web_container_serves_the_chat_page_and_relays_a_streamed_answer(stack: Stack, served: str) -> None:
    stack.wait_healthy("web")
    with httpx.Client(base_url=stack.url("web", 8080), timeout=120) as web:
        page = web.get("/")
        assert page.status_code == 200, page.text[:300]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert web.get("/static/chat.js").status_code == 200
        csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
        assert csrf, "the chat page carries no CSRF token"
        models = web.get("/api/models").json()["data"]
        assert any(m["id"] == TINY for m in models), models
        body = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        with web.stream("POST", "/api/chat", json=body, headers={"X-CSRF-Token": csrf.group(1)}) as answer:
            assert answer.status_code == 200
            events = [line for line in answer.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) >= 3, events
        status = web.get("/api/status").json()
        assert status["gateway"]["up"] and status["registry"]["up"]
