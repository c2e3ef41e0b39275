"""The reaper's judgement: only this host's containers whose run is gone are removed."""

from __future__ import annotations

from llf_testing.labels import HOST, MANAGED, PID, PID_START, PROJECT, ROLE, SESSION, STACK, Owner, is_orphan, leftovers


def labels(pid: int = 42, host: str = "box", start: str = "100", **extra: str) -> dict[str, str]:
    return {MANAGED: "1", SESSION: "s1", HOST: host, PID: str(pid), PID_START: start, **extra}


def test_owner_labels_name_the_session_host_pid_and_its_start() -> None:
    owner = Owner("abc", "box", 7, "123")
    assert owner.labels() == {MANAGED: "1", SESSION: "abc", HOST: "box", PID: "7", PID_START: "123", ROLE: "gateway"}


def test_a_container_of_a_live_run_is_kept() -> None:
    assert not is_orphan(labels(), host="box", alive=lambda pid: True, started=lambda pid: "100")


def test_a_container_whose_process_is_gone_is_an_orphan() -> None:
    assert is_orphan(labels(), host="box", alive=lambda pid: False, started=lambda pid: "")


def test_a_recycled_pid_does_not_keep_a_dead_runs_container() -> None:
    assert is_orphan(labels(start="100"), host="box", alive=lambda pid: True, started=lambda pid: "999")


def test_an_unknown_start_time_trusts_the_live_pid() -> None:
    assert not is_orphan(labels(start=""), host="box", alive=lambda pid: True, started=lambda pid: "5")
    assert not is_orphan(labels(start="100"), host="box", alive=lambda pid: True, started=lambda pid: "")


def test_another_hosts_containers_and_unmanaged_ones_are_never_touched() -> None:
    assert not is_orphan(labels(host="other"), host="box", alive=lambda pid: False)
    assert not is_orphan({HOST: "box", PID: "1"}, host="box", alive=lambda pid: False)


def test_a_missing_pid_counts_as_gone() -> None:
    assert is_orphan({MANAGED: "1", HOST: "box"}, host="box", alive=lambda pid: True)


def test_leftovers_lists_orphans_and_their_compose_projects_once() -> None:
    containers = [
        ("a", labels(pid=1, **{STACK: "llf-testing-1"})),
        ("b", labels(pid=1, **{STACK: "llf-testing-1"})),
        ("c", labels(pid=2)),
        ("d", labels(pid=3, **{STACK: "llf-testing-3"})),
    ]
    found = leftovers(containers, host="box", alive=lambda pid: pid == 3, started=lambda pid: "100")
    assert found.containers == ["a", "b", "c"]
    assert found.projects == ["llf-testing-1"]


def test_composes_own_project_label_inherited_from_an_image_never_names_a_stack_to_remove() -> None:
    found = leftovers([("a", labels(pid=1, **{PROJECT: "llf"}))], host="box", alive=lambda pid: False)
    assert found.containers == ["a"] and found.projects == []
