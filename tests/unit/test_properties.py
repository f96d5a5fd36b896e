"""Property tests of the pure core (Hypothesis): the invariants the live protocol rests on."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import given, settings, strategies as st

from server.streams.core import aspects, mergepatch, widgets
from server.streams.core.events import (
    ActiveJob,
    AuditNoted,
    ChannelDepth,
    Depth,
    Heartbeat,
    JobEvent,
    LogRecorded,
    Rejected,
    RunnerStopped,
    ShellStats,
    SourceStatus,
    Tick,
)
from server.streams.core.jobs import SETTLED
from server.streams.core.reducer import fold, initial_state
from server.streams.core.state import Limits
from server.streams.hub import Hub
from server.streams.hubcore import HubLimits
from tests.unit.factories import Collector

VL = widgets.ViewLimits(live_rows=4, failure_rows=4, scheduled_rows=4, runner_rows=3, spark_minutes=5)
T0 = 1_800_000_000.0
JOB_EVENTS = ("queued", "scheduled", "started", "retried", "completed", "failed", "canceled", "expired")
JOBS = [f"j{i}" for i in range(6)]
RUNNERS = ["r0", "r1", "r2"]
CHANNELS = ["email", "reports"]


@st.composite
def job_events(draw: st.DrawFn) -> JobEvent:
    event = draw(st.sampled_from(JOB_EVENTS))
    runner = draw(st.sampled_from(RUNNERS)) if event not in ("queued", "scheduled") else None
    return JobEvent(
        v=1,
        id=draw(st.text("abcdef0123", min_size=1, max_size=6)),
        src=runner or "producer",
        seq=draw(st.integers(0, 30)),
        ts=T0 + draw(st.integers(0, 400)),
        event=event,  # type: ignore[arg-type]
        job=draw(st.sampled_from(JOBS)),
        channel=draw(st.sampled_from(CHANNELS)),
        fn=draw(st.sampled_from(["mail.send", "pdf.render"])),
        attempt=draw(st.integers(1, 3)),
        runner=runner,
        run_at=T0 + draw(st.integers(0, 900)) if event in ("scheduled", "retried") and draw(st.booleans()) else None,
        error=draw(st.sampled_from([None, "ValueError: x", "Timeout\nsecond line"])),
        payload=msgspec.Raw(b'{"n":1}') if draw(st.booleans()) else msgspec.Raw(),
    )


@st.composite
def heartbeats(draw: st.DrawFn) -> Heartbeat:
    src = draw(st.sampled_from(RUNNERS))
    active = draw(st.lists(st.sampled_from(JOBS), max_size=3, unique=True))
    return Heartbeat(
        v=1,
        src=src,
        seq=draw(st.integers(0, 30)),
        ts=T0 + draw(st.integers(0, 400)),
        boot=T0 - draw(st.sampled_from([100, 200])),
        interval=draw(st.sampled_from([1.0, 2.0, 5.0])),
        state=draw(st.sampled_from(["running", "draining"])),
        concurrency=draw(st.integers(1, 3)),
        active=[ActiveJob(j, "email", "mail.send", T0) for j in active],
    )


@st.composite
def depths(draw: st.DrawFn) -> Depth:
    channels = draw(st.dictionaries(st.sampled_from(CHANNELS), st.tuples(*[st.integers(0, 50)] * 3), min_size=1))
    return Depth(
        v=1,
        src="broker",
        seq=draw(st.integers(0, 30)),
        ts=T0 + draw(st.integers(0, 400)),
        channels={n: ChannelDepth(queued=q, inflight=i, scheduled=s) for n, (q, i, s) in channels.items()},
    )


def others(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["tick", "tick", "status", "stopped", "rejected", "log", "shell", "audit"]))
    if kind == "audit":
        # A refused command has no count: the activity widget must not show that as a null (a patch cannot say it).
        return AuditNoted(
            id=f"{draw(st.integers(1, 99))}-0", at=T0, user="oscar", role="operator", action="runner.ping",
            target=draw(st.sampled_from(["r0", "email", ""])), ok=draw(st.booleans()), result="done",
            count=draw(st.one_of(st.none(), st.integers(0, 3))), message="", error="",
        )  # fmt: skip
    if kind == "tick":
        return Tick(now=T0 + draw(st.integers(0, 600)), connected=draw(st.booleans()), day_end=T0 + 3600)
    if kind == "log":
        return LogRecorded(T0, draw(st.sampled_from(["warning", "error"])), "jobpulse.test", draw(st.text(max_size=20)))
    if kind == "shell":
        return ShellStats(T0, {"clients": draw(st.integers(0, 9))})
    if kind == "status":
        return SourceStatus(connected=draw(st.booleans()), at=T0, error=draw(st.sampled_from(["", "down"])))
    if kind == "stopped":
        return RunnerStopped(v=1, src=draw(st.sampled_from(RUNNERS)), seq=1, ts=T0 + draw(st.integers(0, 400)))
    return Rejected(draw(st.sampled_from(["json", "schema"])))


@st.composite
def streams(draw: st.DrawFn, min_size: int = 0, max_size: int = 60) -> list[tuple[Any, float]]:
    """A list of (event, receive time); receive times never go back, as on the live path."""
    n = draw(st.integers(min_size, max_size))
    out = []
    at = T0
    for _ in range(n):
        kind = draw(st.sampled_from(["job", "job", "job", "beat", "depth", "other"]))
        event: Any
        if kind == "job":
            event = draw(job_events())
        elif kind == "beat":
            event = draw(heartbeats())
        elif kind == "depth":
            event = draw(depths())
        else:
            event = others(draw)
        at += draw(st.sampled_from([0, 0, 0.5, 7, 61]))
        out.append((event, at))
    return out


def views(state: Any) -> dict[str, dict[str, Any]]:
    return {w.name: w.project(state, VL) for w in widgets.WIDGETS}


SMALL = Limits(
    max_jobs=5,
    max_runners=2,
    failures_cap=3,
    dedupe_window=8,
    series_minutes=6,
    job_history=3,
    hours_retention=2,
    max_channel_series=1,
    channel_minutes=4,
    runner_events_cap=4,
    alert_log_cap=4,
    logs_cap=3,
    pulse_points=3,
)


@settings(max_examples=150, deadline=None)
@given(events=streams(), cut=st.integers(0, 60), data=st.data())
def test_snapshot_plus_patches_equals_a_fresh_snapshot(events, cut, data):
    """A client that took a snapshot at any point and applied every patch since holds the same data as a fresh one."""
    state = initial_state()
    cut = min(cut, len(events))
    for event, at in events[:cut]:
        fold(state, event, at)
    held = views(state)  # the client's snapshot
    last = dict(held)
    rest = events[cut:]
    # Fold the rest in ticks of random size; the hub sends one merge patch per changed widget per tick.
    while rest:
        size = data.draw(st.integers(1, max(1, len(rest))))
        chunk, rest = rest[:size], rest[size:]
        for event, at in chunk:
            fold(state, event, at)
        now = views(state)
        for name, view in now.items():
            patch = mergepatch.diff(last[name], view)
            if patch is not None:
                held[name] = mergepatch.apply(held[name], msgspec.json.decode(msgspec.json.encode(patch)))
        last = now
    assert held == views(state)


@settings(max_examples=150, deadline=None)
@given(events=streams(min_size=1), pick=st.integers(0, 1000))
def test_a_redelivered_job_event_changes_nothing(events, pick):
    """Folding an already-folded job event again changes no widget except the duplicate count."""
    state = initial_state()
    for event, at in events:
        fold(state, event, at)
    jobs = [(e, at) for e, at in events if isinstance(e, JobEvent)]
    if not jobs:
        return
    event, at = jobs[pick % len(jobs)]
    before = views(state)
    dupes = state.health.dupes
    changed = fold(state, event, at + 1)
    after = views(state)
    assert changed == 0
    assert state.health.dupes == dupes + 1
    before.pop("health")
    after.pop("health")
    assert before == after


@settings(max_examples=100, deadline=None)
@given(events=streams())
def test_the_fold_is_deterministic_and_views_hold_no_null(events):
    """Two fresh states folding the same events show the same views, and no view holds a null."""
    a, b = initial_state(), initial_state()
    for event, at in events:
        fold(a, event, at)
        fold(b, event, at)
    va, vb = views(a), views(b)
    assert va == vb
    assert not mergepatch.has_null(va)
    # Hot issues: a condition that persists stays one alert. Two ticks at the same moment: the second raises
    # nothing and changes nothing.
    fold(a, Tick(now=a.now, connected=a.health.connected), a.now)
    log_before = list(a.alert_log)
    assert not fold(a, Tick(now=a.now, connected=a.health.connected), a.now) & aspects.ALERTS
    assert list(a.alert_log) == log_before
    assert len(va["hot_issues"]["order"]) == len(set(va["hot_issues"]["order"]))


@settings(max_examples=150, deadline=None)
@given(events=streams(max_size=80))
def test_memory_stays_within_every_cap(events):
    """Whatever arrives, jobs, runners, failures, dedupe ids and series stay within their caps."""
    state = initial_state(SMALL)
    for event, at in events:
        fold(state, event, at)
        assert len(state.jobs) <= SMALL.max_jobs
        assert len(state.runners) <= SMALL.max_runners
        assert len(state.failures) <= SMALL.failures_cap
        assert len(state.seen) <= SMALL.dedupe_window and len(state.seen_before) <= SMALL.dedupe_window
        assert len(state.series) <= SMALL.series_minutes + 1
        assert len(state.hours) <= SMALL.hours_retention + 2
        assert len(state.channel_series) <= SMALL.max_channel_series
        assert len(state.runner_events) <= SMALL.runner_events_cap
        assert len(state.alert_log) <= SMALL.alert_log_cap
        assert len(state.logs) <= SMALL.logs_cap
        assert len(state.pulse) <= SMALL.pulse_points
        assert all(len(j.history) <= SMALL.job_history for j in state.jobs.values())
        assert set(state.running) | set(state.queued) | set(state.scheduled) | set(state.terminal) <= set(state.jobs)
        for runner_id, held in state.runner_jobs.items():
            assert all(state.jobs[j].status == "running" and state.jobs[j].runner == runner_id for j in held)
        for job_id in state.running:
            runner = state.jobs[job_id].runner
            assert runner is None or job_id in state.runner_jobs[runner]
        assert_indexes_match(state)


def assert_indexes_match(state: Any) -> None:
    """The search indexes hold exactly the jobs' current values."""
    expected: dict[str, dict[str, set[str]]] = {name: {} for name in state.index}
    for job in state.jobs.values():
        settled = job.status if job.status in SETTLED else None
        for name, value in (("status", settled), ("channel", job.channel), ("fn", job.fn),
                            ("runner", job.runner), ("cid", job.cid)):  # fmt: skip
            if value is not None:
                expected[name].setdefault(value, set()).add(job.id)
    # A value of one job is kept as a 1-tuple, of more as a dict (state.Ids): compare the ids, whatever the shape.
    held = {name: {value: set(ids) for value, ids in values.items()} for name, values in state.index.items()}
    assert held == expected
    assert all(type(ids) is tuple for values in state.index.values() for ids in values.values() if len(ids) == 1)
    pools = {"queued": state.queued, "running": state.running, "scheduled": state.scheduled}
    for job in state.jobs.values():
        assert job.status != "new"
        if job.status in pools:
            assert job.id in pools[job.status]


LIFECYCLES = [
    [("queued", 1), ("started", 1), ("completed", 1)],
    [("scheduled", 1), ("queued", 1), ("started", 1), ("retried", 1), ("queued", 2), ("started", 2), ("failed", 2)],
    [("queued", 1), ("started", 1), ("retried", 1), ("started", 2), ("completed", 2)],
    [("queued", 1), ("canceled", 1)],
]


@settings(max_examples=200, deadline=None)
@given(lifecycle=st.sampled_from(LIFECYCLES), order=st.permutations(range(7)))
def test_a_jobs_events_in_any_order_end_in_the_same_status(lifecycle, order):
    """Pub/sub may reorder a job's events across publishers; the job ends in the same status and attempt anyway."""
    events = [
        JobEvent(v=1, id=f"e{i}", src="p", seq=i, ts=T0 + i, event=name, job="j", channel="email", fn="f",
                 attempt=attempt, runner="r1" if name not in ("queued", "scheduled") else None,
                 run_at=T0 + 100 if name == "scheduled" else None)
        for i, (name, attempt) in enumerate(lifecycle)
    ]  # fmt: skip
    in_order = initial_state()
    for event in events:
        fold(in_order, event, T0 + 10)
    shuffled = initial_state()
    for index in [i for i in order if i < len(events)]:
        fold(shuffled, events[index], T0 + 10)
    a, b = in_order.jobs["j"], shuffled.jobs["j"]
    assert (a.status, a.attempt) == (b.status, b.attempt)


# Every parametrized view a page opens, in each of its shapes (the job views name jobs the streams use).
VIEW_KEYS = [
    "fleet", "fleet?status=online", "fleet?q=r1", "fleet?page=2&region=eu-west", "jobs", "jobs?q=status%3Afailed",
    "jobs?q=channel%3Aemail&sort=-queued", "job?id=j1", "job?id=j4", "find?q=j2", "kpi?metric=completed",
    "kpi?gran=hours&metric=failed", "chart?metric=completed", "chart?gran=hours&metric=retried", "runner?id=r0",
    "runner?id=r2", "schedule", "schedule?page=2",
]  # fmt: skip


def hub_rig(state: Any) -> tuple[Hub, Any]:
    """The real hub over `state`: the fixed widgets and the views resolved as the server resolves them."""
    hub = Hub(
        [(w.name, w.aspects, functools.partial(w.project, state, VL)) for w in widgets.WIDGETS],
        HubLimits(tick=0.01, beat=60.0),
        epoch="ep",
        clock=lambda: state.now or T0,
        resolver=lambda key: widgets.resolve(key, state, VL, 0.0),
    )
    return hub, hub.attach(Collector())


def assemble(held: dict[str, Any], seqs: dict[str, int], messages: list[bytes]) -> None:
    """Apply every snapshot and patch in `messages` to what the client holds, checking each feed's seq order."""
    for raw in messages:
        body = msgspec.json.decode(raw)
        for frame in body["frames"] if body["type"] == "batch" else [body]:
            if frame["type"] == "snapshot":
                held[frame["w"]], seqs[frame["w"]] = frame["data"], frame["seq"]
            elif frame["type"] == "patch":
                assert frame["seq"] == seqs[frame["w"]] + 1, (frame["w"], frame["seq"], seqs[frame["w"]])
                held[frame["w"]] = mergepatch.apply(held[frame["w"]], frame["data"])
                seqs[frame["w"]] = frame["seq"]
    messages.clear()


@settings(max_examples=60, deadline=None)
@given(events=streams(max_size=50), data=st.data())
def test_over_the_real_hub_snapshot_plus_patches_equal_every_widget_and_view_at_every_seq(events, data):
    """A client subscribed to every widget and a spread of views, built only from what the hub wrote it (one
    snapshot each, then patches), holds exactly each feed's data after every flush; no feed ever holds a null."""
    state = initial_state()
    hub, client = hub_rig(state)
    keys = [w.name for w in widgets.WIDGETS] + VIEW_KEYS
    assert hub.subscribe(client, keys, None, {}) == []
    projections: dict[str, Callable[[], dict[str, Any]]] = {
        w.name: functools.partial(w.project, state, VL) for w in widgets.WIDGETS
    }
    projections.update({key: widgets.resolve(key, state, VL, 0.0)[1] for key in VIEW_KEYS})
    held: dict[str, Any] = {}
    seqs: dict[str, int] = {}
    hub.flush()
    rest = events
    while True:
        assemble(held, seqs, client.peer.messages)
        for key in keys:
            feed = hub.feeds[key]  # what a fresh snapshot would hold now: the feed's data at its seq
            assert seqs[key] == feed.seq and held[key] == feed.view, key
            assert not mergepatch.has_null(feed.view), key
        if not rest:
            break
        size = data.draw(st.integers(1, max(1, len(rest))))
        chunk, rest = rest[:size], rest[size:]
        changed = 0
        for event, at in chunk:
            changed |= fold(state, event, at)
        hub.mark(changed & aspects.ALL)
        hub.flush()
    # Every feed brought up to date (some aspects, like the health card's event count, are refreshed by the clock
    # rather than by every event): the client then holds what each projection gives from the state.
    hub.mark(aspects.ALL)
    hub.flush()
    assemble(held, seqs, client.peer.messages)
    for key in keys:
        assert held[key] == projections[key](), key


@settings(max_examples=200, deadline=None)
@given(events=streams(max_size=80))
def test_widgets_that_show_the_same_quantity_agree_after_every_event(events):
    """Wherever two widgets show the same quantity, they show the same number at the same seq: the counters and
    the Live Jobs and Scheduled headers, the channel capacity table's per-channel depths and the counters, the
    backlogs and the capacity table, and the runner counts of the dashboard, the wall, and the runner grid."""
    from server.streams.core.widgets import fleet

    state = initial_state(SMALL)
    for event, at in events:
        fold(state, event, at)
        v = views(state)
        counters = v["counters"]
        pending, running, scheduled = (counters[k]["v"] for k in ("pending", "running", "scheduled"))
        assert (pending, running) == (v["live_jobs"]["queued"], v["live_jobs"]["running"])
        assert scheduled == v["scheduled"]["total"]
        # Live Jobs' rows: running ones first, then queued, each with the status of its part; the rows' places
        # (how a page orders them) are the pools' order.
        live = v["live_jobs"]["rows"]
        statuses = [row["status"] for row in live.values()]
        assert statuses == sorted(statuses, key=lambda s: s != "running") and set(statuses) <= {"running", "queued"}
        for status, pool in (("running", state.running), ("queued", state.queued)):
            shown = [k for k, row in live.items() if row["status"] == status]
            assert shown == sorted(shown, key=lambda k: live[k]["place"]) == list(pool)[: len(shown)]
        capacity = v["channels"]["rows"]
        if state.channels:  # the counts are the depth's: the capacity table's channels add up to them
            assert sum(r["queued"] for r in capacity.values()) == pending
            assert sum(r["inflight"] for r in capacity.values()) == running
            assert sum(r["scheduled"] for r in capacity.values()) == scheduled
        for name, row in v["backlogs"]["rows"].items():
            assert (row["queued"], row["inflight"]) == (capacity[name]["queued"], capacity[name]["inflight"])
        # Runners by status: the wall's summary, the dashboard's list and the grid (no filters) count alike.
        grid = fleet.fleet(state, VL)
        summary = v["fleet_summary"]
        assert summary["counts"] == v["runners"]["counts"] == grid["counts"]
        assert (
            summary["total"] == v["runners"]["total"] == grid["all"] == grid["total"] == sum(summary["counts"].values())
        )
        by_region = {region: sum(c.values()) for region, c in summary["regions"].items()}
        assert sum(by_region.values()) == summary["total"]
        assert {(r or "-"): n for r, n in grid["regions"].items()} == by_region
        problems = {r: s for r, s in grid["problems"].items()}
        assert grid["problem_total"] == summary["counts"]["offline"] + summary["counts"]["stale"] >= len(problems)


def test_the_counts_follow_the_jobs_until_a_depth_is_reported_then_the_depth():
    """With no depth reported (a producer that sends job events only), the counts are the jobs followed; from the
    first depth on, the broker's, everywhere at once."""
    state = initial_state()
    fold(state, SourceStatus(connected=True, at=T0), T0)
    for i, event in enumerate(["queued", "queued", "started"]):
        job = JobEvent(v=1, id=f"e{i}", src="p", seq=i, ts=T0, event=event, job=f"j{i}", channel="email",  # type: ignore[arg-type]
                       fn="mail.send", attempt=1, runner="r0" if event == "started" else None)  # fmt: skip
        fold(state, job, T0)
    v = views(state)
    assert (v["counters"]["pending"]["v"], v["counters"]["running"]["v"]) == (2, 1)
    assert (v["live_jobs"]["queued"], v["live_jobs"]["running"]) == (2, 1)
    fold(state, Depth(v=1, src="b", seq=1, ts=T0, channels={"email": ChannelDepth(queued=40, inflight=7)}), T0)
    v = views(state)
    assert (v["counters"]["pending"]["v"], v["counters"]["running"]["v"]) == (40, 7)
    assert (v["live_jobs"]["queued"], v["live_jobs"]["running"]) == (40, 7)


@settings(max_examples=100, deadline=None)
@given(running=st.integers(0, 14), queued=st.integers(0, 14))
def test_live_jobs_shows_queued_and_running_jobs(running, queued):
    """Live Jobs (Queued + Running): up to half its rows are queued jobs whenever both kinds are there, and each
    part fills the rows the other leaves."""
    state = initial_state()
    fold(state, SourceStatus(connected=True, at=T0), T0)
    for i in range(running + queued):
        event = "started" if i < running else "queued"
        job = JobEvent(v=1, id=f"e{i}", src="p", seq=i, ts=T0 + i, event=event, job=f"j{i:02d}", channel="email",  # type: ignore[arg-type]
                       fn="mail.send", attempt=1, runner="r0" if event == "started" else None)  # fmt: skip
        fold(state, job, T0 + i)
    n = 10
    view = widgets.dashboard.live_jobs(state, widgets.ViewLimits(live_rows=n))
    ordered = sorted(view["rows"].values(), key=lambda row: (row["status"] != "running", row["place"]))
    shown = [row["status"] for row in ordered]
    assert len(shown) == min(n, running + queued)
    q = shown.count("queued")
    assert q == min(queued, max(n // 2, n - running)) and shown.count("running") == len(shown) - q
