"""What every widget module shares: the view type, display limits, the widget record, small helpers.

Pure layer: standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.streams.core.labels import SEP, source_of
from server.streams.core.series import MinuteRing
from server.streams.core.state import Link, State

View = dict[str, Any]


def live_counts(state: State) -> tuple[int, int, int]:
    """How many jobs are queued, running and scheduled now: one definition for every widget that shows them.

    The broker's depth where any channel reports one (it counts every job, those queued before jobpulse started
    included, and the channel capacity table's per-channel numbers sum to it); else the jobs jobpulse followed
    from their events. Two widgets with their own definitions disagreed on the same page (the dashboard's Running
    counter read 2-4 below the Live Jobs header: depth is sampled, events are not).
    """
    if state.channels:
        queued, running, scheduled = state.totals
        return queued, running, scheduled
    return len(state.queued), len(state.running), len(state.scheduled)


def live_counts_of(state: State, source: str) -> tuple[int, int, int]:
    """`live_counts` of one source: its channels' depth where it reports one, else the jobs of it followed."""
    sources = state.limits.sources
    mine = [c for name, c in state.channels.items() if source_of(name, sources) == source]
    if mine:
        return sum(c.queued for c in mine), sum(c.inflight for c in mine), sum(c.scheduled for c in mine)
    prefix = source + SEP
    queued = sum(1 for job in state.queued if job.startswith(prefix))
    running = sum(1 for job in state.running if job.startswith(prefix))
    return queued, running, sum(1 for job in state.scheduled if job.startswith(prefix))


@dataclass(frozen=True)
class ViewLimits:
    """How much each widget shows (set from Settings)."""

    live_rows: int = 10
    failure_rows: int = 10
    scheduled_rows: int = 10
    runner_rows: int = 20
    spark_minutes: int = 60
    error_snippet: int = 160
    pulse_points: int = 60
    backlog_rows: int = 5
    alert_rows: int = 20
    log_rows: int = 100
    event_rows: int = 50
    fleet_page: int = 60
    table_page: int = 50
    lookup_rows: int = 20


@dataclass(frozen=True)
class Widget:
    """A named projection and the reducer aspects it depends on."""

    name: str
    aspects: int
    project: Callable[[State, ViewLimits], View]


def compact(**fields: Any) -> View:
    """A view object without the None fields (a merge patch cannot say None)."""
    return {k: v for k, v in fields.items() if v is not None}


def link_view(link: Link) -> View:
    """One source's connection as `health.sources` and the service card show it."""
    return compact(
        kind=link.kind or None,
        connected=link.connected,
        error=link.error or None,
        since=link.since,
        rtt_ms=None if link.rtt is None else round(link.rtt * 1000, 2),
        down=[name for name, error in link.parts.items() if error] or None,
    )


def rings_of(state: State, source: str) -> list[MinuteRing]:
    """The per-minute series of one source's channels (what its counts are summed from)."""
    sources = state.limits.sources
    return [ring for name, ring in state.channel_series.items() if source_of(name, sources) == source]


def source_series(state: State, source: str, column: int, hours: bool, first: int, last: int) -> dict[int, int]:
    """A count column of one source per minute (or hour) from `first` to `last`: its channels' series summed (a
    minute jobpulse watched is a zero where the source had nothing)."""
    per = 60 if hours else 1
    out = {k: 0 for k in range(first, last + 1) if (k in state.hours if hours else k in state.series)}
    for ring in rings_of(state, source):
        for minute, values in ring.items(first * per, last * per + per - 1):
            out[minute // per] = out.get(minute // per, 0) + values[column]
    return out


def alert_marks(state: State, alert_id: str, rule: str) -> View:
    """What the notifier says of an open alert: notified (and by whom acknowledged), silenced until when; nothing
    without an alert target (the card then offers no alert actions)."""
    n = state.notify
    if n is None:
        return {}
    marks: View = {"notify": True}
    for a in n.firing:
        if a.id == alert_id:
            marks["notified"] = a.fired_at
            if a.acked_by:
                marks["acked_by"] = a.acked_by
    for silence in n.silences:
        if silence.what in (alert_id, rule):
            marks["silenced_until"] = max(silence.until, marks.get("silenced_until", 0.0))
    return marks
