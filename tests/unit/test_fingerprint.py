"""Failure fingerprints and groups: real tracebacks grouped as a person would, the groups in the fold, the rule."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from server import actions
from server.simulator import tracebacks
from server.streams.core import fingerprint, groups, rules
from server.streams.core.events import GroupMute, GroupMutes, JobEvent, JobEventName, Tick
from server.streams.core.fingerprint import cause, normalise
from server.streams.core.reducer import fold, initial_state
from server.streams.core.state import Limits, State
from server.streams.core.widgets import groups as group_widgets
from server.streams.core.widgets.common import ViewLimits

CELERY = Path(__file__).resolve().parents[1] / "fixtures" / "tracebacks-celery.json"
T0 = 1_764_000_000.0


def test_real_celery_tracebacks_group_by_cause_and_causes_stay_apart() -> None:
    """Captured from a real worker (python -m tests.celery_cluster.capture): each cause a person names is one
    fingerprint, whatever ids and values its messages carry, and no two causes share one."""
    failures = json.loads(CELERY.read_text())
    by_cause: dict[str, set[str]] = {}
    for f in failures:
        by_cause.setdefault(f["cause"], set()).add(cause(f["error"], f["traceback"]).fingerprint)
    assert len(by_cause) == 4 and all(len(fps) == 1 for fps in by_cause.values()), by_cause
    assert len({next(iter(fps)) for fps in by_cause.values()}) == 4
    # The frame is the job's own line, not Celery's machinery nor urllib's below it.
    rates = next(f for f in failures if f["cause"] == "rates service down")
    found = cause(rates["error"], rates["traceback"])
    assert found.frame == "celery_cluster/billing.py in fetch_rates" and found.type == "urllib.error.URLError"


def test_the_simulators_tracebacks_group_by_kind_and_function() -> None:
    """Every kind of failure the simulator renders, for several functions and many random values: one group per
    (kind, function), except where the job's own innermost frame is shared code (the lock helper), as an error
    tracker would group them too."""
    rng = random.Random(7)
    functions = ("billing.sync_customer", "mail.send_receipt", "media.make_thumbnail")
    seen: dict[tuple[str, str], set[str]] = {}
    for kind, error in tracebacks.ERRORS.items():
        for fn in functions:
            for k in range(15):
                text, tb = tracebacks.render(error, fn, {"id": k, "email": f"u{k}@example.org"}, rng)
                seen.setdefault((kind, fn), set()).add(cause(text, tb).fingerprint)
    assert all(len(fps) == 1 for fps in seen.values()), {k: v for k, v in seen.items() if len(v) > 1}
    owners: dict[str, set[tuple[str, str]]] = {}
    for key, fps in seen.items():
        owners.setdefault(next(iter(fps)), set()).add(key)
    shared = {fp: keys for fp, keys in owners.items() if len(keys) > 1}
    assert all({kind for kind, _ in keys} == {"lock_timeout"} for keys in shared.values()), shared


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        ("invalid literal for int() with base 10: 'abc'", "invalid literal for int() with base <n>: '<str>'"),
        ("user 42 not found (request 7f3a9c2e-1b4d-4e8a-9f00-1234567890ab)", "user <n> not found (request <uuid>)"),
        ('no route to "billing"', 'no route to "<str>"'),
        ("POST https://hooks.acme.example/x?id=3 failed", "POST <url> failed"),
        ("mail to jane.doe@example.org bounced", "mail to <email> bounced"),
        ("connect 10.0.0.12:5432 refused", "connect <ip> refused"),
        ("object at 0x7f2a1c3b9d60", "object at <n>"),
        ("Request req_87a0f592389e: declined", "Request <id>: declined"),
        ("took 1.5e3 ms,  then   gave up", "took <n> ms, then gave up"),
    ],
)
def test_messages_are_normalised_where_occurrences_differ(message: str, normalised: str) -> None:
    assert normalise(message) == normalised


def test_a_celery_repr_error_without_traceback_is_read_as_type_and_message() -> None:
    a = cause("ValueError('bad value 42 for user 7')", None)
    b = cause("ValueError('bad value 43 for user 9')", None)
    assert a == b and a.type == "ValueError" and a.message == "bad value <n> for user <n>"
    assert cause("TimeoutError: timed out after 30 s", None).type == "TimeoutError"
    assert cause("something broke", None).type == "Error"


def test_a_multi_line_message_takes_the_exception_line_not_its_detail() -> None:
    tb = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/orders/tasks.py", line 10, in save\n'
        "    cursor.execute(sql)\n"
        '  File "/usr/lib/python3/site-packages/psycopg/cursor.py", line 732, in execute\n'
        "    raise ex.with_traceback(None)\n"
        'psycopg.errors.UniqueViolation: duplicate key value violates unique constraint "orders_pkey"\n'
        "DETAIL:  Key (id)=(5) already exists.\n"
    )
    found = cause(None, tb)
    assert found.type == "psycopg.errors.UniqueViolation"
    assert found.message == 'duplicate key value violates unique constraint "<str>"'
    assert found.frame == "orders/tasks.py in save"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000), st.one_of(st.none(), st.text(max_size=3000)))
def test_any_text_gives_a_bounded_fingerprint(error: str, traceback: str | None) -> None:
    found = cause(error, traceback)
    assert len(found.fingerprint) == 16 and len(found.message) <= fingerprint.MESSAGE_CAP


# The groups in the fold.


def failed(state: State, k: int, fn: str, error: str, at: float, channel: str = "q") -> None:
    steps: tuple[tuple[JobEventName, float], ...] = (("queued", at - 2), ("started", at - 1), ("failed", at))
    for event, ts in steps:
        ev = JobEvent(v=1, id=f"{k}{event}", src="p", seq=0, ts=ts, event=event, job=f"j{k}", channel=channel, fn=fn,
                      runner="r1", error=error if event == "failed" else None)  # fmt: skip
        fold(state, ev, ts)


def test_failures_count_into_their_group_with_samples_and_the_job_knows_its_group() -> None:
    state = initial_state()
    for k in range(7):
        failed(state, k, "billing.charge", f"KeyError('cus_{k}')", T0 + k)
    failed(state, 100, "billing.refund", "ValueError('amount 12,50')", T0 + 20, channel="refunds")
    assert len(state.groups) == 2
    key_error = next(g for g in state.groups.values() if g.type == "KeyError")
    assert key_error.count == 7 and key_error.first == T0 and key_error.last == T0 + 6
    assert key_error.functions == {"billing.charge": 7} and key_error.channels == {"q": 7}
    assert [s[0] for s in key_error.samples] == ["j6", "j5", "j4", "j3", "j2"]
    assert state.jobs["j3"].group == key_error.id
    assert actions.group_failed_jobs(state, key_error.id) == [f"j{k}" for k in range(7)]
    view = group_widgets.failure_groups(state, ViewLimits())
    assert view["order"][0] != key_error.id  # seen most lately first
    assert view["rows"][key_error.id]["count"] == 7 and view["rows"][key_error.id]["new"] is True


def test_groups_are_capped_and_the_least_lately_seen_goes() -> None:
    state = initial_state(Limits(max_groups=3))
    for k in range(5):
        failed(state, k, "f", f"Error{k}: x", T0 + k)
    assert [g.type for g in state.groups.values()] == ["Error2", "Error3", "Error4"]


def test_a_new_group_raises_a_hot_issue_and_a_mute_clears_it() -> None:
    state = initial_state(Limits(group_new_min=3))
    for k in range(2):
        failed(state, k, "f", "KeyError('a')", T0 + k)
    fold(state, Tick(now=T0 + 5), T0 + 5)
    assert not [a for a in state.alerts if a.startswith("failure_group")]
    failed(state, 2, "f", "KeyError('b')", T0 + 6)
    fold(state, Tick(now=T0 + 7), T0 + 7)
    (alert,) = [a for a in state.alerts.values() if a.rule == "failure_group"]
    assert alert.title == "New failure: KeyError in f"
    fold(state, GroupMutes((GroupMute(alert.key, T0 + 600, "oscar"),)), T0 + 8)
    fold(state, Tick(now=T0 + 9), T0 + 9)
    assert alert.id not in state.alerts
    fold(state, Tick(now=T0 + 601), T0 + 601)  # the mute ended
    assert alert.id in state.alerts


def test_a_known_group_that_spikes_raises_a_hot_issue() -> None:
    state = initial_state(Limits(group_new_s=60, group_spike_min=10, group_spike_factor=3.0))
    k = 0
    for minute in range(50):  # one failure every 5 minutes for the hour before: an old, quiet group
        if minute % 5 == 0:
            failed(state, k, "f", "TimeoutError: timed out", T0 + minute * 60)
            k += 1
    fold(state, Tick(now=T0 + 50 * 60), T0 + 50 * 60)
    assert "failure_group" not in {a.rule for a in state.alerts.values()}
    for n in range(12):
        failed(state, k, "f", "TimeoutError: timed out", T0 + 52 * 60 + n)
        k += 1
    fold(state, Tick(now=T0 + 53 * 60), T0 + 53 * 60)
    (alert,) = [a for a in state.alerts.values() if a.rule == "failure_group"]
    assert alert.title.startswith("Failure spike: TimeoutError") and "12 failures in 5 min" in alert.detail
    assert "failure_group" in rules.RULES


def test_the_retry_preview_counts_the_groups_failed_jobs_held() -> None:
    state = initial_state()
    for k in range(3):
        failed(state, k, "f", "KeyError('x')", T0 + k)
    (group,) = state.groups
    found = actions.preview(state, "group.retry", actions.GroupArgs(group=group), T0 + 10)
    assert found.count == 3 and found.sample == ["j0", "j1", "j2"] and "KeyError" in found.message
    # A job retried by its source (a new attempt) leaves the failed status: no longer counted.
    fold(state, JobEvent(v=1, id="r", src="p", seq=0, ts=T0 + 11, event="queued", job="j1", channel="q", fn="f",
                         attempt=2), T0 + 11)  # fmt: skip
    assert actions.group_failed_jobs(state, group) == ["j0", "j2"]


def test_the_cause_memo_is_bounded() -> None:
    state = initial_state()
    for k in range(groups.CAUSE_MEMO + 50):
        groups.cause_of(state, f"E: {k}", None)
    assert len(state.cause_memo) == groups.CAUSE_MEMO
