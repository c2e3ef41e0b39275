"""The suite's one wait helper: returns what the condition found, or fails naming it at the deadline."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support.net import async_wait_for, free_port, wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_for(lambda: next(calls) >= 2 and "done", timeout=5, what="the third call", interval=0) == "done"


def test_wait_for_names_what_it_waited_for_at_the_deadline() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for the moon"):
        wait_for(lambda: False, timeout=0.05, what="the moon", interval=0.01)


def test_a_description_function_is_called_only_at_the_deadline() -> None:
    calls: list[int] = []

    def describe() -> str:
        calls.append(1)
        return "the state at the deadline"

    assert wait_for(lambda: True, timeout=1, what=describe) is True and calls == []
    with pytest.raises(AssertionError, match="waiting for the state at the deadline"):
        wait_for(lambda: False, timeout=0.02, what=describe, interval=0.01)
    assert calls == [1]


def test_async_wait_for_names_what_it_waited_for_at_the_deadline() -> None:
    with pytest.raises(AssertionError, match="waiting for the tide"):
        asyncio.run(async_wait_for(lambda: None, timeout=0.05, what="the tide", interval=0.01))


def test_free_port_is_a_bindable_loopback_port() -> None:
    assert 0 < free_port() < 65536
