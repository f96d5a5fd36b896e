"""The quantile sketch and the per-function numbers: the stated error bound, roll-up, merge, restore."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Literal

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from server.streams.core import functions, sketch
from server.streams.core.events import MAX_TIME, JobEvent, JobEventName, StatCell
from server.streams.core.functions import COMPLETED, FAILED, RETRIED, Cell
from server.streams.core.reducer import fold, initial_state
from server.streams.core.series import advance
from server.streams.core.state import Limits, State

durations = st.floats(min_value=0.0, max_value=MAX_TIME, allow_nan=False)
# Realistic job times: 0.1 ms to a day, spread over every order of magnitude.
realistic = st.floats(min_value=-4.0, max_value=5.0).map(lambda e: 10.0**e)


def sketch_of(values: list[float]) -> sketch.Sketch:
    out: sketch.Sketch = {}
    for v in values:
        sketch.add(out, v)
    return out


def exact(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))]


def within(read: float, true: float) -> bool:
    """The sketch's stated bound: ALPHA relative, or under MIN_VALUE absolute for the smallest values."""
    if true <= sketch.MIN_VALUE:
        return read == 0.0
    return abs(read - true) <= sketch.ALPHA * true * (1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(durations, realistic), min_size=1, max_size=400))
def test_every_quantile_is_within_the_stated_error_of_the_exact_one(values: list[float]) -> None:
    read = sketch.quantiles([sketch_of(values)], (0.0, 0.5, 0.9, 0.95, 0.99, 1.0))
    assert read is not None
    for q, got in zip((0.0, 0.5, 0.9, 0.95, 0.99, 1.0), read, strict=True):
        assert within(got, exact(values, q)), (q, got, exact(values, q))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(realistic, max_size=60), min_size=1, max_size=8))
def test_sketches_merge_exactly_like_one_sketch_of_every_value(parts: list[list[float]]) -> None:
    """Several processes (or minutes) each sketch their share; merged, they equal the sketch of all values."""
    whole: sketch.Sketch = {}
    merged: sketch.Sketch = {}
    for part in parts:
        mine: sketch.Sketch = {}
        for v in part:
            sketch.add(mine, v)
            sketch.add(whole, v)
        sketch.merge(merged, mine)
    assert merged == whole
    assert sketch.quantiles([merged]) == sketch.quantiles([whole])


@settings(max_examples=200, deadline=None)
@given(st.lists(realistic, max_size=80), st.lists(realistic, max_size=80))
def test_subtracting_a_merged_sketch_gives_back_the_other(a: list[float], b: list[float]) -> None:
    sa, sb = sketch_of(a), sketch_of(b)
    both = dict(sa)
    sketch.merge(both, sb)
    sketch.subtract(both, sb)
    assert both == sa


def test_bucket_indexes_are_bounded_for_every_duration_a_source_may_send() -> None:
    assert sketch.index(0.0) == sketch.ZERO
    assert sketch.index(sketch.MIN_VALUE) == sketch.ZERO
    assert sketch.index(MAX_TIME) == sketch.MAX_INDEX
    assert sketch.MAX_INDEX - sketch.ZERO < 2_000  # a sketch has at most this many buckets


def test_flat_round_trips_and_unflat_rejects_what_redis_should_not_hold() -> None:
    s: sketch.Sketch = {}
    for v in (0.0, 0.001, 1.5, 1.5, 3600.0):
        sketch.add(s, v)
    assert sketch.unflat(sketch.flat(s)) == s
    for bad in ([1], [sketch.MAX_INDEX + 1, 1], [sketch.ZERO - 1, 1], [10, 0], [10, -3], [10, 2**60]):
        with pytest.raises(ValueError, match="sketch"):
            sketch.unflat(bad)


def test_empty_sketch_has_no_quantiles() -> None:
    assert sketch.quantiles([{}]) is None


# The fold's numbers.

T0 = 1_764_000_000.0  # a minute boundary (divisible by 60)


def job_events(
    k: int, fn: str, channel: str, queued: float, wait: float, runtime: float, end: JobEventName = "completed"
) -> Iterator[JobEvent]:
    started = queued + wait
    yield JobEvent(v=1, id=f"{k}q", src="p", seq=0, ts=queued, event="queued", job=f"j{k}", channel=channel, fn=fn)
    yield JobEvent(v=1, id=f"{k}s", src="p", seq=0, ts=started, event="started", job=f"j{k}", channel=channel, fn=fn,
                   runner="r1")  # fmt: skip
    yield JobEvent(v=1, id=f"{k}e", src="p", seq=0, ts=started + runtime, event=end, job=f"j{k}", channel=channel,
                   fn=fn, runner="r1", error="boom" if end != "completed" else None)  # fmt: skip


def run(state: State, events: Iterable[JobEvent]) -> None:
    for ev in events:
        fold(state, ev, ev.ts)
    functions.drain(state)  # the clock tick's drain


def note(state: State, fn: str, channel: str, column: int, runtime: float, at: float) -> None:
    """One attempt's end noted at `at`, as the job fold does, then drained as the clock tick does."""
    advance(state, at)
    functions.ran(state, fn, channel, column, runtime)
    functions.drain(state)


def test_a_function_counts_runs_failures_retries_and_its_runtime_and_wait_percentiles() -> None:
    state = initial_state()
    for k in range(100):
        end: JobEventName = "failed" if k % 10 == 0 else ("retried" if k % 10 == 1 else "completed")
        run(state, job_events(k, "app.send", "email", T0 + k * 0.5, 0.25, 1.0 + k / 100, end))
    stat = state.fn_stats["app.send"]
    s = functions.window_summary(stat)
    completed, failed, retried = s[:3]
    assert (completed, failed, retried) == (80, 10, 10)
    runtimes = [1.0 + k / 100 for k in range(100)]
    for got, q in zip(s[3:7], (0.5, 0.9, 0.95, 0.99), strict=True):
        assert within(got, exact(runtimes, q))  # type: ignore[arg-type]
    assert s[7] == pytest.approx(max(runtimes))
    assert within(s[8], 0.25)  # type: ignore[arg-type]
    assert state.channel_stats["email"].related == {"app.send": None}
    assert stat.related == {"email": None}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 179), realistic), min_size=1, max_size=150))
def test_minutes_roll_up_into_hours_and_days_exactly(samples: list[tuple[int, float]]) -> None:
    """Every value lands once in its minute, hour and day: the hour's sketch is the merge of its minutes'."""
    limits = Limits(fn_minutes=10_000, fn_hours=10_000)
    state = initial_state(limits)
    samples.sort()
    per_hour: dict[int, list[float]] = {}
    for minute, runtime in samples:
        at = T0 + minute * 60 + 1
        note(state, "f", "c", COMPLETED, runtime, at)
        per_hour.setdefault(int(at // 3600), []).append(runtime)
    stat = state.fn_stats["f"]
    functions.roll(state, stat, int(T0 // 60) + 24 * 60 * 3)  # three days on: everything closed
    for hour, values in per_hour.items():
        summary = stat.hours[hour]
        assert summary[0] == len(values)
        for got, q in zip(summary[3:7], (0.5, 0.9, 0.95, 0.99), strict=True):
            assert within(got, exact(values, q))  # type: ignore[arg-type]
        assert summary[7] == max(values)
    days: dict[int, list[float]] = {}
    for hour, values in per_hour.items():
        days.setdefault(hour // 24, []).extend(values)
    for day, values in days.items():
        assert stat.days[day][0] == len(values)
        assert within(stat.days[day][5], exact(values, 0.95))  # type: ignore[arg-type]


def test_the_window_forgets_minutes_older_than_it_exactly() -> None:
    state = initial_state(Limits(fn_window=5))
    for minute in range(20):
        note(state, "f", "c", COMPLETED, 10.0 if minute < 15 else 1.0, T0 + minute * 60)
    stat = state.fn_stats["f"]
    s = functions.window_summary(stat)
    assert s[0] == 5
    assert s[3] is not None and within(s[3], 1.0) and s[7] == 1.0  # the slow minutes left with the window


def test_functions_past_the_cap_count_as_other() -> None:
    state = initial_state(Limits(max_functions=2))
    for k, fn in enumerate(("a", "b", "c", "d")):
        note(state, fn, "q", FAILED, 1.0, T0 + k)
    assert list(state.fn_stats) == ["a", "b", functions.OTHER]
    assert functions.window_summary(state.fn_stats[functions.OTHER])[1] == 2


def test_a_negative_runtime_from_two_clocks_is_not_measured_but_counted() -> None:
    state = initial_state()
    events = list(job_events(1, "f", "c", T0, 1.0, 2.0))
    # The runner's clock is behind the producer's: it started "before" it was queued, and ended before it started.
    bad_start = msgspec.structs.replace(events[1], ts=T0 - 5)
    bad_end = msgspec.structs.replace(events[2], ts=T0 - 10)
    run(state, [events[0], bad_start, bad_end])
    s = functions.window_summary(state.fn_stats["f"])
    assert s[0] == 1 and s[3] is None and s[8] is None
    assert state.health.unmeasured == 2


def test_a_redelivered_event_counts_once() -> None:
    state = initial_state()
    events = list(job_events(1, "f", "c", T0, 1.0, 2.0))
    run(state, events + events)
    assert functions.window_summary(state.fn_stats["f"])[0] == 1


def stored(stat: functions.Stat) -> tuple[StatCell, ...]:
    """What the store would write for `stat` now, as the cells a load hands the restore."""
    out = []
    for res, slot, cell in functions.stored_cells(stat):
        completed, failed, retried = cell.counts
        rt, wt = dict(cell.rt), dict(cell.wt)
        kind: Literal["fn", "channel"] = "fn" if stat.kind == "fn" else "channel"
        out.append(StatCell(kind, stat.name, "m" if res == "m" else "h", slot, completed, failed, retried,
                            cell.rt_max, cell.wt_max, rt, wt))  # fmt: skip
    return tuple(out)


def test_a_restore_mid_minute_counts_the_open_minute_once_in_its_hour() -> None:
    """The store writes the open minute and the open hour with that minute in it; a restart takes it back out."""
    state = initial_state()
    kept: list[StatCell] = []
    for minute in range(3):
        note(state, "f", "c", COMPLETED, 1.0 + minute, T0 + minute * 60 + 1)
        kept = [c for c in kept if (c.res, c.slot) not in {(x.res, x.slot) for x in stored(state.fn_stats["f"])}]
        kept.extend(stored(state.fn_stats["f"]))
    fresh = initial_state()
    functions.restore(fresh, tuple(c for c in kept if c.kind == "fn"), int(T0 // 60) + 2)
    stat = fresh.fn_stats["f"]
    assert functions.window_summary(stat)[0] == 3
    note(fresh, "f", "c", RETRIED, 5.0, T0 + 3 * 60 + 1)
    functions.roll(fresh, stat, int(T0 // 60) + 61)
    assert stat.hours[int(T0 // 3600)][:3] == (3, 0, 1)


def test_merging_cells_is_what_two_processes_sharing_the_work_would_store() -> None:
    a, b, both = Cell(), Cell(), Cell()
    for k in range(50):
        (a if k % 2 else b).counts[COMPLETED] += 1
        sketch.add((a if k % 2 else b).rt, k / 7)
        both.counts[COMPLETED] += 1
        sketch.add(both.rt, k / 7)
    a.merge(b)
    assert a.counts == both.counts and a.rt == both.rt


def test_the_sketch_constants_state_what_the_docs_say() -> None:
    assert sketch.ALPHA == 0.02
    assert math.isclose(sketch.value_of(sketch.index(10.0)), 10.0, rel_tol=sketch.ALPHA)


def test_metrics_histograms_count_each_value_under_its_bound_and_are_cumulative() -> None:
    from server.metrics import BOUNDS, _buckets

    cell = Cell()
    values = [0.003, 0.02, 0.2, 0.2, 0.7, 3.0, 40.0, 7200.0]  # none within 2% of a bound
    for v in values:
        sketch.add(cell.rt, v)
    buckets, total = _buckets([cell], "rt")
    assert [le for le, _ in buckets] == [*(repr(b) for b in BOUNDS), "+Inf"]
    for (le, n), bound in zip(buckets, (*BOUNDS, math.inf), strict=True):
        assert n == sum(1 for v in values if v <= bound), le
    assert total == pytest.approx(sum(values), rel=sketch.ALPHA)


def test_a_functions_chart_marks_its_runners_restarts_and_deploys() -> None:
    from server.streams.core.events import Heartbeat
    from server.streams.core.widgets import functions as function_widgets
    from server.streams.core.widgets.common import ViewLimits

    state = initial_state()

    def beat(runner: str, boot: float, version: str, ts: float) -> None:
        fold(state, Heartbeat(v=1, src=runner, seq=0, ts=ts, boot=boot, interval=5, version=version), ts)

    beat("r1", T0, "1.4.1", T0)
    beat("r2", T0, "1.4.1", T0)
    run(state, job_events(1, "app.send", "email", T0 + 1, 0.5, 1.0))  # run by r1
    beat("r1", T0 + 100, "1.4.2", T0 + 100)  # a deploy: a new boot on a new version
    beat("r2", T0 + 100, "1.4.1", T0 + 101)  # another runner's restart: not this function's
    beat("r1", T0 + 200, "1.4.2", T0 + 200)  # a plain restart
    view = function_widgets.function(state, ViewLimits(), "app.send", "minutes")
    marks = [(m[1], m[2], m[3]) for m in view["marks"]]  # newest first; r2 never ran it
    assert marks == [("r1", "restarted", "restart"), ("r1", "restarted on 1.4.2 (was 1.4.1)", "deploy"),
                     ("r1", "joined", "restart")]  # fmt: skip
    assert function_widgets.function(state, ViewLimits(), "nobody", "days") == {
        "name": "nobody", "gran": "days", "found": False
    }  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(realistic, max_size=200), st.lists(realistic, max_size=40))
def test_the_windows_merged_walk_reads_what_a_merged_sketch_reads(window: list[float], minute: list[float]) -> None:
    a, b = sketch_of(window), sketch_of(minute)
    assert sketch.merged_quantiles(*sketch.sorted_counts(a), b) == sketch.quantiles([a, b])
