"""Jobs: each job's record, the search indexes and status pools over them, and the fold of job events.

Pure layer. `fold_job` folds one job event (after the fold's head: dedupe by
event id, the clock, the source's seq) in four steps: its history, its count
in the series, its fields (when it is not older than what the job shows) and
its status. Every status change goes through `move`, which keeps the ordered
status pools, the status index and the runners' job sets in step.
"""

from __future__ import annotations

from sys import intern
from typing import TYPE_CHECKING

import msgspec
from msgspec import Struct

from server.streams.core import functions, groups, series
from server.streams.core.aspects import COUNTERS, FAILURES, JOBS, LIVE, SCHEDULED, SERIES
from server.streams.core.series import COMPLETED, FAILED, PUBLISHED, RETRIED

if TYPE_CHECKING:
    from server.streams.core.events import JobEvent
    from server.streams.core.state import Limits, State

TERMINAL = frozenset({"completed", "failed", "canceled", "expired"})
# Statuses whose jobs wait in the `terminal` pool; the search index keeps a set per status for these
# (queued, running and scheduled jobs have their own ordered pools, which serve as their index).
SETTLED = TERMINAL | {"unknown"}
# Phase of a job event within one attempt; with the attempt it orders a job's events (docs/protocol.md 1.1).
PHASE = {
    "queued": 0,
    "scheduled": 0,
    "started": 1,
    "retried": 2,
    "completed": 3,
    "failed": 3,
    "canceled": 3,
    "expired": 3,
}
INDEX_FIELDS = ("status", "channel", "fn", "runner", "cid")


# The ids of the jobs with one value of a search field. A value of one job (most correlation ids: one per job) holds
# its id as a 1-tuple, more as a dict of ids to None (an ordered set). Neither is a container the collector tracks
# (it untracks tuples and dicts of atoms): sets would be, and 100,000 of them made each full collection walk
# 100,000 more objects (see Job), and the big sets of a channel's or a status' ids 4 ms each per 100,000 ids.
Ids = dict[str, None] | tuple[str]

# A job's history entry: (source ts, event, attempt, runner).
HistoryEntry = tuple[float, str, int, str | None]


class Job(Struct, gc=False):
    """One job as its events told it.

    The job table holds up to 100,000 of these for the life of the process, and a full collection used to walk
    every one (and its history list, and its correlation id's index set), stalling the loop for 120 ms
    (bench/fold.py). A Struct with `gc=False` is never tracked by the collector, and everything it holds is
    atomic or a tuple of atoms (which the collector untracks on its first look), so a job costs a full
    collection nothing. That is safe because a job refers to no container that could lead back to it: no
    reference cycle can pass through one.
    """

    id: str
    channel: str
    fn: str
    cid: str | None = None
    status: str = "new"  # only until its first event is folded, in the same fold
    runner: str | None = None
    attempt: int = 0
    phase: int = -1
    ts: float = float("-inf")  # the source's time of the event that set the status
    max_attempts: int | None = None
    queued_at: float | None = None
    run_at: float | None = None
    started_at: float | None = None
    duration: float | None = None
    payload: bytes | None = None  # JSON, at most Limits.payload_cap bytes (else a truncation marker)
    error: str | None = None
    traceback: str | None = None
    reason: str | None = None
    group: str | None = None  # the failure group of its last failure (server/streams/core/groups.py)
    updated: float = 0.0  # jobpulse's clock
    # The job's events, oldest first, at most Limits.job_history, flat: ts, event, attempt, runner, ts, ... One
    # tuple of atoms, replaced on each event: the collector untracks it at its first look. A list would stay
    # tracked, and so would a tuple of tuples (the collector looks at the outer tuple before the inner ones
    # it holds, then moves it to the old generation, which only a full collection visits).
    trail: tuple[float | str | int | None, ...] = ()

    @property
    def history(self) -> list[HistoryEntry]:
        """The job's events, oldest first: (source ts, event, attempt, runner)."""
        t = self.trail
        return [(t[i], t[i + 1], t[i + 2], t[i + 3]) for i in range(0, len(t), 4)]  # type: ignore[misc]


class Failure:
    """One entry of the recent-failures ring."""

    __slots__ = ("at", "attempt", "channel", "error", "event", "fn", "job", "runner", "traceback")

    def __init__(
        self,
        event: str,
        job: str,
        fn: str,
        channel: str,
        error: str,
        at: float,
        runner: str | None,
        attempt: int,
        traceback: str | None,
    ) -> None:
        self.event = event
        self.job = job
        self.fn = fn
        self.channel = channel
        self.error = error
        self.at = at
        self.runner = runner
        self.attempt = attempt
        self.traceback = traceback


def seen(state: State, event_id: str) -> bool:
    """True if `event_id` was folded before, within the dedupe window; else remember it.

    The window is the last `dedupe_window` ids at least, up to twice that: when the newest generation is full, it
    becomes the older one and the oldest is dropped whole (no per-id bookkeeping of order).
    """
    seen = state.seen
    if event_id in seen or event_id in state.seen_before:
        return True
    if len(seen) >= state.limits.dedupe_window:
        state.seen_before = seen
        seen = state.seen = {}
    seen[event_id] = None
    return False


def fold_job(state: State, ev: JobEvent, at: float, replay: bool) -> int:
    """Fold one job event; the fold's head has dropped it if it was a redelivery, and moved the clock."""
    if not replay:
        state.health.lag = at - ev.ts
    phase = PHASE[ev.event]
    job = state.jobs.get(ev.job)
    if job is None:
        job = new_job(state, ev.job, ev.channel, ev.fn)
    _remember(job, ev, state.limits.job_history)
    changed = JOBS | _count(state, job, ev, phase, at)
    # Order by (attempt, phase, source ts); an older event than the job shows changes nothing more.
    if (ev.attempt, phase, ev.ts) < (job.attempt, job.phase, job.ts):
        state.health.stale_events += 1
        return changed
    _update(state, job, ev, at)
    return changed | _TRANSITIONS[phase](state, job, ev, at)


def _remember(job: Job, ev: JobEvent, cap: int) -> None:
    """Add the event to the job's history (flat: see Job.trail), the oldest dropped past `cap` events."""
    entry = (ev.ts, intern(ev.event), ev.attempt, None if ev.runner is None else intern(ev.runner))
    trail = job.trail
    keep = 4 * (cap - 1)
    job.trail = (trail[len(trail) - keep :] if len(trail) > keep else trail) + entry


# Events counted in the series as they end an attempt: (bucket column, aspects changed, functions' column).
_COUNTED = {
    "completed": (COMPLETED, SERIES | COUNTERS, functions.COMPLETED),
    "failed": (FAILED, SERIES | COUNTERS, functions.FAILED),
    "retried": (RETRIED, SERIES, functions.RETRIED),
}


def _count(state: State, job: Job, ev: JobEvent, phase: int, at: float) -> int:
    """Count the event in the series: every distinct event once, in the minute jobpulse received it, whatever its
    order among the job's events (a job is published once: its first attempt's first event)."""
    if phase == 0:
        if ev.attempt <= 1 and job.phase < 0:
            series.count(state, PUBLISHED, at, ev.channel)
            return SERIES | COUNTERS
        return 0
    counted = _COUNTED.get(ev.event)
    if counted is None:
        return 0
    series.count(state, counted[0], at, ev.channel)
    if at > state.counted_until:  # else a replayed event the restored stats counted already
        runtime = ev.duration
        if runtime is None:
            started = ev.started_at
            if started is None and job.attempt == ev.attempt and job.phase == 1:
                started = job.started_at
            if started is not None:
                runtime = functions.measured(ev.ts - started)
                if runtime is None:
                    state.health.unmeasured += 1
        functions.ran(state, ev.fn, ev.channel, counted[2], runtime)
    return counted[1]


def _update(state: State, job: Job, ev: JobEvent, at: float) -> None:
    """Take the fields the event carries (it is not older than what the job shows), keeping the indexes in step."""
    index = state.index
    if ev.channel != job.channel:
        index_move(index["channel"], job.id, job.channel, ev.channel)
        job.channel = intern(ev.channel)
    if ev.fn != job.fn:
        index_move(index["fn"], job.id, job.fn, ev.fn)
        job.fn = intern(ev.fn)
    job.ts = ev.ts
    job.updated = at
    touch(state.jobs, job)
    if ev.cid is not None and ev.cid != job.cid:
        index_move(index["cid"], job.id, job.cid, ev.cid)
        job.cid = ev.cid
    if ev.runner is not None and ev.runner != job.runner:
        _set_runner(state, job, ev.runner)
    if ev.max_attempts is not None:
        job.max_attempts = ev.max_attempts
    if ev.queued_at is not None:
        job.queued_at = ev.queued_at
    if ev.payload and bytes(ev.payload) != b"null":
        job.payload = _cap_payload(ev.payload, state.limits.payload_cap)
    if ev.reason is not None:
        job.reason = ev.reason


def _wait(state: State, job: Job, ev: JobEvent, at: float) -> int:
    """`queued` or `scheduled`: the attempt waits."""
    job.attempt, job.phase = ev.attempt, 0
    if ev.event == "queued":
        if job.queued_at is None or ev.queued_at is None:
            job.queued_at = ev.queued_at if ev.queued_at is not None else ev.ts
        job.run_at = None
        return move(state, job, "queued")
    job.run_at = ev.run_at if ev.run_at is not None else ev.ts
    return move(state, job, "scheduled")


def _start(state: State, job: Job, ev: JobEvent, at: float) -> int:
    started = ev.started_at if ev.started_at is not None else ev.ts
    # Its wait: since it came due (scheduled) or was queued, when this attempt's queueing was seen.
    since = job.run_at if job.run_at is not None else job.queued_at
    if since is not None and job.phase <= 0 and at > state.counted_until:
        wait = functions.measured(started - since)
        if wait is None:
            state.health.unmeasured += 1
        else:
            functions.waited(state, job.fn, job.channel, wait)
    job.attempt, job.phase = ev.attempt, 1
    job.started_at = started
    job.duration = None
    job.error = job.traceback = None
    return move(state, job, "running")


def _retry(state: State, job: Job, ev: JobEvent, at: float) -> int:
    """`retried`: attempt n failed, the job waits for attempt n + 1."""
    job.attempt, job.phase = ev.attempt + 1, 0
    _set_error(job, ev, state.limits)
    job.duration = ev.duration
    if ev.run_at is not None:
        job.run_at = ev.run_at
        return move(state, job, "scheduled")
    job.queued_at = ev.ts
    return move(state, job, "queued")


def _finish(state: State, job: Job, ev: JobEvent, at: float) -> int:
    """`completed`, `failed`, `canceled` or `expired`: the job is done; a failure joins the recent failures."""
    name = ev.event
    job.attempt, job.phase = ev.attempt, 3
    if job.started_at is None and ev.started_at is not None:
        job.started_at = ev.started_at  # its start was not seen (before jobpulse watched); the end says when
    if ev.duration is not None:
        job.duration = ev.duration
    if name in ("failed", "expired"):
        _set_error(job, ev, state.limits)
    changed = move(state, job, name)
    if name != "failed":
        return changed
    if at > state.counted_until:  # else a replay the restored groups counted already
        changed |= groups.failed(state, job, at)
    state.failures.appendleft(
        Failure(ev.id, job.id, job.fn, job.channel, job.error or "", at, job.runner, ev.attempt, job.traceback)
    )
    state.failures_added += 1
    return changed | FAILURES


# By phase (PHASE): how an event of that phase moves its job.
_TRANSITIONS = (_wait, _start, _retry, _finish)


def touch(jobs: dict[str, Job], job: Job) -> None:
    """Move a job to the end of the jobs dict (most recently updated)."""
    del jobs[job.id]
    jobs[job.id] = job


def new_job(state: State, job_id: str, channel: str, fn: str) -> Job:
    jobs = state.jobs
    if len(jobs) >= state.limits.max_jobs:
        _evict(state)
    # Channel, function and runner names repeat across thousands of jobs: keep one copy of each.
    job = Job(job_id, intern(channel), intern(fn))
    jobs[job_id] = job
    index = state.index
    index_add(index["channel"], job_id, channel)
    index_add(index["fn"], job_id, fn)
    return job


def index_move(index: dict[str, Ids], job_id: str, old: str | None, new: str | None) -> None:
    """Move a job in one search index from value `old` to value `new` (None: not indexed)."""
    if old is not None:
        index_remove(index, job_id, old)
    if new is not None:
        index_add(index, job_id, new)


def index_add(index: dict[str, Ids], job_id: str, value: str) -> None:
    # A value's ids: a 1-tuple for one job, a dict for more; neither is tracked by the collector (state.Ids).
    ids = index.get(value)
    if ids is None:
        index[value] = (job_id,)
    elif isinstance(ids, tuple):
        if ids[0] != job_id:
            index[value] = {ids[0]: None, job_id: None}
    else:
        ids[job_id] = None


def index_remove(index: dict[str, Ids], job_id: str, value: str) -> None:
    ids = index.get(value)
    if ids is None:
        return
    if isinstance(ids, tuple):
        if ids[0] == job_id:
            del index[value]
        return
    ids.pop(job_id, None)
    if len(ids) == 1:
        index[value] = (next(iter(ids)),)


def _set_runner(state: State, job: Job, runner_id: str) -> None:
    """Give the job another runner, keeping the search index and (for a running job) the runner index in step."""
    if job.status == "running":
        # Still running, but another runner says so now: move the job in the runner index too.
        if job.runner is not None:
            unindex_runner_job(state, job.runner, job.id)
        state.runner_jobs.setdefault(runner_id, set()).add(job.id)
    index_move(state.index["runner"], job.id, job.runner, runner_id)
    job.runner = intern(runner_id)


def _evict(state: State) -> None:
    """Make room for one job: finished jobs go first, then the oldest waiting, then the oldest running."""
    for pool in (state.terminal, state.queued, state.scheduled, state.running):
        if pool:
            job_id, _ = pool.popitem(last=False)
            job = state.jobs.pop(job_id)
            if job.status == "running" and job.runner is not None:
                unindex_runner_job(state, job.runner, job_id)
            index = state.index
            index_remove(index["channel"], job_id, job.channel)
            index_remove(index["fn"], job_id, job.fn)
            if job.status in SETTLED:
                index_remove(index["status"], job_id, job.status)
            if job.runner is not None:
                index_remove(index["runner"], job_id, job.runner)
            if job.cid is not None:
                index_remove(index["cid"], job_id, job.cid)
            state.health.evicted_jobs += 1
            return


def move(state: State, job: Job, status: str) -> int:
    """Set the job's status and keep the ordered status pools in step; return aspects touched."""
    old = job.status
    if old == status:
        # Same status again (e.g. a second `queued` when a scheduled retry comes due): the row may change.
        return _ASPECT.get(status, 0)
    changed = 0
    pools = state.pools
    pool = pools.get(old)
    if pool is not None:
        pool.pop(job.id, None)
        changed |= _ASPECT.get(old, 0)
        if old == "running" and job.runner is not None:
            unindex_runner_job(state, job.runner, job.id)
    if old in SETTLED or status in SETTLED:
        index_move(
            state.index["status"], job.id, old if old in SETTLED else None, status if status in SETTLED else None
        )
    job.status = status
    pool = pools.get(status)
    if pool is not None:
        aspect = _ASPECT.get(status, 0)
        if aspect == LIVE:
            state.places = place = state.places + 1
            pool[job.id] = place
        else:
            pool[job.id] = 0
        changed |= aspect
        if status == "running" and job.runner is not None:
            state.runner_jobs.setdefault(job.runner, set()).add(job.id)
    return changed


# What a job entering or leaving a status changes, besides JOBS.
_ASPECT = {"queued": LIVE, "running": LIVE, "scheduled": SCHEDULED}


def unindex_runner_job(state: State, runner_id: str, job_id: str) -> None:
    held = state.runner_jobs.get(runner_id)
    if held is not None:
        held.discard(job_id)
        if not held:
            del state.runner_jobs[runner_id]


def _set_error(job: Job, ev: JobEvent, limits: Limits) -> None:
    if ev.error is not None:
        first = ev.error.strip().splitlines()[0] if ev.error.strip() else ""
        job.error = first[: limits.error_cap]
    if ev.traceback is not None:
        tb = ev.traceback
        # The end of a traceback (the exception) matters most; keep the tail.
        job.traceback = tb if len(tb) <= limits.traceback_cap else "…" + tb[-(limits.traceback_cap - 1) :]


_truncated = msgspec.json.Encoder()


def _cap_payload(raw: msgspec.Raw, cap: int) -> bytes:
    data = bytes(raw)
    if len(data) <= cap:
        return data
    head = data[: max(cap - 64, 0)].decode("utf-8", errors="ignore")
    return _truncated.encode({"truncated": True, "bytes": len(data), "head": head})
