"""Job views: one job's details, job lookup by id or correlation id, and the job table (a live query).

Pure layer: standard library and msgspec only. Shapes are documented in docs/protocol.md section 3.10.
"""

from __future__ import annotations

from typing import Any

from server.streams.core import search
from server.streams.core.jobs import Job
from server.streams.core.state import State
from server.streams.core.widgets import functions
from server.streams.core.widgets.common import View, ViewLimits, compact


def row(job: Job) -> View:
    """A job as one table row."""
    return compact(
        job=job.id,
        channel=job.channel,
        fn=job.fn,
        status=job.status,
        attempt=job.attempt,
        runner=job.runner,
        cid=job.cid,
        queued=job.queued_at,
        started=job.started_at,
        run_at=job.run_at,
        duration=job.duration,
        updated=job.updated,
        error=job.error[:160] if job.error else None,
    )


def _attempts(job: Job) -> dict[str, Any]:
    """Per attempt: when it started and ended, on which runner, and how it ended (from the event history)."""
    attempts: dict[str, dict[str, Any]] = {}
    for ts, event, attempt, runner in job.history:
        if event in ("queued", "scheduled"):
            continue
        entry = attempts.setdefault(str(attempt), {})
        if event == "started":
            entry["started"] = ts
        else:
            entry["ended"] = ts
            entry["outcome"] = event
        if runner is not None:
            entry["runner"] = runner
    return attempts


def job(state: State, limits: ViewLimits, job_id: str) -> View:
    """Everything jobpulse knows of one job: overview, payload, event history, error and traceback, attempts."""
    found = state.jobs.get(job_id)
    if found is None:
        return {"found": False, "id": job_id}
    view: View = {
        "found": True,
        "id": job_id,
        "job": {
            **row(found),
            **compact(
                max_attempts=found.max_attempts,
                reason=found.reason,
                error=found.error,
                traceback=found.traceback,
                payload=found.payload.decode("utf-8", errors="replace") if found.payload else None,
            ),
        },
        "history": [list(h) if h[3] is not None else list(h[:3]) for h in found.history],
        "attempts": _attempts(found),
    }
    context = functions.job_context(state, found.fn)
    if context is not None:
        view["fn_stats"] = context
    return view


def find(state: State, limits: ViewLimits, q: str) -> View:
    """Job lookup: the job with this id, and the jobs with this correlation id."""
    jobs = search.find(state, q.strip(), limits.lookup_rows) if q.strip() else []
    return {"q": q, "rows": {j.id: row(j) for j in jobs}, "order": [j.id for j in jobs]}


def table(state: State, limits: ViewLimits, q: str = "", sort: str = "-updated", page: int = 1) -> View:
    """One page of the job table for a search; a bad query gives the reason instead of rows."""
    size = limits.table_page
    try:
        query = search.parse_query(q)
        pages_cap = search.MAX_OFFSET // size
        page = min(max(1, page), pages_cap)
        result = search.run_query(state, query, sort, (page - 1) * size, size)
    except search.QueryError as exc:
        return {"q": q, "sort": sort, "error": str(exc), "rows": {}, "order": [], "total": 0, "page": 1, "pages": 1}
    pages = max(1, -(-result.total // size))
    return {
        "q": q,
        "sort": sort,
        "rows": {j.id: row(j) for j in result.jobs},
        "order": [j.id for j in result.jobs],
        "total": result.total,
        "page": page,
        "pages": pages,
        "size": size,
        "indexed": len(state.jobs),
    }
