"""Routing policies on plain stand-ins: deterministic, no gateway, no engine."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from llf_inference.engine.spec import EngineSpec
from llf_inference.routing import Choice, make_policy
from llf_inference.routing.affinity import AffinityPolicy, Ring
from llf_inference.routing.keys import PREFIX_CHARS, routing_key
from llf_inference.routing.least import LeastLoaded
from llf_inference.routing.responses import ResponseMap
from llf_inference.settings import InferenceSettings

MakeSettings = Callable[..., InferenceSettings]


@dataclass
class Slot:
    id: str
    in_flight: int = 0


def slots(*loads: int) -> list[Slot]:
    return [Slot(f"r{i}", load) for i, load in enumerate(loads)]


SYSTEM = {"role": "system", "content": "You are terse."}


# ------------------------------------------------------------------ keys
def test_the_session_header_wins_then_the_user_field_then_the_prompt_prefix() -> None:
    body = {"user": "ann", "messages": [{"role": "user", "content": "hi"}]}
    assert routing_key(body, "s-1") == "session:s-1"
    assert routing_key(body) == "user:ann"
    assert routing_key({"messages": body["messages"]}).startswith("prefix:")  # type: ignore[union-attr]


def test_every_turn_of_a_chat_has_the_key_of_its_first_turn() -> None:
    turn1 = [SYSTEM, {"role": "user", "content": "What is a KV cache?"}]
    turn3 = [*turn1, {"role": "assistant", "content": "A cache."}, {"role": "user", "content": "Why?"}]
    other = [SYSTEM, {"role": "user", "content": "Another question"}]
    assert routing_key({"messages": turn1}) == routing_key({"messages": turn3})
    assert routing_key({"messages": turn1}) != routing_key({"messages": other})


def test_a_text_prompt_is_keyed_on_its_first_characters() -> None:
    start = "x" * PREFIX_CHARS
    assert routing_key({"prompt": start + " turn one"}) == routing_key({"prompt": start + " turn two, longer"})
    assert routing_key({"input": "hello"}) == routing_key({"input": "hello"}) is not None


def test_requests_with_nothing_to_key_on_have_no_key() -> None:
    assert routing_key({"prompt": [1, 2, 3]}) is None
    assert routing_key({"input": ["a", "b"]}) is None
    assert routing_key({"user": ""}) is None


def test_a_huge_session_id_is_hashed_to_a_short_key() -> None:
    assert len(routing_key({}, "s" * 10_000) or "") < 64


# ------------------------------------------------------------------ policies
def test_least_loaded_takes_the_fewest_in_flight_first_in_pool_order_on_ties() -> None:
    policy = LeastLoaded()
    assert policy.choose(slots(2, 1, 1), "k").replica.id == "r1"
    assert policy.choose(slots(0, 0), None).decision == "least_loaded"


def test_affinity_sends_a_key_to_the_same_replica_every_time() -> None:
    policy = AffinityPolicy()
    replicas = slots(0, 0, 0)
    first = policy.choose(replicas, "session:a")
    assert first.decision == "affinity_hit"
    assert all(policy.choose(replicas, "session:a").replica is first.replica for _ in range(20))


def test_affinity_spreads_many_keys_over_every_replica() -> None:
    policy = AffinityPolicy()
    replicas = slots(0, 0)
    counts = Counter(policy.choose(replicas, f"session:{i}").replica.id for i in range(200))
    assert set(counts) == {"r0", "r1"} and min(counts.values()) > 60, counts


def test_a_key_spills_to_the_next_replica_on_the_ring_past_the_load_bound() -> None:
    policy = AffinityPolicy(load_factor=1.25)
    idle = slots(0, 0)
    home = policy.choose(idle, "session:a").replica.id
    other = "r1" if home == "r0" else "r0"
    busy = [Slot(home, 3), Slot(other, 0)]  # bound: ceil(1.25 * 4 / 2) = 3; home would hold 4
    assert policy.bound(busy) == 3
    choice = policy.choose(busy, "session:a")
    assert (choice.replica.id, choice.decision) == (other, "spill")
    within = [Slot(home, 1), Slot(other, 0)]  # bound ceil(1.25 * 2 / 2) = 2: one more fits on either
    choice = policy.choose(within, "session:a")  # the replica that served the last turn holds its whole prefix
    assert (choice.replica.id, choice.decision) == (other, "affinity_hit")


def test_a_burst_of_conversations_spread_by_the_bound_keeps_each_on_its_replica_in_later_turns() -> None:
    policy = AffinityPolicy(load_factor=1.25)
    pool = slots(0, 0)
    sessions = [f"session:{i}" for i in range(16)]
    homes = {}
    for key in sessions:  # turn 1: all 16 arrive together, each stays in flight
        choice = policy.choose(pool, key)
        choice.replica.in_flight += 1
        homes[key] = choice.replica.id
    assert max(s.in_flight for s in pool) <= policy.bound(pool) - 1  # within 1.25 x the mean, whatever the ring says
    for _turn in range(2, 7):  # later turns: the same burst, every conversation back on its replica
        for slot in pool:
            slot.in_flight = 0
        for key in sessions:
            choice = policy.choose(pool, key)
            choice.replica.in_flight += 1
            assert (choice.replica.id, choice.decision) == (homes[key], "affinity_hit"), key


def test_new_conversations_arriving_together_get_even_shares_even_when_the_ring_favours_one_replica() -> None:
    policy = AffinityPolicy(load_factor=1.25)
    pool = slots(0, 0)
    ring = policy.ring(["r0", "r1"])
    sessions = [k for k in (f"session:{i}" for i in range(200)) if ring.walk(k)[0] == "r0"][:16]
    for key in sessions:  # every one of them hashes to r0
        policy.choose(pool, key).replica.in_flight += 1
    assert [s.in_flight for s in pool] == [8, 8]  # 1.25 x the mean would have let r0 take 10


def test_conversations_between_turns_still_count_so_the_other_replicas_turns_stay_home() -> None:
    now = [0.0]
    policy = AffinityPolicy(load_factor=1.25, active_s=10, clock=lambda: now[0])
    pool = slots(0, 0)
    sessions = [f"session:{i}" for i in range(16)]
    homes = {}
    for key in sessions:  # all sixteen arrive together and stay in flight
        homes[key] = policy.choose(pool, key).replica
        homes[key].in_flight += 1
    assert [s.in_flight for s in pool] == [8, 8]
    now[0] = 2.0
    pool[0].in_flight = 0  # r0's eight answers ended in one engine step; their next turns are milliseconds away
    for key in (k for k in sessions if homes[k].id == "r1"):  # 8 on r1 would be past ceil(1.25 * 9 / 2) = 6 in flight
        assert policy.choose(pool, key) == Choice(homes[key], "affinity_hit")
    now[0] = 30.0  # r0's conversations are over: a busy r1 passes its turns to the idle replica again
    pool[1].in_flight = 7
    assert policy.choose(pool, next(k for k in sessions if homes[k].id == "r1")).decision == "spill"


def test_one_key_sending_many_requests_at_once_spills_on_requests_in_flight() -> None:
    policy = AffinityPolicy(load_factor=1.25)
    pool = slots(0, 0)
    chosen = []
    for _ in range(8):  # one session, one conversation, but eight requests at once
        choice = policy.choose(pool, "session:batch")
        choice.replica.in_flight += 1
        chosen.append(choice.replica.id)
    assert max(s.in_flight for s in pool) <= 5 and len(set(chosen)) == 2, chosen


def test_remembered_homes_are_bounded_and_the_least_recent_is_forgotten_first() -> None:
    policy = AffinityPolicy(homes=2)
    pool = slots(0, 0)
    for key in ("session:a", "session:b", "session:a", "session:c"):
        policy.choose(pool, key)
    assert list(policy._homes) == ["session:a", "session:c"]


def test_a_request_without_key_goes_to_the_least_loaded_replica() -> None:
    choice = AffinityPolicy().choose(slots(3, 1, 2), None)
    assert (choice.replica.id, choice.decision) == ("r1", "no_key")


def test_when_a_replica_dies_only_its_keys_move_and_they_move_to_the_next_on_the_ring() -> None:
    ring = Ring(["r0", "r1", "r2"])
    keys = [f"session:{i}" for i in range(300)]
    before = {key: ring.walk(key) for key in keys}
    policy = AffinityPolicy(active_s=0.5, clock=itertools.count().__next__)  # each conversation over before the next
    survivors = [Slot("r0"), Slot("r2")]
    for key in keys:
        chosen = policy.choose(survivors, key).replica.id
        order = [rid for rid in before[key] if rid != "r1"]
        assert chosen == order[0]  # the first live replica clockwise from the key
        if before[key][0] != "r1":
            assert chosen == before[key][0]  # keys of live replicas stay where they were


def test_a_key_whose_home_is_gone_moves_to_the_next_live_replica_on_the_ring_and_stays_there() -> None:
    policy = AffinityPolicy()
    everyone = slots(0, 0, 0)
    key = next(k for k in (f"session:{i}" for i in range(100)) if policy.ring(["r0", "r1", "r2"]).walk(k)[0] == "r0")
    ring = policy.ring(["r0", "r1", "r2"]).walk(key)
    assert policy.choose(everyone, key).replica.id == "r0"
    survivors = [s for s in everyone if s.id != "r0"]  # r0 died, drains or sleeps: the router hands over the rest
    moved = policy.choose(survivors, key)
    assert (moved.replica.id, moved.decision) == (ring[1], "spill")  # off the replica that held its cache
    back = policy.choose(everyone, key)  # r0 is back, empty: the conversation stays where its history now is
    assert (back.replica.id, back.decision) == (ring[1], "affinity_hit")


def test_a_spilled_key_whose_new_home_is_gone_goes_back_to_the_first_live_replica_on_its_ring() -> None:
    policy = AffinityPolicy(load_factor=1.25)
    idle = slots(0, 0, 0)
    key = "session:spilled"
    ring = policy.ring(["r0", "r1", "r2"]).walk(key)
    by_id = {s.id: s for s in idle}
    by_id[ring[0]].in_flight = 3  # bound ceil(1.25 * 4 / 3) = 2: the key's own replica is past it
    assert policy.choose(idle, key).replica.id == ring[1]
    by_id[ring[0]].in_flight = 0
    without_new_home = [s for s in idle if s.id != ring[1]]
    assert policy.choose(without_new_home, key).replica.id == ring[0]


def test_the_ring_walk_is_the_same_in_every_process() -> None:
    assert Ring(["a", "b", "c"]).walk("session:x") == Ring(["c", "b", "a"]).walk("session:x")
    assert sorted(Ring(["a", "b", "c"]).walk("k")) == ["a", "b", "c"]


def test_the_setting_names_the_policy() -> None:
    assert make_policy("affinity").name == "affinity" and make_policy("least_loaded").name == "least_loaded"
    with pytest.raises(ValueError):
        make_policy("random")
    with pytest.raises(ValueError):
        AffinityPolicy(load_factor=0.5)


# ------------------------------------------------------------------ responses
def test_response_ids_are_remembered_from_replies_and_the_oldest_are_forgotten() -> None:
    responses = ResponseMap(capacity=2)
    assert responses.seen(b'{"id": "resp_1", "object": "response"}', "r0")
    assert responses.seen(b'event: response.created\ndata: {"response": {"id":"resp_2"}}', "r1")
    assert not responses.seen(b'{"id": "chatcmpl-3"}', "r0")
    assert (responses.replica("resp_1"), responses.replica("resp_2")) == ("r0", "r1")
    responses.remember("resp_3", "r0")
    assert responses.replica("resp_1") is None and len(responses) == 2
    assert responses.replica(None) is None


def test_engines_keep_their_responses_so_a_previous_response_id_finds_them(make_settings: MakeSettings) -> None:
    spec = EngineSpec.from_settings(make_settings(), "test/tiny", "/m")
    assert spec.environment({})["VLLM_ENABLE_RESPONSES_API_STORE"] == "1"  # else vLLM ignores store: every id 404s
    off = EngineSpec.from_settings(
        make_settings(engine_env={"VLLM_ENABLE_RESPONSES_API_STORE": "0"}), "test/tiny", "/m"
    )
    assert off.environment({})["VLLM_ENABLE_RESPONSES_API_STORE"] == "0"
