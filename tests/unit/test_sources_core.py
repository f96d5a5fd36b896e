"""Several sources in one state: labels, the fold per source, command routing (pure; examples and properties)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from server import actions, routing
from server.protocol import ProtocolError
from server.settings import Settings
from server.streams.core import rules, widgets
from server.streams.core.events import (
    ActiveJob,
    ChannelDepth,
    Depth,
    Reconciled,
    Rejected,
    RunnerRemoved,
    RunnerStopped,
    SourceStatus,
    SourceWarning,
)
from server.streams.core.labels import SourceRule, relabel, source_of, split
from server.streams.core.reducer import fold, initial_state
from server.streams.core.runners import runner_status
from server.streams.core.state import Limits
from tests.unit.factories import beat, job
from tests.unit.test_properties import T0, depths, heartbeats, job_events

RULES = {
    "pay": SourceRule("pay", "celery", 1.5, 2.0),
    "edge": SourceRule("edge", "native", 2.5, 6.0),
}
TWO = Limits(sources=RULES)
VL = widgets.ViewLimits()


def feed(state: Any, label: str, event: Any, at: float) -> int:
    return fold(state, relabel(event, label, True), at)


def project(name: str, state: Any) -> dict[str, Any]:
    return next(w for w in widgets.WIDGETS if w.name == name).project(state, VL)


# -- labels ---------------------------------------------------------------------------------------


def test_relabel_prefixes_every_id_an_event_carries_and_names_the_source():
    e = job("started", "j1", runner="w1", channel="email")
    out = relabel(e, "pay", True)
    assert (out.id, out.src, out.job, out.channel, out.runner) == (
        f"pay:{e.id}",
        "pay:w1",
        "pay:j1",
        "pay:email",
        "pay:w1",
    )
    b = relabel(beat("w1", channels=["email"], active=[ActiveJob("j1", "email", "f", T0)]), "pay", True)
    assert (b.src, b.channels, b.active[0].job, b.active[0].channel) == ("pay:w1", ["pay:email"], "pay:j1", "pay:email")
    d = relabel(Depth(v=1, src="q", seq=1, ts=T0, channels={"email": ChannelDepth(queued=3)}), "pay", True)
    assert (d.src, list(d.channels)) == ("pay:q", ["pay:email"])
    s = relabel(RunnerStopped(v=1, src="w1", seq=2, ts=T0), "pay", True)
    r = relabel(RunnerRemoved(v=1, src="jp", seq=1, ts=T0, runner="w1"), "pay", True)
    assert (s.src, r.runner) == ("pay:w1", "pay:w1")
    rec = relabel(Reconciled(at=T0, registered=("w1",), heartbeats=(beat("w1"),), depth={"email": ChannelDepth()}),
                  "pay", True)  # fmt: skip
    assert (rec.source, rec.registered, rec.heartbeats[0].src, list(rec.depth)) == (
        "pay",
        ("pay:w1",),
        "pay:w1",
        ["pay:email"],
    )
    for event in (SourceStatus(connected=True, at=T0), SourceWarning(key="k", at=T0)):
        assert relabel(event, "pay", True).source == "pay" == relabel(event, "pay", False).source
    # One source: ids stay the source's own; what carries no id passes untouched.
    assert relabel(e, "pay", False) is e
    rejected = Rejected("json")
    assert relabel(rejected, "pay", True) is rejected


def test_split_and_source_of_know_only_configured_labels():
    assert split("pay:celery@web-1", RULES) == ("pay", "celery@web-1")
    assert split("other:x", RULES) is None and split("pay:", RULES) is None and split("nolabel", RULES) is None
    assert source_of("edge:r1", RULES) == "edge" and source_of("r1", RULES) == ""
    assert source_of("anything", {"native": RULES["edge"]}) == "native"  # one source owns every id


# -- the fold, per source ---------------------------------------------------------------------------


def test_each_source_has_its_link_and_one_down_names_itself():
    state = initial_state(TWO)
    assert list(state.health.links) == ["pay", "edge"] and not state.health.connected
    feed(state, "pay", SourceStatus(connected=True, at=T0), T0)
    feed(state, "edge", SourceStatus(connected=True, at=T0), T0)
    assert state.health.connected
    feed(state, "edge", SourceStatus(connected=False, at=T0 + 5, error="Connection refused"), T0 + 5)
    assert not state.health.connected and state.health.any_connected
    assert state.health.error == "edge: Connection refused"
    held = list(rules.conditions(state, T0 + 6))
    assert [(r, k, t) for r, k, _, t, _ in held if r == "source_down"] == [
        ("source_down", "edge", "Job system unreachable: edge")
    ]
    view = project("health", state)
    assert view["source_order"] == ["pay", "edge"]
    assert view["sources"]["edge"] == {"kind": "native", "connected": False, "error": "Connection refused",
                                       "since": T0 + 5}  # fmt: skip
    rules.evaluate(state, T0 + 6)
    rows = project("platform", state)["matrix"]["rows"]
    assert rows["edge:redis"]["status"] == "critical" and rows["pay:redis"]["status"] == "ok"
    assert rows["edge:redis"]["incident"] == "Job system unreachable: edge" and "incident" not in rows["pay:redis"]
    assert rows["connector"]["status"] == "warning"  # one source of two is still followed


def test_a_warning_of_one_source_is_named_by_it():
    state = initial_state(TWO)
    feed(state, "pay", SourceWarning(key="scheduler", at=T0, severity="warning", title="No scheduler"), T0)
    held = [(k, t) for r, k, _, t, _ in rules.conditions(state, T0) if r == "source_warning"]
    assert held == [("pay:scheduler", "pay: No scheduler")]


def test_a_runner_goes_silent_by_its_own_systems_rule():
    state = initial_state(TWO)
    feed(state, "pay", beat("w1", ts=T0, interval=2.0), T0)
    feed(state, "edge", beat("r1", ts=T0, interval=2.0), T0)
    runners = state.runners
    # 5 s of silence at a 2 s interval: Celery's rule says offline after 2 intervals, the native one stale at 2.5.
    assert runner_status(runners["pay:w1"], T0 + 5) == "offline"
    assert runner_status(runners["edge:r1"], T0 + 5) == "online"
    assert (runners["pay:w1"].source, runners["edge:r1"].source) == ("pay", "edge")


def test_a_sources_registry_forgets_only_its_own_runners():
    state = initial_state(TWO)
    feed(state, "pay", beat("w1", ts=T0), T0)
    feed(state, "edge", beat("r1", ts=T0), T0)
    for rid in ("pay:w1", "edge:r1"):
        state.runners[rid].stopped = True
        state.runners[rid].status = "offline"
    feed(state, "edge", Reconciled(at=T0 + 60, registered=(), heartbeats=(), depth={}, complete=True), T0 + 60)
    assert "edge:r1" not in state.runners and "pay:w1" in state.runners


# The fold of a source's events in a shared state equals its fold alone (its ids with the label), however the
# sources' events interleave.
@st.composite
def source_stream(draw: st.DrawFn) -> list[Any]:
    kinds = st.sampled_from(["job", "job", "job", "beat", "depth", "stop"])
    out: list[Any] = []
    for kind in draw(st.lists(kinds, max_size=40)):
        if kind == "job":
            out.append(draw(job_events()))
        elif kind == "beat":
            out.append(draw(heartbeats()))
        elif kind == "depth":
            out.append(draw(depths()))
        else:
            out.append(
                RunnerStopped(v=1, src=draw(st.sampled_from(["r0", "r1"])), seq=1, ts=T0 + draw(st.integers(0, 400)))
            )
    return out


def jobs_of(state: Any, prefix: str) -> dict[str, tuple[Any, ...]]:
    return {
        jid[len(prefix) :]: (j.status, j.attempt, j.channel[len(prefix) :], (j.runner or "")[len(prefix) :], j.fn)
        for jid, j in state.jobs.items()
        if jid.startswith(prefix)
    }


def channels_of(state: Any, prefix: str) -> dict[str, tuple[Any, ...]]:
    return {
        n[len(prefix) :]: (c.queued, c.inflight, c.scheduled) for n, c in state.channels.items() if n.startswith(prefix)
    }


@settings(max_examples=150, deadline=None)
@given(a=source_stream(), b=source_stream(), order=st.data())
def test_each_source_folds_as_if_it_were_alone(a: list[Any], b: list[Any], order: st.DataObject) -> None:
    merged: list[tuple[str, Any]] = []
    ia, ib = iter(a), iter(b)
    left = {"pay": len(a), "edge": len(b)}
    while left["pay"] or left["edge"]:
        label = order.draw(st.sampled_from([k for k, n in left.items() if n]))
        left[label] -= 1
        merged.append((label, next(ia if label == "pay" else ib)))
    shared = initial_state(TWO)
    alone = {"pay": initial_state(Limits()), "edge": initial_state(Limits())}
    at = T0
    for i, (label, event) in enumerate(merged):
        at += i % 3
        fold(shared, relabel(event, label, True), at)
        fold(alone[label], event, at)
    for label, state in alone.items():
        prefix = f"{label}:"
        assert jobs_of(shared, prefix) == jobs_of(state, "")
        assert channels_of(shared, prefix) == channels_of(state, "")
        assert {r[len(prefix) :] for r in shared.runners if r.startswith(prefix)} == set(state.runners)
    assert all(source_of(r, RULES) for r in shared.runners)  # every id names its source


# -- routing commands ---------------------------------------------------------------------------------


def args(action: str, **kw: Any) -> Any:
    return actions.parse_args(action, kw, 16_384)


def route(a: Any, labels: list[str], several: bool = True) -> dict[str, Any]:
    return routing.route(a, labels, several)


def test_route_splits_targets_by_owner_in_their_own_ids():
    labels = list(RULES)
    routed = route(args("runner.drain", runners=["pay:w1", "edge:r1", "pay:w2"]), labels, True)
    assert {k: v.runners for k, v in routed.items()} == {"pay": ["w1", "w2"], "edge": ["r1"]}
    assert list(route(args("job.cancel", job="edge:j9"), labels, True)) == ["edge"]
    assert route(args("job.cancel", job="edge:j9"), labels, True)["edge"].job == "j9"
    assert route(args("channel.purge", channel="pay:email"), labels, True)["pay"].channel == "email"
    assert route(args("runner.logs", runner="pay:w1"), labels, True)["pay"].runner == "w1"
    # Everything, everywhere: each source does its part with the same arguments.
    assert list(route(args("broadcast", message="hi"), labels, True)) == labels
    assert list(route(args("runner.ping", runners="*"), labels, True)) == labels
    assert list(route(args("channel.clear_stuck", channel=None), labels, True)) == labels
    with pytest.raises(routing.NoOwner, match="belongs to no source"):
        route(args("job.retry", job="j9"), labels, True)
    # One source owns everything, ids untouched.
    one = args("runner.drain", runners=["w1"])
    assert route(one, ["native"], False) == {"native": one}


def test_known_is_one_sources_part_in_its_own_ids():
    state = initial_state(TWO)
    feed(state, "pay", beat("w1", ts=T0, channels=["email"]), T0)
    feed(state, "edge", beat("r1", ts=T0, channels=["email", "pdf"]), T0)
    feed(state, "pay", job("queued", "j1", ts=T0, channel="email"), T0)
    feed(state, "pay", Depth(v=1, src="q", seq=1, ts=T0, channels={"email": ChannelDepth(queued=1)}), T0)
    feed(
        state, "edge", Depth(v=1, src="q", seq=1, ts=T0, channels={"email": ChannelDepth(), "pdf": ChannelDepth()}), T0
    )
    known = routing.known(state, args("job.cancel", job="j1"), "pay")
    assert (known.live, known.channels, known.consumes) == (["w1"], ["email"], {"w1": ["email"]})
    assert known.jobs["j1"] == routing.JobFacts("queued", "email", "mail.send")
    assert routing.known(state, args("runner.ping", runners="*"), "edge").channels == ["email", "pdf"]


def test_label_result_makes_a_sources_ids_console_ids():
    result = {"job": "j1", "replies": [{"src": "w1", "ok": True}], "missing": ["w2"], "count": 2}
    assert routing.label_result(result, "pay") == {
        "job": "pay:j1", "replies": [{"src": "pay:w1", "ok": True}], "missing": ["pay:w2"], "count": 2
    }  # fmt: skip


# -- configuration ----------------------------------------------------------------------------------


def test_jobpulse_sources_gives_each_source_its_own_settings():
    env = {
        "JOBPULSE_SOURCES": "pay:celery:redis://10.0.0.1:6379/0, edge:native:redis://127.0.0.1:6380/0,media:mojo",
        "JOBPULSE_MEDIA_MOJO_DATABASE_URL": "postgresql://mojo@db/mojo",
        "JOBPULSE_EDGE_PREFIX": "edgejobs",
        "JOBPULSE_AUTH": "users",
    }
    s = Settings.from_env(env)
    specs = {spec.label: spec for spec in s.source_specs()}
    assert list(specs) == ["pay", "edge", "media"]
    assert specs["pay"].settings.celery_broker == "redis://10.0.0.1:6379/0"
    assert (specs["pay"].settings.stale_factor, specs["pay"].settings.offline_factor) == (1.5, 2.0)
    assert (specs["edge"].settings.redis_url, specs["edge"].settings.prefix) == ("redis://127.0.0.1:6380/0", "edgejobs")
    assert specs["media"].settings.mojo_database_url == "postgresql://mojo@db/mojo"
    assert s.limits().several and s.limits().sources["media"].kind == "mojo"
    assert s.store == "redis://10.0.0.1:6379/0"  # the first source's Redis, unless JOBPULSE_STORE_URL says


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("Pay:celery", "label 'Pay'"),
        ("pay:kafka", "kind 'kafka'"),
        ("pay:native,pay:celery", "twice"),
        ("media:mojo", "media: JOBPULSE_SOURCE=mojo needs JOBPULSE_MOJO_DATABASE_URL"),
        (",".join(f"s{i}:native" for i in range(17)), "at most 16"),
    ],
)
def test_bad_sources_are_refused_naming_the_entry(value: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Settings.from_env({"JOBPULSE_SOURCES": value})


def test_one_source_stays_as_simple_as_before():
    s = Settings.from_env({"JOBPULSE_SOURCE": "celery"})
    (spec,) = s.source_specs()
    assert (spec.label, spec.kind, spec.settings) == ("celery", "celery", s)
    assert not s.limits().several


# -- the wall of one source -----------------------------------------------------------------------------


def test_the_walls_widgets_show_one_source_by_its_views():
    from server.streams.core.widgets import resolve

    state = initial_state(TWO)
    for label in ("pay", "edge"):
        feed(state, label, SourceStatus(connected=True, at=T0), T0)
    feed(state, "pay", beat("w1", ts=T0), T0)
    feed(state, "edge", beat("r1", ts=T0), T0)
    feed(state, "edge", beat("r2", ts=T0), T0)
    deep = {"email": ChannelDepth(queued=7, inflight=1, oldest=T0 - 900)}
    feed(state, "pay", Depth(v=1, src="q", seq=1, ts=T0, channels=deep), T0)
    feed(state, "edge", Depth(v=1, src="q", seq=1, ts=T0, channels={"pdf": ChannelDepth(queued=2)}), T0)
    for i in range(3):
        feed(state, "pay", job("queued", f"p{i}", ts=T0, channel="email"), T0)
        feed(state, "pay", job("completed", f"p{i}", ts=T0 + 1, runner="w1", channel="email"), T0 + 1)
    feed(state, "edge", job("failed", "e1", ts=T0 + 1, runner="r1", channel="pdf", error="boom"), T0 + 1)
    feed(state, "edge", SourceStatus(connected=False, at=T0 + 2, error="gone"), T0 + 2)
    rules.evaluate(state, T0 + 2)

    def view(key: str) -> dict[str, Any]:
        _, project, interval = resolve(key, state, VL, 1.0)
        assert interval == 1.0  # summed from series: at most once a refresh interval
        return project()

    counters = view("counters?source=pay")
    assert (counters["pending"]["v"], counters["running"]["v"], counters["completed"]["v"]) == (7, 1, 3)
    assert view("counters?source=edge")["failed"]["v"] == 1
    assert view("fleet_summary?source=edge")["total"] == 2 and view("fleet_summary?source=pay")["total"] == 1
    assert list(view("backlogs?source=pay")["rows"]) == ["pay:email"]
    assert list(view("backlogs?source=edge")["rows"]) == ["edge:pdf"]
    edge_issues = view("hot_issues?source=edge")
    assert "source_down:edge" in edge_issues["rows"]
    assert all(r["key"].startswith("pay") for r in view("hot_issues?source=pay")["rows"].values())
    service = view("service?source=edge")
    assert service["status"] == "critical" and service["broker"]["connected"] is False
    assert view("service?source=pay")["broker"]["connected"] is True
    assert sum(view("published?source=pay")["buckets"].values()) == 3

    with pytest.raises(ProtocolError, match="source must be one of"):
        resolve("counters?source=nope", state, VL, 1.0)
    one = initial_state(Limits(sources={"native": RULES["edge"]}))
    with pytest.raises(ProtocolError, match="watches one source"):
        resolve("counters?source=native", one, VL, 1.0)
