"""Widget projections: state -> the JSON data one widget shows (docs/protocol.md sections 3.7-3.11).

Pure layer: standard library only; no clock (time is `state.now`). `WIDGETS`
are the fixed widgets every page may subscribe to; `resolve` makes the
projection of a parametrized widget key such as `fleet?region=eu-west` or
`jobs?q=status%3Afailed`, checking its parameters. Each widget declares the
reducer aspects it reads, so the hub recomputes only what changed.
"""

from __future__ import annotations

from collections.abc import Callable

from server import protocol
from server.streams.core import search
from server.streams.core.aspects import Aspect
from server.streams.core.runners import RUNNER_STATUSES
from server.streams.core.state import State
from server.streams.core.widgets import dashboard, fleet, functions, groups, jobs, overview, platform
from server.streams.core.widgets.common import View, ViewLimits, Widget
from server.streams.core.widgets.dashboard import counters, failures, health, live_jobs, published, runners, scheduled

__all__ = [
    "WIDGETS",
    "WIDGET_NAMES",
    "View",
    "ViewLimits",
    "Widget",
    "counters",
    "failures",
    "health",
    "live_jobs",
    "published",
    "resolve",
    "runners",
    "scheduled",
]

# The counts now (widgets.common.live_counts) are the depth's (COUNTERS; CHANNELS when the first one arrives)
# or, with no depth reported, the followed jobs' (LIVE, SCHEDULED): every widget that shows them reads all four.
COUNTS = Aspect.COUNTERS | Aspect.CHANNELS | Aspect.LIVE | Aspect.SCHEDULED

WIDGETS: tuple[Widget, ...] = (
    # The Compact Jobs Dashboard (section 3.7).
    Widget("counters", COUNTS | Aspect.SERIES, dashboard.counters),
    Widget("published", Aspect.SERIES, dashboard.published),
    Widget("live_jobs", COUNTS, dashboard.live_jobs),
    Widget("failures", Aspect.FAILURES | Aspect.LIVE | Aspect.SCHEDULED, dashboard.failures),  # rows' `now`
    Widget("scheduled", COUNTS, dashboard.scheduled),
    Widget("runners", Aspect.RUNNERS, dashboard.runners),
    Widget("health", Aspect.HEALTH, dashboard.health),
    # The Jobs Overview (section 3.8).
    Widget("service", Aspect.ALERTS | Aspect.HEALTH | Aspect.RUNNERS, overview.service),
    Widget("pulse", Aspect.PULSE | Aspect.RUNNERS, overview.pulse),
    Widget("backlogs", Aspect.CHANNELS | Aspect.RUNNERS | Aspect.SERIES, overview.backlogs),
    Widget("hot_issues", Aspect.ALERTS | Aspect.NOTIFY, overview.hot_issues),
    Widget("snapshot", Aspect.LIVE | Aspect.SCHEDULED | Aspect.SERIES, overview.snapshot),
    Widget("logs", Aspect.LOGS, overview.logs),
    # The Runners Console (section 3.9).
    Widget("fleet_summary", Aspect.RUNNERS, fleet.fleet_summary),
    Widget("channels", Aspect.CHANNELS | Aspect.RUNNERS, fleet.channels),
    Widget("runner_events", Aspect.RUNNER_EVENTS, fleet.runner_events),
    # Platform Status (section 3.11).
    Widget(
        "platform", Aspect.PLATFORM | Aspect.ALERTS | Aspect.HEALTH | Aspect.RUNNERS | Aspect.NOTIFY, platform.platform
    ),
    Widget("notifications", Aspect.NOTIFY, platform.notifications),
    Widget("alert_log", Aspect.ALERTS | Aspect.NOTIFY, platform.alert_log),
    # The Functions page (section 3.13).
    Widget("functions", Aspect.STATS, functions.table),
    # The Failures page and the Overview's top failure groups (section 3.13).
    Widget("failure_groups", Aspect.GROUPS, groups.failure_groups),
    # Recent Maintenance Activity: the audit log's newest entries (section 5.5).
    Widget("activity", Aspect.ACTIVITY, platform.activity),
    # The newest commands that changed something, for the toast every page shows of other operators' actions.
    Widget("notices", Aspect.ACTIVITY, platform.notices),
)
WIDGET_NAMES = tuple(w.name for w in WIDGETS)
VIEW_NAMES = ("kpi", "chart", "fleet", "job", "find", "jobs", "function")

Projector = Callable[[], View]


def _choice(params: dict[str, str], name: str, choices: tuple[str, ...] | list[str], default: str | None = None) -> str:
    value = params.get(name, default)
    if value is None or value not in choices:
        raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, f"{name} must be one of {', '.join(choices)}")
    return value


def _text(params: dict[str, str], name: str, most: int, required: bool = False) -> str:
    value = params.get(name, "")
    if required and not value:
        raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, f"{name} is required")
    if len(value) > most or any(ord(c) < 32 for c in value):
        raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, f"{name}: at most {most} printable characters")
    return value


def _page(params: dict[str, str]) -> int:
    raw = params.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, "page must be a whole number from 1")
    return int(raw)


def _only(params: dict[str, str], allowed: set[str]) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, f"unknown parameter {extra[0]!r}")


# The fixed widgets of the wall, also for one source (`counters?source=pay`, docs/protocol.md 7.2): several
# sources only. Refreshed at most every query interval: a source's day is summed from its channels' series.
SCOPED: dict[str, Callable[[State, ViewLimits, str], View]] = {
    "counters": dashboard.counters,
    "published": dashboard.published,
    "service": overview.service,
    "hot_issues": overview.hot_issues,
    "backlogs": overview.backlogs,
    "fleet_summary": fleet.fleet_summary,
}


def resolve(key: str, state: State, limits: ViewLimits, query_interval: float) -> tuple[int, Projector, float]:
    """The aspects, projector and minimum refresh interval of a parametrized widget key.

    Raises:
        protocol.ProtocolError: an unknown view, or a parameter it does not take or cannot use.
    """
    name, params = protocol.parse_view_key(key)
    scoped = SCOPED.get(name)
    if scoped is not None:
        _only(params, {"source"})
        if not state.limits.several:
            raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, "source: this jobpulse watches one source")
        source = _choice(params, "source", tuple(state.limits.sources))
        aspects = next(w.aspects for w in WIDGETS if w.name == name)
        return aspects, lambda: scoped(state, limits, source), query_interval
    if name == "kpi":
        _only(params, {"metric", "gran", "source"})
        source = _choice(params, "source", ("", *state.limits.sources) if state.limits.several else ("",), "")
        # One source's counts come from its channels' series: counts, by minute or hour (a day is kept).
        metric = _choice(params, "metric", tuple(overview.CHART_METRICS if source else overview.KPI_METRICS))
        gran = _choice(params, "gran", ("minutes", "hours") if source else tuple(overview.GRANULARITIES), "minutes")
        return Aspect.SERIES, lambda: overview.kpi(state, limits, metric, gran, source), 0.0
    if name == "chart":
        _only(params, {"metric", "gran", "by"})
        metric = _choice(params, "metric", tuple(overview.CHART_METRICS))
        gran = _choice(params, "gran", ("minutes", "hours"), "minutes")
        by = _choice(params, "by", ("channel", "source") if state.limits.several else ("channel",), "channel")
        return Aspect.SERIES, lambda: overview.channels_chart(state, limits, metric, gran, by), 0.0
    if name == "fleet":
        _only(params, {"q", "region", "status", "page", "source"})
        q, region = _text(params, "q", 100), _text(params, "region", 100)
        status = _choice(params, "status", ("", *RUNNER_STATUSES), "")
        source = _choice(params, "source", ("", *state.limits.sources), "")
        page = _page(params)
        return Aspect.RUNNERS, lambda: fleet.fleet(state, limits, q, region, status, page, source), 0.0
    if name == "schedule":
        _only(params, {"page"})
        page = _page(params)
        return Aspect.SCHEDULED, lambda: dashboard.schedule(state, limits, page), 0.0
    if name == "runner":
        _only(params, {"id"})
        runner_id = _text(params, "id", 200, required=True)
        aspects = Aspect.RUNNERS | Aspect.RUNNER_EVENTS
        return aspects, lambda: fleet.runner_detail(state, limits, runner_id), 0.0
    if name == "job":
        _only(params, {"id"})
        job_id = _text(params, "id", 200, required=True)
        return Aspect.JOBS | Aspect.STATS, lambda: jobs.job(state, limits, job_id), 0.0
    if name == "function":
        _only(params, {"name", "gran"})
        fn = _text(params, "name", 300, required=True)
        gran = _choice(params, "gran", tuple(functions.GRANS), "minutes")
        return Aspect.STATS | Aspect.RUNNER_EVENTS, lambda: functions.function(state, limits, fn, gran), 0.0
    if name == "find":
        _only(params, {"q"})
        needle = _text(params, "q", 200, required=True)
        return Aspect.JOBS, lambda: jobs.find(state, limits, needle), query_interval / 4
    if name == "jobs":
        _only(params, {"q", "sort", "page"})
        q = _text(params, "q", 500)
        sort = _choice(params, "sort", search.SORTS, "-updated")
        page = _page(params)
        return Aspect.JOBS, lambda: jobs.table(state, limits, q, sort, page), query_interval
    raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, f"unknown widget {name!r}")
