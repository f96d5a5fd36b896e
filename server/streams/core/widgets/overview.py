"""The Jobs Overview's widgets: KPIs, service health, runner pulse, backlogs, hot issues, snapshot cards, logs.

Pure layer: standard library only; no clock (time is `state.now`). Shapes are
documented in docs/protocol.md section 3.8.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import islice
from urllib.parse import quote

from server.streams.core import rules
from server.streams.core.labels import source_of
from server.streams.core.series import COMPLETED, DAY_MINUTES, FAILED, LONGEST, PENDING, PUBLISHED, RETRIED
from server.streams.core.state import State
from server.streams.core.widgets.common import View, ViewLimits, alert_marks, compact, link_view, source_series

GRANULARITIES = {"minutes": (60, 60), "hours": (3600, 24), "days": (86400, 14)}  # step seconds, points shown
KPI_METRICS = {
    # metric: (bucket column, how a bucket's values combine over a window: "sum" for counts, "max" for gauges)
    "published": (PUBLISHED, "sum"),
    "completed": (COMPLETED, "sum"),
    "failed": (FAILED, "sum"),
    "retried": (RETRIED, "sum"),
    "inflight": (LONGEST, "max"),  # longest-running job, seconds
    "backlog": (PENDING, "max"),  # queued jobs
}
CHART_METRICS = {"published": PUBLISHED, "completed": COMPLETED, "failed": FAILED, "retried": RETRIED}
CHART_CHANNELS = 8
LIVE_RUNNER = frozenset({"online", "busy", "draining"})


def table_link(query: str, sort: str = "") -> str:
    """A link to the job table showing `query`."""
    link = "/admin/jobs/table?q=" + quote(query, safe="")
    return link + (f"&sort={sort}" if sort else "")


# -- KPIs ---------------------------------------------------------------------------------------


def _buckets(state: State, gran: str) -> tuple[int, int, dict[int, list[int]]]:
    """The buckets of a granularity: (first, last, key -> bucket) over the window shown and the one before it."""
    points = GRANULARITIES[gran][1]
    if gran == "minutes":
        last = state.minute
        first = last - 2 * points + 1
        return first, last, {m: b for m in range(first, last + 1) if (b := state.series.get(m)) is not None}
    if gran == "hours":
        last = state.minute // 60
        first = last - 2 * points + 1
        return first, last, {h: b for h in range(first, last + 1) if (b := state.hours.get(h)) is not None}
    last = state.minute // DAY_MINUTES
    first = last - 2 * points + 1
    days: dict[int, list[list[int]]] = {}
    for hour, bucket in state.hours.items():
        day = hour // 24
        if first <= day <= last:
            days.setdefault(day, []).append(bucket)
    return first, last, {d: _combine_hours(bs) for d, bs in days.items()}


def _combine_hours(buckets: list[list[int]]) -> list[int]:
    width = len(buckets[0])
    out = [0] * width
    for bucket in buckets:
        for i in range(width):
            out[i] = out[i] + bucket[i] if i < PENDING else max(out[i], bucket[i])
    return out


def kpi(state: State, limits: ViewLimits, metric: str, gran: str, source: str = "") -> View:
    """One KPI card: its points at the granularity, the value over the window shown and over the one before.

    With `source` (several sources), the counts of that source alone: the sum of its channels' series
    (JOBPULSE_MAX_CHANNEL_SERIES channels have one), minutes or hours.
    """
    column, how = KPI_METRICS[metric]
    step, points = GRANULARITIES[gran]
    if source:
        last = state.minute // (step // 60)
        values = source_series(state, source, column, gran == "hours", last - 2 * points + 1, last)
    else:
        _, last, buckets = _buckets(state, gran)
        values = {k: b[column] for k, b in buckets.items()}
    shown_from = last - points + 1
    shown = {str(k): v for k, v in values.items() if k >= shown_from}
    before = [v for k, v in values.items() if k < shown_from]
    now_values = [v for k, v in values.items() if k >= shown_from]
    combine = sum if how == "sum" else max
    view: View = {"metric": metric, "gran": gran, "step": step, "from": shown_from, "to": last, "points": shown}
    if source:
        view["source"] = source
    if how == "sum":
        view["value"] = sum(now_values)
    else:  # a gauge: its latest sample
        latest = max((k for k in values if k >= shown_from), default=None)
        view["value"] = values[latest] if latest is not None else 0
        view["peak"] = max(now_values, default=0)
    if before:
        view["prev"] = combine(before)
    if gran != "minutes":  # the synthetic history is hours: the minute series is jobpulse's own
        _label_synthetic(state, view, shown_from * step)
    return view


def _label_synthetic(state: State, view: View, window_start: float) -> None:
    """Say where a window reaches back into synthetic history (the demo's backfill), so no one takes it for real."""
    until = state.synthetic_until
    if until is not None and window_start < until:
        view["synthetic_until"] = until


def channels_chart(state: State, limits: ViewLimits, metric: str, gran: str, by: str = "channel") -> View:
    """Jobs per channel for one metric (the chart modal): the busiest channels' minute or hour series; with
    `by="source"` (several sources), one series per source, its channels summed."""
    column = CHART_METRICS[metric]
    if by == "source":
        last = state.minute // 60 if gran == "hours" else state.minute
        first = last - (23 if gran == "hours" else 59)
        hours = gran == "hours"
        by_source = {label: {str(k): v for k, v in source_series(state, label, column, hours, first, last).items()}
                     for label in state.limits.sources}  # fmt: skip
        step = 3600 if gran == "hours" else 60
        return {"metric": metric, "gran": gran, "step": step, "from": first, "to": last, "series": by_source,
                "by": "source"}  # fmt: skip
    minute = state.minute
    if gran == "hours":
        step, last = 3600, minute // 60
        first = last - 23
    else:
        step, last = 60, minute
        first = last - 59
    totals = []
    for name, ring in state.channel_series.items():
        lo = first * (60 if gran == "hours" else 1)
        total = ring.sum(lo, minute, column)
        if total:
            totals.append((total, name))
    series: View = {}
    for _, name in heapq.nlargest(CHART_CHANNELS, totals):
        ring = state.channel_series[name]
        if gran == "hours":
            # An hour jobpulse watched is a zero where the channel had nothing; synthetic hours (the demo's
            # backfill) have no per-channel numbers: gaps.
            real_from = int((state.synthetic_until or 0) // 3600)
            points: dict[str, int] = {str(h): 0 for h in range(max(first, real_from), last + 1) if h in state.hours}
            for m, values in ring.items(first * 60, minute):
                key = str(m // 60)
                points[key] = points.get(key, 0) + values[column]
        else:
            # A minute jobpulse watched in which the channel had nothing is a zero, not a gap.
            points = {str(m): 0 for m in range(first, last + 1) if m in state.series}
            points.update({str(m): values[column] for m, values in ring.items(first, last)})
        series[name] = points
    return {"metric": metric, "gran": gran, "step": step, "from": first, "to": last, "series": series}


# -- health, pulse, backlogs, hot issues, snapshot ------------------------------------------------


def service(state: State, limits: ViewLimits, source: str = "") -> View:
    """Job Service Health: overall status and the rule that set it, broker connectivity, runners (one source's,
    with `source`: its alerts, its connection, its runners and channels)."""
    if source:
        return _service_of(state, source)
    status, rule = rules.overall(state)
    health = state.health
    counts = {"active": 0, "stale": 0, "offline": 0}
    for runner in state.runners.values():
        if runner.status in LIVE_RUNNER:
            counts["active"] += 1
        elif runner.status in counts:
            counts[runner.status] += 1
    broker = compact(
        connected=health.connected,
        rtt_ms=None if health.rtt is None else round(health.rtt * 1000, 2),
        error=health.error or None,
        since=health.since,
        # A source read over several connections names those that are down ("Postgres" alone: the database).
        down=[name for name, error in health.parts.items() if error] or None,
    )
    view: View = {
        "status": status,
        "rule": rule,
        "alerts": len(state.alerts),
        "broker": broker,
        "runners": {**counts, "total": len(state.runners)},
        "channels": len(state.channels),
    }
    if len(health.links) > 1:  # several sources: each one's connection (docs/protocol.md 3.8)
        view["sources"] = {label: link_view(link) for label, link in health.links.items()}
        view["source_order"] = list(health.links)
    return view


def _service_of(state: State, source: str) -> View:
    status, rule = rules.overall(state, source)
    counts = {"active": 0, "stale": 0, "offline": 0}
    total = 0
    for runner in state.runners.values():
        if runner.source != source:
            continue
        total += 1
        if runner.status in LIVE_RUNNER:
            counts["active"] += 1
        elif runner.status in counts:
            counts[runner.status] += 1
    link = state.health.links.get(source)
    sources = state.limits.sources
    return {
        "status": status,
        "rule": rule,
        "alerts": sum(1 for a in state.alerts.values() if rules.of_source(a, source)),
        "broker": link_view(link) if link is not None else {"connected": False},
        "runners": {**counts, "total": total},
        "channels": sum(1 for name in state.channels if source_of(name, sources) == source),
        "source": source,
    }


def pulse(state: State, limits: ViewLimits) -> View:
    """Runner Pulse: heartbeat latency (p50, max, in ms) and the longest gap between beats, per second."""
    points = {str(t): [p50, top, gap, n] for t, p50, top, gap, n in islice(reversed(state.pulse), limits.pulse_points)}
    live = sum(1 for r in state.runners.values() if r.status in LIVE_RUNNER)
    return compact(points=points, last=state.last_beat, live=live)


def backlogs(state: State, limits: ViewLimits, source: str = "") -> View:
    """Channel Backlogs: the channels furthest over their SLA (then the longest queues), top five (of one
    source's channels, with `source`)."""
    now = state.now
    consumed: dict[str, int] = {}
    for runner in state.runners.values():
        if runner.status in LIVE_RUNNER:
            for consumed_channel in runner.channels:
                consumed[consumed_channel] = consumed.get(consumed_channel, 0) + 1
    ranked = []
    sources = state.limits.sources
    known = 0
    for name, channel in state.channels.items():
        if source and source_of(name, sources) != source:
            continue
        known += 1
        if not channel.queued:
            continue
        sla = state.limits.sla_of(name)
        age = now - channel.oldest if channel.oldest is not None else 0.0
        ranked.append((age / sla, channel.queued, name))
    rows = {}
    order = []
    for _, _, name in heapq.nlargest(limits.backlog_rows, ranked):
        channel = state.channels[name]
        rows[name] = compact(
            channel=name,
            queued=channel.queued,
            inflight=channel.inflight,
            oldest=channel.oldest,
            sla=state.limits.sla_of(name),
            runners=consumed.get(name, 0),
            paused=channel.paused or None,
        )
        order.append(name)
    return {"rows": rows, "order": order, "channels": known}


_CTA: dict[str, tuple[str, Callable[[str], str]]] = {
    "source_down": ("Open platform status", lambda key: "/admin/system-status"),
    "no_runner": ("View runners", lambda key: "/admin/jobs/runners"),
    "failing_channel": ("Show failures", lambda key: table_link(f"status:failed channel:{key}")),
    "stuck_jobs": ("Show stuck jobs", lambda key: table_link(f"status:running channel:{key}", "started")),
    "backlog_sla": ("Show backlog", lambda key: table_link(f"status:queued channel:{key}", "queued")),
    "silent_runner": ("Open runner", lambda key: "/admin/jobs/runners?q=" + quote(key, safe="")),
    "source_warning": ("Show scheduled jobs", lambda key: table_link("status:scheduled")),  # the scheduler: who waits
    "failure_group": ("Open the group", lambda key: f"/admin/jobs/failures#g-{key}"),
}


def _overview_link(key: str) -> str:
    return "/admin/jobs/overview"


def hot_issues(state: State, limits: ViewLimits, source: str = "") -> View:
    """Hot Issues: the open alerts, critical first, oldest first, each with its call to action (one source's,
    with `source`)."""
    open_alerts = [a for a in state.alerts.values() if not source or rules.of_source(a, source)]
    alerts = sorted(open_alerts, key=lambda a: (rules.SEVERITY_RANK.get(a.severity, 9), a.since, a.id))
    rows = {}
    for alert in alerts[: limits.alert_rows]:
        label, link = _CTA.get(alert.rule, ("Open overview", _overview_link))
        rows[alert.id] = {
            "rule": alert.rule,
            "key": alert.key,
            "severity": alert.severity,
            "title": alert.title,
            "detail": alert.detail,
            "since": alert.since,
            "cta": {"label": label, "href": link(alert.key)},
            **alert_marks(state, alert.id, alert.rule),
        }
    return {"rows": rows, "order": list(rows), "total": len(alerts)}


def snapshot(state: State, limits: ViewLimits) -> View:
    """Snapshot cards: scheduled jobs due today, the longest-running job, retries in the last hour."""
    jobs = state.jobs
    day_end = state.day_end
    scheduled_today = (
        sum(1 for job_id in state.scheduled if (jobs[job_id].run_at or 0.0) < day_end)
        if day_end is not None
        else len(state.scheduled)
    )
    minute = state.minute
    hour = [state.series.get(m) for m in range(minute - 59, minute + 1)]
    view: View = {
        "scheduled_today": scheduled_today,
        "retries_hour": sum(b[RETRIED] for b in hour if b is not None),
        "completed_hour": sum(b[COMPLETED] for b in hour if b is not None),
        "failed_hour": sum(b[FAILED] for b in hour if b is not None),
    }
    for job_id in state.running:  # the first running job started first
        job = jobs[job_id]
        view["longest"] = compact(job=job.id, fn=job.fn, channel=job.channel, since=job.started_at, runner=job.runner)
        break
    return view


def logs(state: State, limits: ViewLimits) -> View:
    """jobpulse's own recent warnings and errors, newest first."""
    rows = {}
    for seq, at, level, logger, message in islice(state.logs, limits.log_rows):
        rows[str(seq)] = {"at": at, "level": level, "logger": logger, "message": message}
    return {"rows": rows, "order": list(rows), "total": len(state.logs)}
