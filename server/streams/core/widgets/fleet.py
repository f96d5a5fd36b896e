"""The Runners Console's widgets: the runner grid (filtered, paged), channel capacity, runner events, summary.

Pure layer: standard library only. Shapes are documented in docs/protocol.md section 3.9.
"""

from __future__ import annotations

from itertools import islice

from server.streams.core.labels import source_of
from server.streams.core.patterns import name_matcher
from server.streams.core.runners import RUNNER_STATUSES, Runner
from server.streams.core.state import State
from server.streams.core.widgets.common import View, ViewLimits, compact

STATUS_RANK = {status: rank for rank, status in enumerate(RUNNER_STATUSES)}
LIVE_RUNNER = frozenset({"online", "busy", "draining"})
PROBLEMS = ("offline", "stale")  # runners the problem strip names, worst first
PROBLEM_STRIP = 12  # at most this many named; `problems` counts them all


def card(runner: Runner, several: bool = False) -> View:
    """Everything a runner card shows (with several sources, which one it belongs to)."""
    channels: dict[str, int] = dict.fromkeys(runner.channels, 0)
    for _job, channel, _fn, _started in runner.active:
        channels[channel] = channels.get(channel, 0) + 1
    return compact(
        id=runner.id,
        status=runner.status,
        state=runner.state,
        hb=runner.last_recv,
        region=runner.region,
        host=runner.host,
        boot=runner.boot or None,
        active=len(runner.active),
        concurrency=runner.concurrency,
        channels=channels,
        jobs=[job for job, _c, _f, _s in runner.active[:8]],
        processed=runner.processed,
        failed=runner.failed,
        version=runner.version or None,
        pid=runner.pid or None,
        stopped=runner.stop_reason or None,
        source=runner.source if several else None,
    )


def _matches(runner: Runner, q: str, region: str, status: str, source: str = "") -> bool:
    if source and runner.source != source:
        return False
    if region and runner.region != region:
        return False
    if status and runner.status != status:
        return False
    if q:
        matches = name_matcher(q)  # anywhere in the id or the host: `web-*-r2` finds eu-west-web-01-r2
        return matches(runner.id) or matches(runner.host)
    return True


def fleet(
    state: State, limits: ViewLimits, q: str = "", region: str = "", status: str = "", page: int = 1, source: str = ""
) -> View:
    """One page of runner cards matching the filters, by id; counts by status, region and (several sources)
    source for the filters; the problem runners among the matches, worst first, for a strip of their own.

    By id, not problems first: a card keeps its place while its runner flips between busy and online every
    second (the card under the pointer must stay the card it was), and problems still show first, in the strip.
    Each filter's counts apply the other filters, not itself, so its choices say what picking one would show.
    """
    by_status = dict.fromkeys(RUNNER_STATUSES, 0)
    by_region: dict[str, int] = {}
    several = state.limits.several
    by_source: dict[str, int] = dict.fromkeys(state.limits.sources, 0) if several else {}
    matched = []
    for runner in state.runners.values():
        if _matches(runner, q, region, "", source):
            by_status[runner.status] = by_status.get(runner.status, 0) + 1
        if _matches(runner, q, "", status, source):
            by_region[runner.region] = by_region.get(runner.region, 0) + 1
        if several and _matches(runner, q, region, status) and runner.source in by_source:
            by_source[runner.source] += 1
        if _matches(runner, q, region, status, source):
            matched.append(runner)
    matched.sort(key=lambda r: r.id)
    problems = sorted((r for r in matched if r.status in PROBLEMS), key=lambda r: (STATUS_RANK[r.status], r.id))
    size = limits.fleet_page
    pages = max(1, -(-len(matched) // size))
    page = min(max(1, page), pages)
    shown = matched[(page - 1) * size : page * size]
    view: View = {
        "rows": {r.id: card(r, several) for r in shown},
        "order": [r.id for r in shown],
        "total": len(matched),
        "all": len(state.runners),
        "page": page,
        "pages": pages,
        "size": size,
        "counts": by_status,
        "regions": by_region,
        "problems": {r.id: r.status for r in problems[:PROBLEM_STRIP]},
        "problem_order": [r.id for r in problems[:PROBLEM_STRIP]],
        "problem_total": len(problems),
    }
    if several:
        view["sources"] = by_source
    return view


def fleet_summary(state: State, limits: ViewLimits, source: str = "") -> View:
    """Runners by status, overall and per region (the wall, and the filters' choices); of one source's runners
    with `source` (the wall of one source)."""
    counts = dict.fromkeys(RUNNER_STATUSES, 0)
    regions: dict[str, dict[str, int]] = {}
    total = 0
    for runner in state.runners.values():
        if source and runner.source != source:
            continue
        total += 1
        counts[runner.status] = counts.get(runner.status, 0) + 1
        region = regions.setdefault(runner.region or "-", {})
        region[runner.status] = region.get(runner.status, 0) + 1
    return {"counts": counts, "regions": regions, "total": total}


def channels(state: State, limits: ViewLimits) -> View:
    """Channel capacity: live runners and slots per channel beside its depth."""
    runners: dict[str, int] = {}
    slots: dict[str, int] = {}
    for runner in state.runners.values():
        if runner.status in LIVE_RUNNER:
            for name in runner.channels:
                runners[name] = runners.get(name, 0) + 1
                slots[name] = slots.get(name, 0) + runner.concurrency
    names = sorted(set(state.channels) | set(runners))
    sources, several = state.limits.sources, state.limits.several
    rows = {}
    for name in names:
        channel = state.channels.get(name)
        rows[name] = compact(
            channel=name,
            source=source_of(name, sources) or None if several else None,
            runners=runners.get(name, 0),
            concurrency=slots.get(name, 0),
            queued=channel.queued if channel else 0,
            inflight=channel.inflight if channel else 0,
            scheduled=channel.scheduled if channel else 0,
            oldest=channel.oldest if channel else None,
            paused=(channel.paused or None) if channel else None,
            sla=state.limits.sla_of(name),
        )
    return {"rows": rows, "order": names}


def runner_events(state: State, limits: ViewLimits) -> View:
    """The runner events table: joins, restarts, drains, stops, silences; newest first."""
    rows = {}
    for seq, at, runner, message, severity in islice(state.runner_events, limits.event_rows):
        rows[str(seq)] = {"at": at, "runner": runner, "message": message, "severity": severity}
    return {"rows": rows, "order": list(rows)}


DRAWER_EVENTS = 20  # the runner's own recent events the drawer lists


def runner_detail(state: State, limits: ViewLimits, runner_id: str) -> View:
    """One runner, for its detail drawer: its card, its current jobs, its recent events (newest first) and its
    heartbeat history (each beat's arrival, its latency and the gap since the one before)."""
    runner = state.runners.get(runner_id)
    if runner is None:
        return {"id": runner_id, "known": False}
    jobs = {job: {"job": job, "channel": channel, "fn": fn, "started": started}
            for job, channel, fn, started in runner.active}  # fmt: skip
    events: dict[str, View] = {}
    for seq, at, who, message, severity in state.runner_events:
        if who == runner_id:
            events[str(seq)] = {"at": at, "message": message, "severity": severity}
            if len(events) == DRAWER_EVENTS:
                break
    beats = [compact(at=at, latency=latency, gap=gap) for at, latency, gap in runner.latencies]
    return {
        "id": runner_id,
        "known": True,
        "card": card(runner, state.limits.several),
        "jobs": {"rows": jobs, "order": list(jobs)},
        "events": {"rows": events, "order": list(events)},
        "beats": beats,
        "interval": runner.interval,
        "gaps": runner.gaps,
    }
