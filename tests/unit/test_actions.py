"""Operator actions in the pure core: strict arguments, who may do what, previews counted from the state."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from server import actions
from server.actions import BadArgs, decide, parse_args, preview
from server.roles import ROLES, Principal
from server.streams.core.events import Tick
from server.streams.core.reducer import fold, initial_state
from server.streams.core.state import State
from tests.unit.factories import beat, depth, job

T0 = 1_800_000_000.0


def folded_state(events: list[Any], at: float) -> State:
    state = initial_state()
    for event in [Tick(now=at), *events]:
        fold(state, event, at)
    return state


def user(role: str) -> Principal:
    return Principal(role, role, "session")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "args", "message"),
    [
        ("channel.purge", {}, "channel: required"),
        ("channel.purge", {"channel": "no spaces"}, "channel: "),
        ("channel.purge", {"channel": "email", "extra": 1}, "extra: not an argument of this action"),
        ("runner.logs", {"runner": "r1", "lines": 501}, "lines: "),
        ("runner.drain", {"runners": []}, "runners: from 1 to 1000 runner ids"),
        ("runner.drain", {"runners": ["a", "a"]}, "runners: an id appears twice"),
        ("runner.drain", {"runners": "all"}, "runners: "),
        ("broadcast", {}, "message: required (or a config)"),
        ("broadcast", {"config": {"k": [1]}}, "config: "),
        ("job.run", {"fn": "f", "channel": "c", "payload": {"x": "y" * 20_000}}, "payload: larger than 16384 bytes"),
        ("job.batch", {"channels": "*", "count": 0}, "count: "),
        ("channel.clear_stuck", {"channel": None, "older_than": 1}, "older_than: "),
        ("task.rate_limit", {"fn": "f", "rate": "10/d"}, "rate: "),
        ("task.rate_limit", {"fn": "f", "rate": "-1"}, "rate: "),
    ],
)
def test_bad_arguments_name_the_argument(action: str, args: dict[str, Any], message: str) -> None:
    with pytest.raises(BadArgs) as refused:
        parse_args(action, args)
    assert str(refused.value).startswith(message), str(refused.value)


def test_good_arguments_and_their_canonical_spelling() -> None:
    parsed = parse_args("runner.restart", {"timeout": 5, "runners": ["r2", "r1"]})
    assert actions.canonical(parsed) == '{"runners":["r2","r1"],"timeout":5.0}'
    assert actions.wire_args(parsed) == {"timeout": 5.0}
    assert actions.target(parsed) == "runners:2"
    assert actions.target(parse_args("channel.clear_stuck", {"channel": None})) == "channels:*"


@given(args=st.dictionaries(st.sampled_from(["runners", "channel", "job", "fn", "count", "x"]),
                            st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.text(max_size=3))),
                            max_size=4),
       action=st.sampled_from(sorted(actions.SPECS)))  # fmt: skip
def test_any_arguments_parse_or_are_refused_by_name(args: dict[str, Any], action: str) -> None:
    """Whatever arrives, the answer is typed arguments or BadArgs naming something, never another exception."""
    refusal = ""
    try:
        parsed = parse_args(action, args)
    except BadArgs as exc:
        refusal = str(exc)
    if refusal:
        assert refusal.split(":", 1)[0].strip(), refusal
    else:
        assert isinstance(parsed, actions.SPECS[action].args)


def test_roles_against_actions() -> None:
    one = parse_args("runner.drain", {"runners": ["r1"]})
    every = parse_args("runner.drain", {"runners": "*"})
    assert not decide(user("viewer"), "runner.drain", one).allowed
    assert decide(user("operator"), "runner.drain", one) == actions.Decision(True, False)
    refused = decide(user("operator"), "runner.drain", every)
    assert not refused.allowed and refused.two_phase and "admin role in bulk" in refused.reason
    assert decide(user("admin"), "runner.drain", every) == actions.Decision(True, True)
    assert decide(user("operator"), "channel.purge").two_phase
    assert not decide(user("operator"), "broadcast").allowed


@given(action=st.sampled_from(sorted(actions.SPECS)))
def test_a_higher_role_may_do_whatever_a_lower_one_may(action: str) -> None:
    allowed = [decide(user(role), action).allowed for role in ROLES]
    assert allowed == sorted(allowed)  # False... then True...
    assert not allowed[0]  # a viewer changes nothing


def test_previews_count_from_the_state() -> None:
    state = folded_state(
        [
            beat("r1", ts=T0, channels=["email"]),
            beat("r2", ts=T0, channels=["email"]),
            depth(ts=T0, email=(3, 1, 0)),
            job("queued", "q1", ts=T0, channel="email"),
            job("queued", "q2", ts=T0, channel="email"),
            job("queued", "o1", ts=T0, channel="other"),
            job("started", "s1", ts=T0, channel="email", runner="r1", started_at=T0),
        ],
        T0,
    )
    purge = preview(state, "channel.purge", parse_args("channel.purge", {"channel": "email"}), T0)
    assert purge.count == 3 and set(purge.sample) == {"q1", "q2"} and "cannot be undone" in purge.message
    young = preview(state, "channel.clear_stuck", parse_args("channel.clear_stuck", {"channel": "email"}), T0 + 30)
    old = preview(state, "channel.clear_stuck", parse_args("channel.clear_stuck", {"channel": "email"}), T0 + 61)
    assert (young.count, old.count, old.sample) == (0, 1, ["s1"])
    drain = preview(state, "runner.drain", parse_args("runner.drain", {"runners": "*"}), T0)
    assert drain.count == 2 and sorted(drain.sample) == ["r1", "r2"]
