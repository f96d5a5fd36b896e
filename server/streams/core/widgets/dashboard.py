"""The Compact Jobs Dashboard's widgets (docs/protocol.md section 3.7).

Pure layer: standard library only; no clock (time is `state.now`). Each widget
declares the reducer aspects it reads, so the hub recomputes only widgets whose
inputs changed. Views hold no None (merge patches could not say it): an unknown
value is an absent key. Rows are objects keyed by id plus a small `order` list
(or, in Live Jobs, each row's own `place`), so a patch touches only the rows that changed.
"""

from __future__ import annotations

import heapq
from itertools import islice
from typing import Any

from server.streams.core.jobs import Job
from server.streams.core.runners import RUNNER_STATUSES
from server.streams.core.series import (
    CHANNEL_WIDTH,
    COMPLETED,
    DAY_MINUTES,
    FAILED,
    PENDING,
    PUBLISHED,
    RUNNING,
    SCHEDULED,
)
from server.streams.core.state import State
from server.streams.core.widgets.common import (
    View,
    ViewLimits,
    link_view,
    live_counts,
    live_counts_of,
    rings_of,
    source_series,
)


def counters(state: State, limits: ViewLimits, source: str = "") -> View:
    """Pending, running, scheduled now and 24 h ago; completed and failed in the last 24 h and the 24 h before.

    With `source` (the wall of one source), that source's: its counts now, and its completed and failed over the
    last 24 h from its channels' series (kept a day, so without the day before).
    """
    if source:
        pending, running, scheduled = live_counts_of(state, source)
        done = _source_day(state, source)
        return {"pending": {"v": pending}, "running": {"v": running}, "scheduled": {"v": scheduled},
                "completed": {"v": done[COMPLETED]}, "failed": {"v": done[FAILED]}}  # fmt: skip
    day, before = state.sums
    # The minute series holds the depth's totals: a comparison only where the counts now are depth too.
    yesterday = state.series.get(state.minute - DAY_MINUTES) if state.channels else None
    pending, running, scheduled = live_counts(state)
    view: View = {}
    for name, column, value in (("pending", PENDING, pending), ("running", RUNNING, running),
                                ("scheduled", SCHEDULED, scheduled)):  # fmt: skip
        entry: dict[str, int] = {"v": value}
        if yesterday is not None:
            entry["prev"] = yesterday[column]
        view[name] = entry
    for name, column in (("completed", COMPLETED), ("failed", FAILED)):
        entry = {"v": day[column]}
        if state.watched_before:
            entry["prev"] = before[column]
        view[name] = entry
    return view


def published(state: State, limits: ViewLimits, source: str = "") -> View:
    """Jobs published per minute over the last `spark_minutes`; a missing minute is a gap (one source's, from its
    channels' series, with `source`)."""
    last = state.minute
    first = last - limits.spark_minutes + 1
    series = state.series
    if source:
        buckets = {str(m): n for m, n in source_series(state, source, PUBLISHED, False, first, last).items()}
    else:
        buckets = {str(m): series[m][PUBLISHED] for m in range(first, last + 1) if m in series}
    return {"step": 60, "from": first, "to": last, "buckets": buckets}


def _source_day(state: State, source: str) -> list[int]:
    """One source's counts over the last 24 h (published, completed, failed, retried), from its channels."""
    out = [0] * CHANNEL_WIDTH
    last = state.minute
    for ring in rings_of(state, source):
        for _, values in ring.items(last - DAY_MINUTES + 1, last):
            for column in range(CHANNEL_WIDTH):
                out[column] += values[column]
    return out


def _job_row(job: Job, place: int) -> dict[str, Any]:
    since = job.started_at if job.status == "running" else job.queued_at
    row: dict[str, Any] = {
        "job": job.id,
        "channel": job.channel,
        "fn": job.fn,
        "status": job.status,
        "attempt": job.attempt,
        "place": place,
    }
    if since is not None:
        row["since"] = round(since, 3)  # as jobpulse's own clock: finer digits are bytes the page never shows
    if job.runner is not None and job.status == "running":
        row["runner"] = job.runner
    return row


def live_jobs(state: State, limits: ViewLimits) -> View:
    """Running jobs (longest running first), then queued ones (oldest first), at most `live_rows`: queued and
    running, as the card's title says, so up to half the rows are queued ones whenever both are there (each
    part fills what the other leaves; a busy fleet no longer hides its queue).

    No `order` list: each row's `place` (rising as jobs enter their pool) orders it, running rows first. A job
    starting or ending then changes its own row only; the list, replaced whole by a merge patch, was re-sent on
    every start and finish (half a tick's bytes, B6)."""
    n = limits.live_rows
    queued_rows = min(len(state.queued), max(n // 2, n - len(state.running)))
    shown = list(islice(state.running.items(), n - queued_rows))
    shown.extend(islice(state.queued.items(), queued_rows))
    jobs = state.jobs
    rows = {job_id: _job_row(jobs[job_id], place) for job_id, place in shown}
    queued, running, _scheduled = live_counts(state)  # the counters' numbers, not the rows' own count
    return {"rows": rows, "running": running, "queued": queued}


def failures(state: State, limits: ViewLimits) -> View:
    """The most recent failures, newest first, each with its job's status now when jobpulse still holds it."""
    rows: dict[str, Any] = {}
    order = []
    for failure in islice(state.failures, limits.failure_rows):
        if failure.event in rows:
            continue
        row: dict[str, Any] = {
            "job": failure.job,
            "fn": failure.fn,
            "channel": failure.channel,
            "error": failure.error[: limits.error_snippet],
            "at": failure.at,
            "attempt": failure.attempt,
        }
        if failure.runner is not None:
            row["runner"] = failure.runner
        job = state.jobs.get(failure.job)
        if job is not None:  # where the job is now (retrying on its own, or failed for good: a Retry's cue)
            row["now"] = job.status
        rows[failure.event] = row
        order.append(failure.event)
    return {"rows": rows, "order": order}


def _due_first(state: State, n: int) -> list[str]:
    """The `n` scheduled jobs due first (by run_at, then id): the Scheduled card's and the scheduler's order."""
    jobs = state.jobs
    return heapq.nsmallest(n, state.scheduled, key=lambda job_id: (jobs[job_id].run_at or 0.0, job_id))


def _due_row(job: Job) -> dict[str, Any]:
    return {"job": job.id, "fn": job.fn, "channel": job.channel, "run_at": job.run_at or 0.0, "attempt": job.attempt}


def scheduled(state: State, limits: ViewLimits) -> View:
    """The next scheduled jobs by run_at."""
    upcoming = _due_first(state, limits.scheduled_rows)
    rows = {job_id: _due_row(state.jobs[job_id]) for job_id in upcoming}
    return {"rows": rows, "order": upcoming, "total": live_counts(state)[2]}


# Problems first; busy and online share a rank, so a row keeps its place while its runner flips between them.
def schedule(state: State, limits: ViewLimits, page: int = 1) -> View:
    """The scheduler: every scheduled job by when it is due (then by id), one page at a time (`table_page` rows)."""
    size = limits.table_page
    total = len(state.scheduled)
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    shown = _due_first(state, page * size)[(page - 1) * size :]
    rows = {}
    for job_id in shown:
        job = state.jobs[job_id]
        row = _due_row(job)
        if job.cid is not None:
            row["cid"] = job.cid
        rows[job_id] = row
    return {"rows": rows, "order": shown, "total": total, "page": page, "pages": pages, "size": size}


_STATUS_RANK = {"offline": 0, "stale": 1, "draining": 2, "busy": 3, "online": 3}


def runners(state: State, limits: ViewLimits) -> View:
    """Runners, problems first (offline, stale, draining), then the live ones (busy or online) by id."""
    counts = dict.fromkeys(RUNNER_STATUSES, 0)
    for runner in state.runners.values():
        counts[runner.status] += 1
    top = heapq.nsmallest(
        limits.runner_rows, state.runners.values(), key=lambda r: (_STATUS_RANK.get(r.status, 9), r.id)
    )
    rows = {}
    several = state.limits.several
    for runner in top:
        row: dict[str, Any] = {
            "id": runner.id,
            "status": runner.status,
            "active": len(runner.active),
            "concurrency": runner.concurrency,
            "host": runner.host,
            "region": runner.region,
        }
        if runner.last_recv is not None:
            row["hb"] = runner.last_recv
        if several:
            row["source"] = runner.source
        rows[runner.id] = row
    return {"rows": rows, "order": [r.id for r in top], "total": len(state.runners), "counts": counts}


def health(state: State, limits: ViewLimits) -> View:
    """jobpulse's own intake: connection, events, rejections, duplicates, gaps."""
    h = state.health
    view: View = {
        "connected": h.connected,
        "events": h.events,
        "rejected": dict(h.rejected),
        "dupes": h.dupes,
        "stale": h.stale_events,
        "gaps": h.gaps,
        "missed": h.missed,
        "evicted": h.evicted_jobs,
    }
    if h.error:
        view["error"] = h.error
    down = [name for name, error in h.parts.items() if error]
    if down:
        view["down"] = down  # which of the source's connections are down (django-mojo: Redis, Postgres)
    for key, value in (("since", h.since), ("last_event", h.last_event), ("reconciled", h.reconciled)):
        if value is not None:
            view[key] = value
    if h.rtt is not None:
        view["rtt_ms"] = round(h.rtt * 1000, 2)
    if len(h.links) > 1:  # several sources: each one's connection, so a page can name the one that is down
        view["sources"] = {label: link_view(link) for label, link in h.links.items()}
        view["source_order"] = list(h.links)
    return view
