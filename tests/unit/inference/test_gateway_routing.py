"""Request checks and replica choice, without any engine."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from llf_common.errors import LLFError
from llf_inference.checks import InvalidRequest, check_chat, check_completion, check_context, parse_body
from llf_inference.engine.spec import EngineSpec
from llf_inference.replica import Replica
from llf_inference.router import EngineFailed, ModelNotServed, pick, route
from llf_inference.routing.affinity import AffinityPolicy
from llf_inference.settings import InferenceSettings
from llf_inference.supervisor import Supervisor

from tests.support.fake_gateway import MODEL, OTHER

pytestmark = pytest.mark.anyio
MakeSettings = Callable[..., InferenceSettings]
MESSAGES = [{"role": "user", "content": "hi"}]


# ------------------------------------------------------------------ checks
def test_parse_body_accepts_an_object_and_rejects_everything_else() -> None:
    assert parse_body(b'{"a": 1}') == {"a": 1}
    for raw in (b"", b"{", b"[]", b'"x"', b'{"t": Infinity}', b'{"t": -Infinity}'):
        with pytest.raises(InvalidRequest):
            parse_body(raw)


@pytest.mark.parametrize(
    "extra",
    [
        {"stream": "yes"},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_completion_tokens": -5},
        {"temperature": "hot"},
        {"temperature": -0.1},
        {"top_p": 1.5},
        {"top_k": -2},
        {"top_k": 1.5},
        {"n": 0},
        {"presence_penalty": 3},
        {"frequency_penalty": -2.5},
        {"repetition_penalty": 0},
        {"seed": "x"},
        {"stop": [1, 2]},
        {"model": ""},
        {"top_logprobs": 21},
    ],
)
def test_wrong_types_and_out_of_range_sampling_parameters_are_rejected(extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_chat({"messages": MESSAGES, **extra})
    assert next(iter(extra)) in caught.value.detail
    assert caught.value.status_code == 400


def test_sensible_requests_pass_the_checks() -> None:
    check_chat(
        {
            "model": MODEL,
            "messages": MESSAGES,
            "temperature": 0,
            "top_p": 1,
            "top_k": -1,
            "seed": 3,
            "stop": ["\n"],
            "stream": True,
            "max_tokens": 5,
            "n": 1,
            "presence_penalty": -2,
        }
    )
    check_completion({"prompt": "hi", "stop": "x"})
    check_completion({"prompt": ["a", "b"]})
    check_completion({"prompt": [1, 2, 3]})
    check_completion({"prompt": [[1, 2], [3]]})


@pytest.mark.parametrize("messages", [None, [], "hi", [1], [{"content": "no role"}], [{"role": "user", "content": 5}]])
def test_chat_messages_must_be_a_non_empty_list_of_role_objects(messages: Any) -> None:
    with pytest.raises(InvalidRequest, match="messages"):
        check_chat({"messages": messages})


@pytest.mark.parametrize("prompt", [None, [], 5, [[]], [None], {"a": 1}])
def test_completion_prompts_must_be_text_or_tokens(prompt: Any) -> None:
    with pytest.raises(InvalidRequest, match="prompt"):
        check_completion({"prompt": prompt})


def test_max_tokens_beyond_the_context_length_is_rejected() -> None:
    check_context({"max_tokens": 512}, 512)
    check_context({"max_tokens": 10**9}, None)
    with pytest.raises(InvalidRequest, match="context length 512"):
        check_context({"max_completion_tokens": 513}, 512)


def test_nan_cannot_sneak_in_as_a_number() -> None:
    assert not math.isnan(parse_body(b'{"temperature": 1e308}')["temperature"])
    with pytest.raises(InvalidRequest, match="NaN"):
        parse_body(b'{"temperature": NaN}')


# ------------------------------------------------------------------ router
def _pool(settings: InferenceSettings, *states: tuple[str, str, int]) -> Supervisor:
    supervisor = Supervisor(settings)
    for index, (model, state, in_flight) in enumerate(states):
        replica = Replica(f"r{index}", EngineSpec.from_settings(settings, model, "/m"), settings)
        replica.state = state  # type: ignore[assignment]
        replica.in_flight = in_flight
        supervisor.replicas.append(replica)
    return supervisor


async def test_pick_prefers_the_ready_replica_with_fewest_requests(make_settings: MakeSettings) -> None:
    supervisor = _pool(
        make_settings(), (MODEL, "ready", 3), (MODEL, "starting", 0), (MODEL, "ready", 1), (OTHER, "ready", 0)
    )
    assert pick(supervisor, MODEL).id == "r2"
    assert pick(supervisor, OTHER).id == "r3"
    supervisor.target = OTHER
    assert pick(supervisor, None).id == "r3"


async def test_pick_explains_why_nothing_can_answer(make_settings: MakeSettings) -> None:
    settings = make_settings()
    supervisor = _pool(settings, (MODEL, "restarting", 0))
    with pytest.raises(LLFError) as caught:
        pick(supervisor, MODEL)
    assert caught.value.status_code == 503 and caught.value.headers == {"Retry-After": "1"}
    assert "restarting" in caught.value.detail

    with pytest.raises(ModelNotServed, match="served models: none"):
        pick(supervisor, "x/y")

    supervisor.switching = True
    supervisor.target = OTHER
    for name in (MODEL, OTHER, None, "x/y"):
        with pytest.raises(LLFError, match="switching to test/other") as caught:
            pick(supervisor, name)
        assert caught.value.status_code == 503

    failed = _pool(settings, (MODEL, "failed", 0))
    with pytest.raises(EngineFailed, match="llf serve test/tiny"):
        pick(failed, MODEL)

    empty = _pool(settings)
    with pytest.raises(ModelNotServed, match="no model is being served"):
        pick(empty, None)
    empty.target = MODEL  # asked for, no replica created yet
    with pytest.raises(LLFError, match="not ready yet"):
        pick(empty, MODEL)


async def test_replicas_that_are_not_ready_or_asleep_get_nothing_and_their_sessions_go_to_the_next_on_the_ring(
    make_settings: MakeSettings,
) -> None:
    supervisor = _pool(make_settings(), (MODEL, "ready", 0), (MODEL, "ready", 0), (MODEL, "ready", 0))
    policy = AffinityPolicy()
    key = "session:s1"
    ring = policy.ring(["r0", "r1", "r2"]).walk(key)
    home, after = (next(r for r in supervisor.replicas if r.id == rid) for rid in ring[:2])
    assert route(supervisor, MODEL, policy, key).replica is home
    for state in ("starting", "draining", "restarting", "failed", "stopped"):
        home.state = state  # type: ignore[assignment]
        assert route(supervisor, MODEL, policy, key).replica is after, state
        assert route(supervisor, MODEL, policy, None).replica is not home, state
        assert route(supervisor, MODEL, policy, key, pinned=home.id).replica is not home, state
    home.state = "ready"

    supervisor.asleep.add(MODEL)  # its lifecycle wakes it before routing; until then nothing reaches it
    with pytest.raises(LLFError, match=r"not ready yet \(asleep\)") as caught:
        route(supervisor, MODEL, policy, key)
    assert caught.value.status_code == 503
