"""Hot-issue rules and the other things the clock tick folds: alerts, runner events, pulse, hours, channel series."""

from __future__ import annotations

from server.streams.core import aspects, widgets
from server.streams.core.events import LogRecorded, ShellStats, SourceStatus, Tick
from server.streams.core.reducer import fold, initial_state
from server.streams.core.series import COMPLETED, FAILED, PUBLISHED
from server.streams.core.state import Limits
from server.streams.core.widgets import overview
from tests.unit.factories import beat, depth, job, stopped

T0 = 1_800_000_000.0
VL = widgets.ViewLimits()


def fresh(**limits):
    state = initial_state(Limits(**limits))
    fold(state, SourceStatus(connected=True, at=T0), T0)
    fold(state, Tick(now=T0), T0)
    return state


def tick(state, at):
    return fold(state, Tick(now=at), at)


def alert_ids(state):
    return sorted(state.alerts)


def test_a_channel_with_backlog_and_no_runner_raises_one_alert_until_a_runner_comes():
    """no_runner holds while a channel has a queue and nobody consumes it; it is one alert, then cleared."""
    state = fresh()
    fold(state, depth(ts=T0, legacy=(5, 0, 0)), T0)
    assert tick(state, T0 + 1) & aspects.ALERTS
    assert "no_runner:legacy" in state.alerts
    assert not tick(state, T0 + 2) & aspects.ALERTS  # the same condition: no new alert, no change
    assert [e[3] for e in state.alert_log].count("raised") == 1
    fold(state, beat("r1", ts=T0 + 3, channels=["legacy"]), T0 + 3)
    tick(state, T0 + 4)
    assert "no_runner:legacy" not in state.alerts
    assert state.alert_log[0][3] == "cleared"


def test_a_failing_channel_is_warning_then_critical():
    """failing_channel fires from fail_min failures at fail_rate, and is critical from fail_critical."""
    state = fresh(fail_min=3, fail_rate=0.2, fail_critical=0.5)
    for i in range(8):
        fold(state, job("completed", f"ok{i}", ts=T0, channel="email"), T0 + 1)
    for i in range(3):
        fold(state, job("failed", f"bad{i}", ts=T0, channel="email", error="E"), T0 + 1)
    tick(state, T0 + 2)
    assert state.alerts["failing_channel:email"].severity == "warning"
    for i in range(8):
        fold(state, job("failed", f"worse{i}", ts=T0, channel="email", error="E"), T0 + 3)
    tick(state, T0 + 4)
    assert state.alerts["failing_channel:email"].severity == "critical"
    assert state.alert_log[0][3] == "escalated"
    tick(state, T0 + 6 * 60)  # the failures leave the window
    assert "failing_channel:email" not in state.alerts


def test_stuck_jobs_and_backlog_over_sla():
    """Jobs running past stuck_after are stuck; a backlog older than its SLA is over it (critical at twice)."""
    state = fresh(stuck_after=60, sla={"*": 100.0, "reports": 10.0})
    fold(state, job("started", "slow", ts=T0, runner="r1", channel="email", started_at=T0), T0)
    fold(state, depth(ts=T0, reports=(4, 0, 0), email=(1, 1, 0)), T0)  # oldest = ts - 5 s
    fold(state, beat("r1", ts=T0, channels=["email", "reports"], interval=60.0), T0)
    tick(state, T0 + 10)
    assert alert_ids(state) == ["backlog_sla:reports"]
    assert state.alerts["backlog_sla:reports"].severity == "warning"
    active = [("slow", "email", "f", T0)]
    fold(state, beat("r1", ts=T0 + 20, channels=["email", "reports"], active=active, interval=60.0), T0 + 20)
    tick(state, T0 + 61)
    assert alert_ids(state) == ["backlog_sla:reports", "stuck_jobs:email"]
    assert state.alerts["backlog_sla:reports"].severity == "critical"


def test_a_silent_runner_is_an_issue_a_stopped_one_is_not():
    """silent_runner fires for a runner that stopped beating without saying so, not for one that stopped cleanly."""
    state = fresh()
    fold(state, beat("quiet", ts=T0, interval=1.0), T0)
    fold(state, beat("polite", ts=T0, interval=1.0), T0)
    fold(state, stopped("polite", ts=T0 + 1), T0 + 1)
    tick(state, T0 + 3)
    assert alert_ids(state) == ["silent_runner:quiet"]
    assert state.alerts["silent_runner:quiet"].severity == "warning"
    tick(state, T0 + 7)
    assert state.alerts["silent_runner:quiet"].severity == "critical"
    view = overview.hot_issues(state, VL)
    assert view["rows"]["silent_runner:quiet"]["cta"]["href"] == "/admin/jobs/runners?q=quiet"


def test_source_down_is_critical_and_sets_the_service_status():
    """When the source is unreachable the service status is critical, with that rule."""
    state = fresh()
    fold(state, SourceStatus(connected=False, at=T0 + 1, error="Connection refused"), T0 + 1)
    tick(state, T0 + 2)
    service = overview.service(state, VL)
    assert (service["status"], service["rule"]) == ("critical", "Job system unreachable")
    assert service["broker"] == {"connected": False, "error": "Connection refused", "since": T0 + 1}


def test_runner_events_tell_joins_restarts_drains_silences_and_stops():
    """The runner events ring records what happened to runners, newest first."""
    state = fresh()
    fold(state, beat("r1", ts=T0, interval=1.0), T0)
    fold(state, beat("r1", ts=T0 + 1, interval=1.0, state="draining"), T0 + 1)
    fold(state, beat("r1", ts=T0 + 2, interval=1.0, boot=T0 + 2), T0 + 2)
    tick(state, T0 + 5)
    tick(state, T0 + 9)
    fold(state, beat("r1", ts=T0 + 10, interval=1.0, boot=T0 + 2), T0 + 10)
    tick(state, T0 + 10.5)
    fold(state, stopped("r1", ts=T0 + 11), T0 + 11)
    messages = [e[3] for e in reversed(state.runner_events)]
    assert messages[:4] == ["joined (eu-west host-1)", "now draining", "restarted", "stopped beating: stale"]
    assert messages[4].startswith("silent for") and messages[4].endswith(": offline")
    assert messages[5:] == ["beating again", "stopped (shutdown)"]


def test_pulse_folds_the_beats_of_each_tick_into_one_sample():
    """Each tick with beats adds one point: p50 and max latency in ms, the longest gap, the beat count."""
    state = fresh()
    fold(state, beat("a", ts=T0), T0 + 0.010)
    fold(state, beat("b", ts=T0), T0 + 0.030)
    fold(state, beat("a", ts=T0 + 2), T0 + 2.020)
    assert tick(state, T0 + 3) & aspects.PULSE
    assert list(state.pulse) == [(int(T0 + 3), 20.0, 30.0, 2.01, 3)]
    assert not tick(state, T0 + 4) & aspects.PULSE  # no beats: no point


def test_hours_and_channel_series_count_with_the_minutes():
    """Counts go to the minute, the hour and the channel's own series; KPIs read them by granularity."""
    state = fresh()
    for i in range(3):
        fold(state, job("queued", f"q{i}", ts=T0, channel="email"), T0 + 60 * i)
    fold(state, job("failed", "f", ts=T0, channel="reports", error="E"), T0 + 120)
    hour = int(T0 // 3600)
    assert state.hours[hour][PUBLISHED] == 3
    assert state.channel_series["email"].sum(0, state.minute, PUBLISHED) == 3
    assert state.channel_series["reports"].sum(0, state.minute, FAILED) == 1
    assert state.channel_series["email"].sum(0, state.minute, COMPLETED) == 0
    minutes = overview.kpi(state, VL, "published", "minutes")
    assert minutes["value"] == 3
    assert sum(minutes["points"].values()) == 3
    hours = overview.kpi(state, VL, "published", "hours")
    assert hours["points"] == {str(hour): 3}
    chart = overview.channels_chart(state, VL, "published", "minutes")
    assert list(chart["series"]) == ["email"]


def test_logs_and_shell_stats_are_folded_for_their_pages():
    """jobpulse's own log records and process numbers reach the logs and platform widgets."""
    state = fresh()
    assert fold(state, LogRecorded(T0, "warning", "jobpulse.native", "rejected a message"), T0) == aspects.LOGS
    assert fold(state, ShellStats(T0, {"clients": 3, "pid": 7}), T0) == aspects.PLATFORM
    logs = overview.logs(state, VL)
    assert logs["rows"][logs["order"][0]]["message"] == "rejected a message"
    assert widgets.WIDGETS  # registry imports cleanly
    from server.streams.core.widgets import platform

    assert platform.platform(state, VL)["process"] == {"clients": 3, "pid": 7}


def test_scheduled_today_counts_only_jobs_due_before_the_day_ends():
    """The snapshot card counts scheduled jobs due before the end of today (from the clock tick)."""
    state = fresh()
    fold(state, job("scheduled", "soon", ts=T0, run_at=T0 + 60), T0)
    fold(state, job("scheduled", "tomorrow", ts=T0, run_at=T0 + 90_000), T0)
    fold(state, Tick(now=T0 + 1, day_end=T0 + 3600), T0 + 1)
    assert overview.snapshot(state, VL)["scheduled_today"] == 1


def test_the_service_matrix_names_the_source_and_each_of_its_connections():
    """A source read over Redis and Postgres (django-mojo) gets a row for each, so a Postgres outage is not shown as
    Redis down; the connector row names the source."""
    from server.streams.core.widgets import platform

    state = fresh()
    fold(state, ShellStats(T0, {"source": "mojo"}), T0)
    down = SourceStatus(False, T0, "Postgres: gone", parts={"Redis": "", "Postgres": "gone"})
    assert fold(state, down, T0) == aspects.HEALTH
    rows = platform.platform(state, VL)["matrix"]["rows"]
    assert list(rows) == ["redis", "postgres", "connector", "runners", "jobpulse"]
    assert (rows["redis"]["status"], rows["postgres"]["status"]) == ("ok", "critical")
    assert rows["postgres"]["detail"] == "gone"
    assert rows["connector"]["name"] == "Connector (mojo)"
    fold(state, SourceStatus(True, T0 + 1, "", parts={"Redis": "", "Postgres": ""}), T0 + 1)
    assert platform.platform(state, VL)["matrix"]["rows"]["postgres"]["status"] == "ok"
    # One connection (native, celery): the row it always had.
    native = fresh()
    fold(native, SourceStatus(False, T0, "refused"), T0)
    assert list(platform.platform(native, VL)["matrix"]["rows"]) == ["redis", "connector", "runners", "jobpulse"]


def test_the_service_matrix_names_each_components_last_incident():
    """A raised or escalated alert is its component's latest incident; it stays after the alert clears."""
    from server.streams.core.events import SourceStatus, Tick
    from server.streams.core.reducer import fold, initial_state
    from server.streams.core.widgets import ViewLimits
    from server.streams.core.widgets.platform import platform

    state = initial_state()
    t0 = 1_800_000_000.0
    fold(state, SourceStatus(connected=True, at=t0), t0)
    assert all("incident" not in row for row in platform(state, ViewLimits())["matrix"]["rows"].values())
    fold(state, SourceStatus(connected=False, at=t0 + 5, error="refused"), t0 + 5)
    fold(state, Tick(now=t0 + 6), t0 + 6)  # rules run on the clock
    fold(state, SourceStatus(connected=True, at=t0 + 9), t0 + 9)
    fold(state, Tick(now=t0 + 10), t0 + 10)
    view = platform(state, ViewLimits())
    redis_row = view["matrix"]["rows"]["redis"]
    assert (redis_row["incident"], redis_row["incident_severity"]) == ("Job system unreachable", "critical")
    assert t0 + 5 <= redis_row["incident_at"] <= t0 + 9
    assert "incident" not in view["matrix"]["rows"]["runners"]
    assert view["webhooks"]["configured"] == 0
