"""Example tests of the fold, one event at a time (h11 test_state style)."""

from __future__ import annotations

import msgspec
import pytest

from server.streams.core import aspects, widgets
from server.streams.core.events import (
    ChannelDepth,
    FailureRecord,
    Reconciled,
    Rejected,
    Restored,
    SourceStatus,
    Tick,
)
from server.streams.core.reducer import fold, initial_state
from server.streams.core.runners import runner_record
from server.streams.core.series import COMPLETED, FAILED, PUBLISHED
from server.streams.core.state import Limits
from tests.unit.factories import beat, depth, job, stopped

VL = widgets.ViewLimits()
T0 = 1_800_000_000.0  # a minute boundary is not needed; minutes are computed from here


def fresh(**limits: object):
    state = initial_state(Limits(**limits))  # type: ignore[arg-type]
    fold(state, SourceStatus(connected=True, at=T0), T0)
    fold(state, Tick(now=T0), T0)
    return state


def test_queued_job_shows_as_live_and_counts_as_published():
    """A queued job becomes a live row and counts once in the published series."""
    state = fresh()
    changed = fold(state, job("queued", "j1", ts=T0), T0 + 0.1)
    assert changed & aspects.LIVE and changed & aspects.SERIES
    view = widgets.live_jobs(state, VL)
    assert list(view["rows"]) == ["j1"] and "order" not in view
    assert view["rows"]["j1"]["status"] == "queued"
    assert view["rows"]["j1"]["since"] == T0
    assert state.series[int((T0 + 0.1) // 60)][PUBLISHED] == 1


def test_job_lifecycle_moves_between_live_sets():
    """queued -> started -> completed moves a job from queued to running to finished, counting completion once."""
    state = fresh()
    fold(state, job("queued", "j1", ts=T0), T0)
    fold(state, job("started", "j1", ts=T0 + 1, runner="r1", started_at=T0 + 1), T0 + 1)
    assert list(state.running) == ["j1"] and not state.queued
    assert state.runner_jobs == {"r1": {"j1"}}
    assert widgets.live_jobs(state, VL)["rows"]["j1"]["runner"] == "r1"
    fold(state, job("completed", "j1", ts=T0 + 2, runner="r1", duration=1.0), T0 + 2)
    assert not state.running and "j1" in state.terminal
    assert state.runner_jobs == {}
    assert state.jobs["j1"].status == "completed"
    assert state.sums[0][COMPLETED] == 1
    assert widgets.live_jobs(state, VL)["rows"] == {}


def test_failed_job_enters_recent_failures_with_first_error_line():
    """A failed event lands in recent failures, newest first, with the error's first line and a capped traceback."""
    state = fresh(traceback_cap=50)
    traceback = "Traceback (most recent call last):\n" + "  frame\n" * 40 + "ValueError: boom"
    fold(state, job("failed", "j1", ts=T0, runner="r1", error="ValueError: boom\nmore", traceback=traceback), T0)
    fold(state, job("failed", "j2", ts=T0 + 1, runner="r1", error="KeyError: 'x'"), T0 + 1)
    view = widgets.failures(state, VL)
    assert [view["rows"][k]["job"] for k in view["order"]] == ["j2", "j1"]
    first = view["rows"][view["order"][1]]
    assert first["error"] == "ValueError: boom"
    tb = state.jobs["j1"].traceback
    assert tb is not None and len(tb) == 50 and tb.endswith("ValueError: boom") and tb.startswith("…")
    assert state.sums[0][FAILED] == 2


def test_retry_with_run_at_schedules_the_next_attempt():
    """A retried event with run_at moves the job to scheduled at the next attempt; without run_at it is queued."""
    state = fresh()
    fold(state, job("started", "j1", ts=T0, runner="r1"), T0)
    fold(state, job("retried", "j1", ts=T0 + 1, runner="r1", run_at=T0 + 60, error="Timeout"), T0 + 1)
    assert state.jobs["j1"].status == "scheduled" and state.jobs["j1"].attempt == 2
    view = widgets.scheduled(state, VL)
    assert view["order"] == ["j1"] and view["rows"]["j1"]["run_at"] == T0 + 60
    fold(state, job("queued", "j1", ts=T0 + 60, attempt=2), T0 + 60)
    assert state.jobs["j1"].status == "queued" and not state.scheduled
    fold(state, job("started", "j1", ts=T0 + 61, attempt=2, runner="r2"), T0 + 61)
    fold(state, job("retried", "j1", ts=T0 + 62, attempt=2, runner="r2"), T0 + 62)
    assert state.jobs["j1"].status == "queued" and state.jobs["j1"].attempt == 3


def test_late_event_does_not_undo_a_newer_one():
    """A started event that arrives after completed (pub/sub across publishers) changes nothing but history."""
    state = fresh()
    fold(state, job("completed", "j1", ts=T0 + 2, runner="r1"), T0 + 2)
    changed = fold(state, job("started", "j1", ts=T0 + 1, runner="r1"), T0 + 3)
    assert state.jobs["j1"].status == "completed"
    assert not changed & aspects.LIVE
    assert state.health.stale_events == 1
    assert [h[1] for h in state.jobs["j1"].history] == ["completed", "started"]


def test_redelivered_event_changes_nothing():
    """The same event id folded twice is counted as a duplicate and changes no widget but health."""
    state = fresh()
    event = job("queued", "j1", ts=T0)
    fold(state, event, T0)
    before = {w.name: w.project(state, VL) for w in widgets.WIDGETS if w.name != "health"}
    changed = fold(state, event, T0 + 1)
    assert changed == 0
    assert state.health.dupes == 1
    assert fold(state, Tick(now=T0 + 2), T0 + 2) & aspects.HEALTH
    assert before == {w.name: w.project(state, VL) for w in widgets.WIDGETS if w.name != "health"}


def test_seq_gap_asks_for_a_catch_up_and_is_counted():
    """A jump in a publisher's seq is a gap: counted, with the missed count (the shell catches up when the count
    moves), and shown on the health widget."""
    state = fresh()
    fold(state, job("queued", "j1", ts=T0, src="p", seq=1), T0)
    changed = fold(state, job("queued", "j2", ts=T0, src="p", seq=5), T0)
    assert changed & aspects.HEALTH
    assert (state.health.gaps, state.health.missed) == (1, 3)
    # A restart starts over at 0: not a gap.
    fold(state, job("queued", "j3", ts=T0, src="p", seq=0), T0)
    assert state.health.gaps == 1


def test_replayed_events_do_not_move_seqs():
    """Events read back from the replay stream fold normally but leave the publisher's seq alone."""
    state = fresh()
    fold(state, job("queued", "j1", ts=T0, src="p", seq=10), T0)
    fold(state, job("queued", "j0", ts=T0 - 5, src="p", seq=3), T0 - 5, replay=True)
    assert "j0" in state.jobs
    fold(state, job("queued", "j2", ts=T0, src="p", seq=11), T0)
    assert state.health.gaps == 0


def test_heartbeat_makes_a_runner_online_then_busy_then_stale_then_offline():
    """Runner status follows its beats and the clock: online, busy when full, stale, then offline."""
    state = fresh()
    fold(state, beat("r1", ts=T0, concurrency=2), T0)
    assert state.runners["r1"].status == "online"
    fold(state, beat("r1", ts=T0 + 2, concurrency=2, active=[("a", "email", "f", T0), ("b", "email", "f", T0)]), T0 + 2)
    assert state.runners["r1"].status == "busy"
    fold(state, Tick(now=T0 + 2 + 2 * 2.5 + 0.1), T0 + 7.1)
    assert state.runners["r1"].status == "stale"
    fold(state, Tick(now=T0 + 2 + 2 * 6 + 0.1), T0 + 14.1)
    assert state.runners["r1"].status == "offline"
    view = widgets.runners(state, VL)
    assert view["counts"]["offline"] == 1 and view["rows"]["r1"]["hb"] == T0 + 2


def test_draining_and_stopped_runner():
    """A draining beat shows draining; runner.stopped shows offline at once and the runner stays listed."""
    state = fresh()
    fold(state, beat("r1", ts=T0, state="draining"), T0)
    assert state.runners["r1"].status == "draining"
    fold(state, stopped("r1", ts=T0 + 1), T0 + 1)
    assert state.runners["r1"].status == "offline" and state.runners["r1"].stop_reason == "shutdown"
    assert widgets.runners(state, VL)["total"] == 1


def test_old_beat_is_ignored_but_a_restart_is_not():
    """A beat older than the last one of the same boot is ignored; a beat with a new boot is a restart."""
    state = fresh()
    fold(state, beat("r1", ts=T0 + 5, concurrency=3), T0 + 5)
    fold(state, beat("r1", ts=T0 + 3, concurrency=9), T0 + 6)
    assert state.runners["r1"].concurrency == 3
    fold(state, beat("r1", ts=T0 + 1, boot=T0, concurrency=7), T0 + 7)
    assert state.runners["r1"].concurrency == 7 and state.runners["r1"].boot == T0


def test_heartbeat_active_list_heals_missed_job_events():
    """A job listed active by a runner shows running even if its started event was lost; one it dropped is unknown."""
    state = fresh()
    fold(state, job("started", "old", ts=T0, runner="r1", started_at=T0), T0)
    fold(state, beat("r1", ts=T0 + 5, active=[("new", "email", "mail.send", T0 + 4)]), T0 + 5)
    assert state.jobs["new"].status == "running" and state.jobs["new"].runner == "r1"
    assert state.jobs["old"].status == "unknown"
    assert list(state.running) == ["new"]


def test_depth_sets_the_counters_and_ignores_older_reports():
    """Depth reports set pending/running/scheduled; an older report for a channel is ignored."""
    state = fresh()
    fold(state, depth(ts=T0 + 2, email=(5, 2, 1), reports=(10, 1, 0)), T0 + 2)
    view = widgets.counters(state, VL)
    assert (view["pending"]["v"], view["running"]["v"], view["scheduled"]["v"]) == (15, 3, 1)
    fold(state, depth(ts=T0 + 1, email=(99, 99, 99)), T0 + 3)
    assert widgets.counters(state, VL)["pending"]["v"] == 15


def test_minutes_without_a_connection_are_gaps():
    """Ticks while the source is down create no bucket, so the sparkline shows a gap, not zero."""
    state = fresh()
    fold(state, SourceStatus(connected=False, at=T0 + 60), T0 + 60)
    fold(state, Tick(now=T0 + 60, connected=False), T0 + 60)
    fold(state, Tick(now=T0 + 120, connected=True), T0 + 120)
    minute = int(T0 // 60)
    buckets = widgets.published(state, VL)["buckets"]
    assert str(minute) in buckets and str(minute + 1) not in buckets and str(minute + 2) in buckets


def test_counters_compare_with_the_day_before():
    """Completed counts of the last 24 h are compared with the 24 h before, once that day was watched."""
    state = fresh()
    fold(state, job("completed", "a", ts=T0), T0)
    assert "prev" not in widgets.counters(state, VL)["completed"]
    day = 24 * 3600
    fold(state, Tick(now=T0 + day), T0 + day)
    fold(state, job("completed", "b", ts=T0 + day), T0 + day)
    fold(state, job("completed", "c", ts=T0 + day), T0 + day)
    view = widgets.counters(state, VL)["completed"]
    assert view == {"v": 2, "prev": 1}


def test_series_keeps_only_its_retention():
    """Buckets older than series_minutes are dropped when the minute rolls."""
    state = fresh(series_minutes=10)
    fold(state, job("queued", "a", ts=T0), T0)
    fold(state, Tick(now=T0 + 11 * 60), T0 + 11 * 60)
    assert min(state.series) > int(T0 // 60)


def test_job_cap_evicts_finished_jobs_first():
    """At max_jobs, the oldest finished job is evicted before any live one."""
    state = fresh(max_jobs=3)
    fold(state, job("completed", "done", ts=T0), T0)
    fold(state, job("queued", "q1", ts=T0), T0)
    fold(state, job("queued", "q2", ts=T0), T0)
    fold(state, job("queued", "q3", ts=T0), T0)
    assert set(state.jobs) == {"q1", "q2", "q3"}
    fold(state, job("queued", "q4", ts=T0), T0)
    assert set(state.jobs) == {"q2", "q3", "q4"}
    assert state.health.evicted_jobs == 2


def test_runner_cap_evicts_the_longest_offline():
    """At max_runners, the runner silent longest (offline first) makes room."""
    state = fresh(max_runners=2)
    fold(state, beat("a", ts=T0), T0)
    fold(state, stopped("a", ts=T0 + 1), T0 + 1)
    fold(state, beat("b", ts=T0 + 2), T0 + 2)
    fold(state, beat("c", ts=T0 + 3), T0 + 3)
    assert set(state.runners) == {"b", "c"}


def test_payload_is_capped_and_marked_truncated():
    """A payload over payload_cap is replaced by a valid JSON marker holding its head and size."""
    state = fresh(payload_cap=100)
    fold(state, job("queued", "j1", ts=T0, payload={"blob": "x" * 500}), T0)
    kept = msgspec.json.decode(state.jobs["j1"].payload or b"")
    assert kept["truncated"] is True and kept["bytes"] > 500 and kept["head"].startswith('{"blob":')


def test_reconciled_keys_rebuild_the_fleet_and_depth():
    """A reconcile brings back runners from their keys, lists registered ones without keys, and sets depth."""
    state = fresh()
    event = Reconciled(
        at=T0 + 10,
        registered=("r1", "r2"),
        heartbeats=(beat("r1", ts=T0 + 9),),
        depth={"email": ChannelDepth(queued=3, inflight=1, scheduled=0, ts=T0 + 9)},
        rtt=0.002,
    )
    fold(state, event, T0 + 10)
    assert state.runners["r1"].status == "online"
    assert state.runners["r2"].status == "offline" and state.runners["r2"].last_recv is None
    assert state.totals == [3, 1, 0]
    assert widgets.health(state, VL)["rtt_ms"] == 2.0


def test_a_complete_registry_forgets_runners_removed_while_nobody_listened():
    """A runner that left the registry during an outage, and has stopped beating, goes; a live one stays."""
    state = fresh()
    fold(state, beat("r1", ts=T0), T0)
    fold(state, beat("r2", ts=T0), T0)
    fold(state, beat("r3", ts=T0 + 28), T0 + 28)  # beat just now, but read after the registry: not yet listed
    later = T0 + 30  # r1 and r2 silent for 30 s: offline by their own clock
    fold(state, Tick(now=later), later)
    keep_listed = Reconciled(at=later, registered=("r1",), heartbeats=(), depth={}, complete=False)
    fold(state, keep_listed, later)
    assert set(state.runners) == {"r1", "r2", "r3"}, "an incomplete registry (over the cap) removes nothing"
    changed = fold(state, Reconciled(at=later, registered=("r1",), heartbeats=(), depth={}, complete=True), later)
    assert changed & aspects.RUNNERS
    assert set(state.runners) == {"r1", "r3"}
    assert any(e[2] == "r2" and "no longer registered" in e[3] for e in state.runner_events)


def test_minutes_without_a_connected_source_stay_gaps():
    """While the source is down the clock creates no series minutes: charts show a gap, not zeros."""
    state = fresh()
    first = int(T0 // 60)
    fold(state, SourceStatus(connected=False, at=T0 + 1, error="lost"), T0 + 1)
    for m in range(1, 4):
        fold(state, Tick(now=T0 + 60 * m, connected=False), T0 + 60 * m)
    fold(state, SourceStatus(connected=True, at=T0 + 240), T0 + 240)
    fold(state, Tick(now=T0 + 240, connected=True), T0 + 240)
    assert first in state.series and first + 4 in state.series
    assert all(first + m not in state.series for m in (1, 2, 3))
    buckets = widgets.published(state, VL)["buckets"]
    assert str(first) in buckets and all(str(first + m) not in buckets for m in (1, 2, 3))


def test_restored_state_is_not_counted_twice():
    """After a restore, replayed events received before counted_until add nothing to the series."""
    state = initial_state()
    minute = int(T0 // 60)
    record = runner_record(_runner_with_beat())
    failure = FailureRecord("e9", "j9", "f", "email", "Boom", T0 - 5)
    fold(state, Restored(series={minute: (7, 3, 1, 0, 0, 0, 0)}, runners=(record,), failures=(failure,),
                         counted_until=T0), T0)  # fmt: skip
    fold(state, job("queued", "jx", ts=T0 - 1), T0 - 1, replay=True)
    assert state.series[minute][PUBLISHED] == 7
    assert "r1" in state.runners and state.failures[0].job == "j9"
    fold(state, job("queued", "jy", ts=T0 + 1), T0 + 1)
    assert state.series[int((T0 + 1) // 60)][PUBLISHED] >= 1


def _runner_with_beat():
    state = initial_state()
    fold(state, beat("r1", ts=T0 - 10), T0 - 10)
    return state.runners["r1"]


def test_rejections_are_counted_by_reason():
    """A Rejected event counts under its reason in health and changes nothing else."""
    state = fresh()
    assert fold(state, Rejected("json", "bad"), T0) == aspects.HEALTH
    fold(state, Rejected("json", "bad"), T0)
    assert widgets.health(state, VL)["rejected"] == {"json": 2}


def test_unknown_event_type_raises():
    """The fold refuses an event type it does not know instead of ignoring it."""
    with pytest.raises(TypeError):
        fold(initial_state(), object(), T0)  # type: ignore[arg-type]


def test_the_dedupe_window_remembers_the_last_ids_at_least_and_forgets_past_twice_that():
    """The window holds two generations of at most `dedupe_window` ids: a redelivery within the last `dedupe_window`
    ids is always dropped; one older than twice that is folded again (docs/protocol.md 1.2)."""
    state = initial_state(Limits(dedupe_window=3))
    for n in range(1, 5):  # e1..e3 fill the first generation; e4 starts the next
        fold(state, job("queued", f"j{n}", id=f"e{n}"), T0)
    fold(state, job("queued", "j1", id="e1"), T0)  # 4 ids back: still in the older generation
    assert state.health.dupes == 1
    for n in range(5, 8):  # e5, e6 fill the second generation; e7 drops the first (e1..e3)
        fold(state, job("queued", f"j{n}", id=f"e{n}"), T0)
    fold(state, job("queued", "j1", id="e1"), T0)
    assert state.health.dupes == 1  # forgotten: folded as new (it changes nothing: the job is queued already)
    fold(state, job("queued", "j6", id="e6"), T0)  # within the last 3: dropped
    assert state.health.dupes == 2
