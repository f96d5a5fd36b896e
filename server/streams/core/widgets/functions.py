"""The Functions page's widgets: the table of functions and channels, and one function's percentiles over time.

Pure layer: standard library only; no clock (time is `state.now`). Shapes are
documented in docs/protocol.md section 3.13. Numbers come from
server/streams/core/functions.py; percentiles are the sketch's (within 2%).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from server.streams.core import functions
from server.streams.core.functions import Stat, Summary
from server.streams.core.labels import source_of
from server.streams.core.state import State
from server.streams.core.widgets.common import View, ViewLimits

GRANS = {"minutes": 60, "hours": 3600, "days": 86400}  # step of a chart point, s
RELATED_SHOWN = 20  # channels a function's row names (the rest are counted)
MARKS = 50  # restarts and deploys a chart marks at most


def _r(value: float | None) -> float | None:
    """Seconds to 4 significant digits (a sketch's value carries 2% error: more digits would be noise and bytes)."""
    if value is None:
        return None
    return float(f"{value:.4g}")


def numbers(s: Summary) -> View:
    """A summary as the view's numbers: counts, the failure rate, runtime and wait [p50, p90, p95, p99, max]."""
    completed, failed, retried = s[0], s[1], s[2]
    finished = completed + failed
    return {
        "runs": completed + failed + retried,
        "completed": completed,
        "failed": failed,
        "retried": retried,
        "fail_rate": round(failed / finished, 4) if finished else None,
        "runtime": [_r(v) for v in s[3:8]] if s[3] is not None else None,
        "wait": [_r(v) for v in s[8:13]] if s[8] is not None else None,
    }


def _row(state: State, stat: Stat) -> View:
    """A table row of the stat over the rolling window, memoised by the stat's version (a row is rebuilt only for
    a stat that counted something since, or whose window moved)."""
    version, row = stat.row
    if version == stat.version and isinstance(row, dict):
        return row
    related = list(stat.related)
    sources = state.limits.sources
    channels = related if stat.kind == functions.FN else [stat.name]
    row = {
        **_compact(numbers(functions.window_summary(stat))),
        "related": related[:RELATED_SHOWN],
        "more": max(0, len(related) - RELATED_SHOWN) or None,
        "sources": sorted({source_of(c, sources) for c in channels}) if len(sources) > 1 else None,
    }
    row = _compact(row)
    stat.row = (stat.version, row)
    return row


def _compact(view: View) -> View:
    return {k: v for k, v in view.items() if v is not None}


def table(state: State, limits: ViewLimits) -> View:
    """`functions`: every function's and channel's numbers over the last `window` minutes, live."""
    return {
        "window": state.limits.fn_window,
        "cap": state.limits.max_functions,
        "other": functions.OTHER,
        "functions": {name: _row(state, stat) for name, stat in state.fn_stats.items()},
        "channels": {name: _row(state, stat) for name, stat in state.channel_stats.items()},
    }


def _points(stat: Stat, gran: str) -> dict[str, list[Any]]:
    """The chart's points by slot start (epoch seconds, as text: a merge patch is keyed): the closed slots kept
    in memory and the open one. Each: [runs, completed, failed, retried, runtime p50..max, wait p50..max]."""
    if gran == "minutes":
        closed = stat.minutes
        open_slot, open_summary = stat.minute, functions.summary([stat.minute_cell])
    else:
        closed = stat.hours if gran == "hours" else stat.days
        open_slot, open_summary = functions.open_slot(stat, functions.HOUR if gran == "hours" else functions.DAY)
    step = GRANS[gran]
    items = list(closed.items())
    # The open slot once it holds anything: a count, or a measured runtime or wait.
    if open_slot >= 0 and (any(open_summary[:3]) or open_summary[3] is not None or open_summary[8] is not None):
        items.append((open_slot, open_summary))
    out: dict[str, list[Any]] = {}
    for slot, s in items:
        n = numbers(s)
        rt, wt = n["runtime"] or [None] * 5, n["wait"] or [None] * 5
        out[str(slot * step)] = [n["runs"], n["completed"], n["failed"], n["retried"], *rt, *wt]
    return out


RUNNER_JOBS = 500  # a function's newest jobs whose runners count as "its runners"


def runners_of(state: State, fn: str) -> set[str]:
    """The runners of the function's newest jobs jobpulse holds (from the search index; nothing on the hot path)."""
    ids = state.index["fn"].get(fn, ())
    jobs = state.jobs
    out: set[str] = set()
    for job_id in islice(reversed(ids), RUNNER_JOBS):
        job = jobs.get(job_id)
        if job is not None and job.runner is not None:
            out.add(job.runner)
    return out


def _marks(state: State, stat: Stat, since: float) -> list[list[Any]]:
    """Restarts and deploys of the runners that ran the function lately, newest first: [at, runner, text, kind]."""
    ran = runners_of(state, stat.name)
    out: list[list[Any]] = []
    for _, at, runner, message, _severity in state.runner_events:
        if at < since:
            break  # newest first
        if runner not in ran:
            continue
        if message.startswith("restarted on "):
            out.append([at, runner, message, "deploy"])
        elif message.startswith(("restarted", "joined")) or message == "stopped" or message.startswith("stopped ("):
            out.append([at, runner, message, "restart"])
        if len(out) >= MARKS:
            break
    return out


def function(state: State, limits: ViewLimits, name: str, gran: str) -> View:
    """`function?name=…&gran=…`: one function's numbers over the window, and its percentiles by minute, hour or
    day with its runners' restarts and deploys marked."""
    stat = state.fn_stats.get(name)
    if stat is None:
        return {"name": name, "gran": gran, "found": False}
    step = GRANS[gran]
    kept = {"minutes": state.limits.fn_minutes, "hours": state.limits.fn_hours, "days": state.limits.fn_days}[gran]
    since = (state.now // step - kept + 1) * step
    return {
        "name": name,
        "gran": gran,
        "found": True,
        "step": step,
        "since": since,
        "window": state.limits.fn_window,
        "row": _row(state, stat),
        "points": _points(stat, gran),
        "marks": _marks(state, stat, since),
    }


def job_context(state: State, fn: str) -> View | None:
    """What a job's details show beside its runtime: its function's p50 and p95 over the window."""
    stat = state.fn_stats.get(fn)
    if stat is None:
        return None
    row = _row(state, stat)
    runtime = row.get("runtime")
    if runtime is None:
        return None
    return {"p50": runtime[0], "p95": runtime[2], "window": state.limits.fn_window, "runs": row["runs"]}
