"""The mojo translator and its event-id cursor: django-mojo's rows and beats as jobpulse events, in any order."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings, strategies as st

from server.streams.core.events import Heartbeat, JobEvent, Rejected, RunnerStopped
from server.streams.core.reducer import fold, initial_state
from server.streams.sources.mojo.events import Beat, EventRow, IdCursor, JobRow, MojoTranslator

NOW = 1_800_000_000.0
JOB = "a" * 32


def row(status: str, attempt: int, **changes: Any) -> JobRow:
    values: dict[str, Any] = dict(
        id=JOB, channel="default", func="demo_jobs.fail_job", status=status, attempt=attempt, max_retries=2,
        runner="e1" if status != "pending" else None, error="again" if status == "failed" else "", traceback="",
        run_at=None, started_at=NOW + 2 if attempt else None, finished_at=NOW + 9 if status in ("completed", "failed")
        else None, created=NOW, payload=b'{"n":1}',
    )  # fmt: skip
    values.update(changes)
    return JobRow(**values)


def ev(event_id: int, name: str, at: float, attempt: int, runner: str | None = None, **details: Any) -> EventRow:
    run_at = details.pop("_run_at", None)
    return EventRow(event_id, JOB, "default", name, NOW + at, runner, attempt, details, run_at)


# The flaky trail of test_mojo_harness, as django-mojo wrote it (ids in commit order, the scheduler's late queued).
TRAIL = [
    ev(1, "created", 0, 0, func="demo_jobs.fail_job", channel="default"),
    ev(2, "queued", 0.1, 0, queue="q"),
    ev(3, "running", 1, 1, "e1"),
    ev(4, "retry", 2, 1, "e1", reason="failure", _run_at=NOW + 3.5),
    ev(5, "running", 4, 2, "e1"),
    ev(6, "queued", 4.1, 0, queue="q", scheduler_id="h-scheduler"),
    ev(7, "failed", 5, 2, "e1", error="again"),
]


def fold_events(events: list[JobEvent]) -> Any:
    state = initial_state()
    for event in events:
        fold(state, event, event.ts)
    return state


def test_a_retried_trail_with_a_late_queued_ends_failed_at_attempt_two() -> None:
    made = MojoTranslator(1.0, 4).events(TRAIL, {JOB: row("failed", 2)}, NOW + 10)
    assert [(e.event, e.attempt) for e in made] == [
        ("queued", 1), ("started", 1), ("retried", 1), ("started", 2), ("queued", 2), ("failed", 2)
    ]  # fmt: skip
    assert made[2].run_at == NOW + 3.5 and made[-1].error == "again" and made[-1].runner == "e1"
    state = fold_events(made)
    job = state.jobs[JOB]
    assert (job.status, job.attempt) == ("failed", 2)
    assert state.health.stale_events == 1  # the late queued is an old step, not a step back


def test_event_and_row_of_one_step_share_an_id_so_it_counts_once() -> None:
    translator = MojoTranslator(1.0, 4)
    # The row says completed before its event is read (events commit late): the row's step is made first.
    first = translator.rows([row("completed", 1)], NOW + 10)
    assert [(e.event, e.attempt) for e in first] == [("completed", 1)]
    later = translator.events([ev(9, "completed", 9, 1, "e1")], {JOB: row("completed", 1)}, NOW + 11)
    assert later == []  # already made, under the same id
    assert first[0].id == f"mojo:{JOB}:1:completed"


def test_a_cancel_request_on_a_running_job_is_no_cancel() -> None:
    translator = MojoTranslator(1.0, 4)
    running = row("running", 1)
    assert [e.event for e in translator.events([ev(1, "running", 1, 1, "e1")], {JOB: running}, NOW)] == ["started"]
    assert translator.events([ev(2, "canceled", 2, 1)], {JOB: running}, NOW) == []
    done = translator.events([ev(3, "canceled", 3, 1)], {JOB: row("canceled", 1)}, NOW)
    assert [(e.event, e.reason) for e in done] == [("canceled", "operator")]


def test_a_purge_without_events_shows_when_the_rows_are_read_again() -> None:
    translator = MojoTranslator(1.0, 4)
    translator.events([ev(1, "queued", 0, 0)], {JOB: row("pending", 0)}, NOW)
    assert translator.open_jobs(10) == [JOB]
    made = translator.rows([row("canceled", 0, finished_at=NOW + 5)], NOW + 6)
    assert [(e.event, e.attempt) for e in made] == [("canceled", 1)]
    assert translator.open_jobs(10) == [] and translator.finished(JOB)


def test_a_manual_retry_on_a_finished_job_is_not_its_step() -> None:
    translator = MojoTranslator(1.0, 4)
    translator.rows([row("failed", 1)], NOW)
    assert translator.events([ev(5, "retry", 20, 1, retry_requested=True, new_job_id="b" * 32)],
                             {JOB: row("failed", 1)}, NOW + 20) == []  # fmt: skip


def test_beats_join_stop_and_crash() -> None:
    translator = MojoTranslator(1.0, 4)
    beat = Beat(ts=NOW, boot=NOW - 60, host="h", channels=("default", "e1"), processed=3)
    [first] = translator.beats({"e1": beat}, ["e1"], NOW)
    assert isinstance(first, Heartbeat) and first.channels == ["default"] and first.interval == 1.0
    assert translator.beats({"e1": beat}, ["e1"], NOW + 0.5) == []  # the same beat
    # A clean stop: key and registry entries go together.
    [stopped] = translator.beats({"e1": None}, [], NOW + 1)
    assert isinstance(stopped, RunnerStopped) and stopped.reason == "shutdown"
    # A crash: the key expires while the registry entry stays; later the registry goes too: no stop is made.
    translator.beats({"e2": Beat(ts=NOW, boot=NOW)}, ["e2"], NOW)
    assert translator.beats({"e2": None}, ["e2"], NOW + 3) == []
    assert translator.beats({"e2": None}, [], NOW + 6) == []
    [bad] = translator.beats({"e3": Beat(error="no readable last_heartbeat")}, ["e3"], NOW)
    assert isinstance(bad, Rejected) and bad.reason == "schema"


def test_a_beat_lists_the_jobs_its_runner_runs() -> None:
    translator = MojoTranslator(1.0, 4)
    translator.events([ev(1, "running", 1, 1, "e1")], {JOB: row("running", 1)}, NOW)
    [beat] = translator.beats({"e1": Beat(ts=NOW + 1, boot=NOW)}, ["e1"], NOW + 1)
    assert isinstance(beat, Heartbeat) and [a.job for a in beat.active] == [JOB]
    translator.events([ev(2, "completed", 2, 1, "e1")], {JOB: row("completed", 1)}, NOW + 2)
    [beat] = translator.beats({"e1": Beat(ts=NOW + 2, boot=NOW)}, ["e1"], NOW + 2)
    assert isinstance(beat, Heartbeat) and beat.active == []


def test_depth_leaves_out_finished_ids_the_processing_set_still_holds() -> None:
    translator = MojoTranslator(1.0, 4)
    translator.rows([row("completed", 1)], NOW)
    depth = translator.depth(2, [JOB, "b" * 32], 2, 1, False, None, NOW)
    assert (depth.queued, depth.inflight, depth.scheduled) == (2, 1, 1)


# -- properties ---------------------------------------------------------------------------------------


@given(st.integers(1, 300), st.randoms(use_true_random=False), st.integers(1, 40))
@settings(max_examples=200, deadline=None)
def test_cursor_reports_every_id_once_in_any_commit_order(n: int, rnd: random.Random, chunk: int) -> None:
    """Ids read in any order and any chunks: each is new exactly once, nothing stays missing, none given up."""
    cursor = IdCursor(lookback_s=1e9)
    ids = list(range(1, n + 1))
    rnd.shuffle(ids)
    seen: list[int] = []
    for start in range(0, n, chunk):
        seen += cursor.observe(ids[start : start + chunk], 0.0)
        cursor.observe(ids[:start], 0.0)  # re-reads change nothing
    assert sorted(seen) == list(range(1, n + 1))
    assert cursor.top == n and not cursor.missing and cursor.given_up == 0


@given(st.integers(2, 200), st.floats(1, 100))
def test_cursor_gives_up_a_missing_id_after_the_lookback(n: int, lookback: float) -> None:
    cursor = IdCursor(lookback_s=lookback)
    cursor.observe([n], 0.0)
    assert len(cursor.missing) == n - 1
    assert cursor.expire(lookback) == 0
    assert cursor.expire(lookback + 0.001) == n - 1 and cursor.given_up == n - 1
    assert cursor.observe([1], lookback + 1) == set()  # a given-up id that comes after all is not new again


@given(st.randoms(use_true_random=False), st.integers(1, 7))
@settings(max_examples=200, deadline=None)
def test_any_read_order_of_the_trail_ends_where_the_row_says(rnd: random.Random, batches: int) -> None:
    """However the trail's rows are split into polls and ordered, the job ends failed at attempt 2, counted once."""
    trail = TRAIL[:]
    rnd.shuffle(trail)
    cuts = sorted(rnd.sample(range(1, len(trail)), min(batches, len(trail)) - 1))
    translator = MojoTranslator(1.0, 4)
    made: list[JobEvent] = []
    for part in (trail[a:b] for a, b in zip([0, *cuts], [*cuts, len(trail)], strict=True)):
        made += translator.events(part, {JOB: row("failed", 2)}, NOW + 10)
    state = fold_events(made)
    job = state.jobs[JOB]
    assert (job.status, job.attempt) == ("failed", 2)
    assert len({e.id for e in made}) == len(made)  # one event per step
    assert sum(1 for e in made if e.event == "failed") == 1


def test_a_job_whose_queued_comes_late_or_was_never_seen_still_shows_when_it_waited_and_started() -> None:
    translator = MojoTranslator(1.0, 4)
    # publish RPUSHes before it writes `queued`: the engine's `running` can be read first.
    [started] = translator.events([ev(2, "running", 1, 1, "e1")], {JOB: row("running", 1)}, NOW + 1)
    assert started.queued_at == NOW  # the row's creation
    # A job that finished before jobpulse watched: only its row is read, and its end says when it waited and ran.
    other = MojoTranslator(1.0, 4)
    [done] = other.rows([row("completed", 1)], NOW + 10)
    assert (done.queued_at, done.started_at) == (NOW, NOW + 2)
    state = fold_events([done])
    job = state.jobs[JOB]
    assert (job.status, job.queued_at, job.started_at) == ("completed", NOW, NOW + 2)


def test_the_scheduler_is_judged_by_its_lock_and_its_progress_lease() -> None:
    import hashlib

    from server.streams.sources.mojo.events import scheduler_warning

    lock = "c434ca74b5544162bfacf22c246db264"
    lease = hashlib.sha256(lock.encode()).hexdigest()
    assert scheduler_warning("p:lock:scheduler", lock, lease) == ("", "", "")
    severity, title, detail = scheduler_warning("p:lock:scheduler", None, None)
    assert (severity, title) == ("warning", "django-mojo scheduler down") and "p:lock:scheduler" in detail
    assert scheduler_warning("p:lock:scheduler", lock, None)[1] == "django-mojo scheduler not looping"
    assert scheduler_warning("p:lock:scheduler", "another", lease)[1] == "django-mojo scheduler not looping"


def test_a_source_warning_is_a_hot_issue_until_it_is_cleared() -> None:
    from server.streams.core.events import SourceWarning, Tick
    from server.streams.core.widgets import ViewLimits, overview

    state = initial_state()
    fold(state, SourceWarning("scheduler", NOW, "warning", "django-mojo scheduler down", "nobody holds it"), NOW)
    fold(state, Tick(NOW + 1), NOW + 1)
    issues = overview.hot_issues(state, ViewLimits())["rows"]
    assert issues["source_warning:scheduler"]["title"] == "django-mojo scheduler down"
    fold(state, SourceWarning("scheduler", NOW + 2), NOW + 2)
    fold(state, Tick(NOW + 3), NOW + 3)
    assert "source_warning:scheduler" not in overview.hot_issues(state, ViewLimits())["rows"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=6),
    max_leaves=20,
)
HB_KEYS = st.sampled_from(["last_heartbeat", "started", "channels", "jobs_processed", "draining", "hostname"])


@given(st.one_of(st.binary(max_size=200), st.dictionaries(HB_KEYS, json_values).map(lambda d: json.dumps(d).encode())))
@settings(max_examples=300, deadline=None)
def test_any_hb_document_is_read_or_rejected_never_raises(raw: bytes) -> None:
    """Whatever sits in a hb key (another writer, a version change, garbage): a beat, or a counted rejection."""
    from server.streams.sources.mojo.connector import parse_beat

    beat = parse_beat(raw)
    made = MojoTranslator(1.0, 4).beats({"e1": beat}, ["e1"], NOW)
    assert all(isinstance(m, Heartbeat | Rejected) for m in made)
    if beat.error:
        assert [type(m) for m in made] == [Rejected]
