"""The fold: `fold(state, event, at) -> changed aspects`. Every state transition of jobpulse lives here.

Rule 1: every change to `State` happens in this module, one event at a time.
Rule 2: no I/O, no clock, no randomness. Time comes in: `at` is when the shell
received the event (jobpulse's clock); `Tick` events move the clock on, so
"silent runner" and day windows are testable without sleeping.
Rule 3: redelivered and out-of-date events change nothing (event ids within a
bounded window; per-job (attempt, phase, ts) order; per-runner boot and ts).

The return value is a bit mask of ASPECTS that changed, which tells the hub
which widget projections to recompute. The intake counters of `health`
(events, duplicates, out-of-order, evictions) are flagged by the clock tick,
at most once a tick, not by every event. The state is mutated in place (it is
big and events are many); `fold` is deterministic, so folding the same events
into two fresh states gives equal states.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from sys import intern

import msgspec

from server.redact import redact
from server.streams.core import rules
from server.streams.core.events import (
    ActiveJob,
    AuditNoted,
    ChannelDepth,
    Depth,
    Event,
    Heartbeat,
    JobEvent,
    LogRecorded,
    Reconciled,
    Rejected,
    Restored,
    RunnerRecord,
    RunnerRemoved,
    RunnerStopped,
    ShellStats,
    SourceStatus,
    SourceWarning,
    Tick,
)
from server.streams.core.labels import MAX_LABELS
from server.streams.core.state import (
    BUCKET_WIDTH,
    CHANNEL_WIDTH,
    COMPLETED,
    DAY_MINUTES,
    FAILED,
    LONGEST,
    PENDING,
    PHASE,
    PUBLISHED,
    RETRIED,
    SETTLED,
    Channel,
    Failure,
    Ids,
    Job,
    Limits,
    Link,
    MinuteRing,
    Runner,
    State,
)

# Aspects: what a fold changed. Widgets declare which aspects they read.
COUNTERS = 1 << 0
SERIES = 1 << 1
LIVE = 1 << 2
FAILURES = 1 << 3
SCHEDULED = 1 << 4
RUNNERS = 1 << 5
HEALTH = 1 << 6
CHANNELS = 1 << 7
JOBS = 1 << 8
ALERTS = 1 << 9
PULSE = 1 << 10
LOGS = 1 << 11
PLATFORM = 1 << 12
RUNNER_EVENTS = 1 << 13
GAP = 1 << 15  # not a widget aspect: the source skipped seqs, so the shell should reconcile now
ACTIVITY = 1 << 14
ALL = (1 << 15) - 1

_ACTIVE_GRACE = 0.5  # s: a job started this close before a beat may be missing from that beat's active list


def initial_state(limits: Limits | None = None) -> State:
    """A fresh, empty state."""
    return State(limits or Limits())


MAX_SOURCE_WARNINGS = 100  # conditions a source may hold at once (bounded like everything else)


def fold(state: State, event: Event, at: float, replay: bool = False) -> int:
    """Fold one event into `state`, received at `at`; return the aspects that changed.

    `replay` marks an event read back from the replay stream: it is folded like any
    other, but does not move its publisher's seq (which would look like a gap).

    Raises:
        TypeError: for an event type this reducer does not know (never silently ignored).
    """
    if type(event) is JobEvent:  # the hot path first
        return _job(state, event, at, replay)
    if isinstance(event, Heartbeat):
        return _heartbeat(state, event, at, replay)
    if isinstance(event, Depth):
        return _depth(state, event, at, replay)
    if isinstance(event, Tick):
        return _tick(state, event)
    if isinstance(event, RunnerStopped):
        return _runner_stopped(state, event, at, replay)
    if isinstance(event, RunnerRemoved):
        return _runner_removed(state, event, at, replay)
    if isinstance(event, Rejected):
        rejected = state.health.rejected
        rejected[event.reason] = rejected.get(event.reason, 0) + 1
        return HEALTH
    if isinstance(event, SourceStatus):
        return _source_status(state, event)
    if isinstance(event, SourceWarning):
        return _source_warning(state, event)
    if isinstance(event, Reconciled):
        return _reconciled(state, event)
    if isinstance(event, Restored):
        return _restored(state, event)
    if isinstance(event, LogRecorded):
        state.seq += 1
        state.logs.appendleft((state.seq, event.at, event.level, event.logger, event.message[:2000]))
        return LOGS
    if isinstance(event, ShellStats):
        state.shell = dict(event.values)
        return PLATFORM
    if isinstance(event, AuditNoted):
        state.activity.appendleft(event)
        return ACTIVITY
    raise TypeError(f"fold: unknown event type {type(event).__name__}")


def fold_all(state: State, events: Iterable[tuple[Event, float]]) -> int:
    """Fold events in order; return the union of the changed aspects."""
    changed = 0
    for event, at in events:
        changed |= fold(state, event, at)
    return changed


# -- clock and series ---------------------------------------------------------------------------


def _advance(state: State, at: float) -> int:
    """Move the clock to `at` if it is later; roll the series window when the minute changes."""
    if at <= state.now:
        return 0
    state.now = at
    minute = int(at // 60)
    if minute != state.minute:
        _roll(state, minute)
        return SERIES | COUNTERS
    return 0


def _roll(state: State, minute: int) -> None:
    """Start a new current minute: drop buckets past retention and recompute the rolling sums."""
    state.minute = minute
    series = state.series
    oldest = minute - state.limits.series_minutes + 1
    for old in [m for m in series if m < oldest]:
        del series[old]
    oldest_hour = minute // 60 - state.limits.hours_retention + 1
    if state.hours and min(state.hours) < oldest_hour:
        for old in [h for h in state.hours if h < oldest_hour]:
            del state.hours[old]
    _recompute_sums(state)


def _hour(state: State, hour: int) -> list[int]:
    bucket = state.hours.get(hour)
    if bucket is None:
        bucket = state.hours[hour] = [0] * BUCKET_WIDTH
    state.dirty_hours.add(hour)
    return bucket


def _recompute_sums(state: State) -> None:
    day, before = [0] * BUCKET_WIDTH, [0] * BUCKET_WIDTH
    minute = state.minute
    state.watched_before = False
    for m, bucket in state.series.items():
        age = minute - m
        if 0 <= age < DAY_MINUTES:
            target = day
        elif DAY_MINUTES <= age < 2 * DAY_MINUTES:
            target = before
            state.watched_before = True
        else:
            continue
        for i in range(PENDING):
            target[i] += bucket[i]
    state.sums = (day, before)


def _bucket(state: State, minute: int) -> list[int]:
    """The series bucket of `minute`, created (as watched, gauges = now) if missing."""
    bucket = state.series.get(minute)
    if bucket is None:
        bucket = [0] * BUCKET_WIDTH
        bucket[PENDING : PENDING + 3] = state.totals
        state.series[minute] = bucket
        if DAY_MINUTES <= state.minute - minute < 2 * DAY_MINUTES:
            state.watched_before = True
    state.dirty_minutes.add(minute)
    return bucket


def _count(state: State, column: int, at: float, channel: str) -> None:
    if at <= state.counted_until:
        return  # a replayed event the restored series already counted
    minute = int(at // 60)
    limits = state.limits
    if minute > state.minute - limits.series_minutes:  # older than the retention: nowhere to count it
        _bucket(state, minute)[column] += 1
    if minute // 60 > state.minute // 60 - limits.hours_retention:
        _hour(state, minute // 60)[column] += 1
    ring = state.channel_series.get(channel)
    if ring is None and len(state.channel_series) < state.limits.max_channel_series:
        ring = state.channel_series[channel] = MinuteRing(CHANNEL_WIDTH, state.limits.channel_minutes)
    if ring is not None:
        ring.add(minute, column)
        state.dirty_channel_minutes.add((channel, minute))
    age = state.minute - minute
    if 0 <= age < DAY_MINUTES:
        state.sums[0][column] += 1
    elif DAY_MINUTES <= age < 2 * DAY_MINUTES:
        state.sums[1][column] += 1


# -- sources and dedupe -------------------------------------------------------------------------


def _track_seq(state: State, src: str, seq: int, replay: bool) -> int:
    """Note `src`'s seq; a jump forward is a gap (messages lost), which asks for a reconcile."""
    if replay:
        return 0
    sources = state.sources
    last = sources.get(src)
    sources[src] = seq
    if last is None:
        if len(sources) > state.limits.max_sources:
            sources.popitem(last=False)
        return 0
    if seq > last + 1:
        state.health.gaps += 1
        state.health.missed += seq - last - 1
        return GAP | HEALTH
    # seq <= last: the publisher restarted (seq starts over) or a redelivery; both are fine.
    return 0


def _seen(state: State, event_id: str) -> bool:
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


# -- jobs ---------------------------------------------------------------------------------------


def _job(state: State, ev: JobEvent, at: float, replay: bool) -> int:
    health = state.health
    if _seen(state, ev.id):
        health.dupes += 1
        return 0  # shown with the next clock tick, like the other counters
    changed = _advance(state, at) | _track_seq(state, ev.src, ev.seq, replay) | JOBS
    health.events += 1
    health.last_event = at
    if not replay:
        health.lag = at - ev.ts
    name = ev.event
    phase = PHASE[name]

    job = state.jobs.get(ev.job)
    if job is None:
        job = _new_job(state, ev.job, ev.channel, ev.fn)
    entry = (ev.ts, intern(name), ev.attempt, None if ev.runner is None else intern(ev.runner))
    trail = job.trail
    keep = 4 * (state.limits.job_history - 1)  # the job's history, flat (state.Job.trail)
    job.trail = (trail[len(trail) - keep :] if len(trail) > keep else trail) + entry

    # Throughput counts every distinct event once, in the minute jobpulse received it.
    if phase == 0:
        if ev.attempt <= 1 and job.phase < 0:
            _count(state, PUBLISHED, at, ev.channel)
            changed |= SERIES | COUNTERS
    elif name == "completed":
        _count(state, COMPLETED, at, ev.channel)
        changed |= SERIES | COUNTERS
    elif name == "failed":
        _count(state, FAILED, at, ev.channel)
        changed |= SERIES | COUNTERS
    elif name == "retried":
        _count(state, RETRIED, at, ev.channel)
        changed |= SERIES

    # Order by (attempt, phase, source ts); an older event than the job shows changes nothing more.
    if (ev.attempt, phase, ev.ts) < (job.attempt, job.phase, job.ts):
        health.stale_events += 1
        return changed

    limits = state.limits
    index = state.index
    if ev.channel != job.channel:
        _reindex(index["channel"], job.id, job.channel, ev.channel)
        job.channel = intern(ev.channel)
    if ev.fn != job.fn:
        _reindex(index["fn"], job.id, job.fn, ev.fn)
        job.fn = intern(ev.fn)
    job.ts = ev.ts
    job.updated = at
    _touch(state.jobs, job)
    if ev.cid is not None and ev.cid != job.cid:
        _reindex(index["cid"], job.id, job.cid, ev.cid)
        job.cid = ev.cid
    if ev.runner is not None and ev.runner != job.runner:
        _set_runner(state, job, ev.runner)
    if ev.max_attempts is not None:
        job.max_attempts = ev.max_attempts
    if ev.queued_at is not None:
        job.queued_at = ev.queued_at
    if ev.payload and bytes(ev.payload) != b"null":
        job.payload = _cap_payload(ev.payload, limits.payload_cap)
    if ev.reason is not None:
        job.reason = ev.reason

    if phase == 0:
        job.attempt, job.phase = ev.attempt, 0
        if name == "queued":
            if job.queued_at is None or ev.queued_at is None:
                job.queued_at = ev.queued_at if ev.queued_at is not None else ev.ts
            job.run_at = None
            changed |= _move(state, job, "queued")
        else:
            job.run_at = ev.run_at if ev.run_at is not None else ev.ts
            changed |= _move(state, job, "scheduled")
    elif phase == 1:
        job.attempt, job.phase = ev.attempt, 1
        job.started_at = ev.started_at if ev.started_at is not None else ev.ts
        job.duration = None
        job.error = job.traceback = None
        changed |= _move(state, job, "running")
    elif phase == 2:  # retried: attempt n failed, the job waits for attempt n + 1
        job.attempt, job.phase = ev.attempt + 1, 0
        _set_error(job, ev, limits)
        job.duration = ev.duration
        if ev.run_at is not None:
            job.run_at = ev.run_at
            changed |= _move(state, job, "scheduled")
        else:
            job.queued_at = ev.ts
            changed |= _move(state, job, "queued")
    else:
        job.attempt, job.phase = ev.attempt, 3
        if job.started_at is None and ev.started_at is not None:
            job.started_at = ev.started_at  # its start was not seen (before jobpulse watched); the end says when
        if ev.duration is not None:
            job.duration = ev.duration
        if name in ("failed", "expired"):
            _set_error(job, ev, limits)
        changed |= _move(state, job, name)
        if name == "failed":
            state.failures.appendleft(
                Failure(
                    ev.id,
                    job.id,
                    job.fn,
                    job.channel,
                    job.error or "",
                    at,
                    job.runner,
                    ev.attempt,
                    job.traceback,
                )
            )
            state.failures_added += 1
            changed |= FAILURES
    return changed


def _touch(jobs: dict[str, Job], job: Job) -> None:
    """Move a job to the end of the jobs dict (most recently updated)."""
    del jobs[job.id]
    jobs[job.id] = job


def _new_job(state: State, job_id: str, channel: str, fn: str) -> Job:
    jobs = state.jobs
    if len(jobs) >= state.limits.max_jobs:
        _evict_job(state)
    # Channel, function and runner names repeat across thousands of jobs: keep one copy of each.
    job = Job(job_id, intern(channel), intern(fn))
    jobs[job_id] = job
    index = state.index
    _index(index["channel"], job_id, channel)
    _index(index["fn"], job_id, fn)
    return job


def _reindex(index: dict[str, Ids], job_id: str, old: str | None, new: str | None) -> None:
    """Move a job in one search index from value `old` to value `new` (None: not indexed)."""
    if old is not None:
        _unindex(index, job_id, old)
    if new is not None:
        _index(index, job_id, new)


def _index(index: dict[str, Ids], job_id: str, value: str) -> None:
    # A value's ids: a 1-tuple for one job, a dict for more; neither is tracked by the collector (state.Ids).
    ids = index.get(value)
    if ids is None:
        index[value] = (job_id,)
    elif isinstance(ids, tuple):
        if ids[0] != job_id:
            index[value] = {ids[0]: None, job_id: None}
    else:
        ids[job_id] = None


def _unindex(index: dict[str, Ids], job_id: str, value: str) -> None:
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
            _unindex_runner_job(state, job.runner, job.id)
        state.runner_jobs.setdefault(runner_id, set()).add(job.id)
    _reindex(state.index["runner"], job.id, job.runner, runner_id)
    job.runner = intern(runner_id)


def _evict_job(state: State) -> None:
    """Make room for one job: finished jobs go first, then the oldest waiting, then the oldest running."""
    for pool in (state.terminal, state.queued, state.scheduled, state.running):
        if pool:
            job_id, _ = pool.popitem(last=False)
            job = state.jobs.pop(job_id)
            if job.status == "running" and job.runner is not None:
                _unindex_runner_job(state, job.runner, job_id)
            index = state.index
            _unindex(index["channel"], job_id, job.channel)
            _unindex(index["fn"], job_id, job.fn)
            if job.status in SETTLED:
                _unindex(index["status"], job_id, job.status)
            if job.runner is not None:
                _unindex(index["runner"], job_id, job.runner)
            if job.cid is not None:
                _unindex(index["cid"], job_id, job.cid)
            state.health.evicted_jobs += 1
            return


def _move(state: State, job: Job, status: str) -> int:
    """Set the job's status and keep the ordered status sets in step; return aspects touched."""
    old = job.status
    changed = 0
    if old == status:
        # Same status again (e.g. a second `queued` when a scheduled retry comes due): the row may change.
        return LIVE if status in ("queued", "running") else (SCHEDULED if status == "scheduled" else 0)
    pool = _pool(state, old)
    if pool is not None:
        pool.pop(job.id, None)
        changed |= _aspect_of(old)
        if old == "running" and job.runner is not None:
            _unindex_runner_job(state, job.runner, job.id)
    if old in SETTLED or status in SETTLED:
        _reindex(state.index["status"], job.id, old if old in SETTLED else None, status if status in SETTLED else None)
    job.status = status
    pool = _pool(state, status)
    if pool is not None:
        pool[job.id] = None
        changed |= _aspect_of(status)
        if status == "running" and job.runner is not None:
            state.runner_jobs.setdefault(job.runner, set()).add(job.id)
    return changed


def _pool(state: State, status: str) -> OrderedDict[str, None] | None:
    if status == "queued":
        return state.queued
    if status == "running":
        return state.running
    if status == "scheduled":
        return state.scheduled
    if status in SETTLED:
        return state.terminal
    return None


def _aspect_of(status: str) -> int:
    if status in ("queued", "running"):
        return LIVE
    if status == "scheduled":
        return SCHEDULED
    return 0


def _unindex_runner_job(state: State, runner_id: str, job_id: str) -> None:
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


# -- runners ------------------------------------------------------------------------------------


def runner_status(runner: Runner, now: float) -> str:
    """A runner's status by the rules of docs/protocol.md (`heartbeat`), with its job system's silence factors."""
    if runner.stopped or runner.last_recv is None:
        return "offline"
    silent = now - runner.last_recv
    if silent > runner.offline_factor * runner.interval:
        return "offline"
    if silent > runner.stale_factor * runner.interval:
        return "stale"
    if runner.state in ("draining", "drained"):
        return "draining"
    if len(runner.active) >= runner.concurrency:
        return "busy"
    return "online"


def runner_record(runner: Runner) -> RunnerRecord:
    """The runner as a durable record (its last beat plus what jobpulse observed)."""
    beat = Heartbeat(
        v=1,
        src=runner.id,
        seq=0,
        ts=runner.last_ts if runner.last_ts is not None else 0.0,
        boot=runner.boot,
        interval=runner.interval,
        host=runner.host,
        region=runner.region,
        pid=runner.pid,
        version=runner.version,
        state=runner.state,  # type: ignore[arg-type]
        channels=list(runner.channels),
        concurrency=runner.concurrency,
        active=[ActiveJob(job, channel, fn, started) for job, channel, fn, started in runner.active],
        processed=runner.processed,
        failed=runner.failed,
    )
    return RunnerRecord(
        beat=beat,
        last_recv=runner.last_recv,
        stopped=runner.stopped,
        stop_reason=runner.stop_reason,
        first_seen=runner.first_seen,
    )


def _runner(state: State, runner_id: str) -> Runner:
    runner = state.runners.get(runner_id)
    if runner is None:
        if len(state.runners) >= state.limits.max_runners:
            _evict_runner(state)
        runner = Runner(runner_id, state.limits)
        state.runners[runner_id] = runner
    return runner


def _evict_runner(state: State) -> None:
    """Make room for one runner: the one silent longest goes (offline ones first, by status order)."""
    victim = min(
        state.runners.values(),
        key=lambda r: (r.status != "offline", r.last_recv if r.last_recv is not None else float("-inf"), r.id),
    )
    del state.runners[victim.id]
    state.dirty_runners.add(victim.id)


def _apply_beat(runner: Runner, beat: Heartbeat) -> None:
    runner.host = beat.host
    runner.region = beat.region
    runner.pid = beat.pid
    runner.version = beat.version
    runner.state = beat.state
    runner.channels = tuple(beat.channels)
    runner.concurrency = beat.concurrency
    runner.active = tuple((a.job, a.channel, a.fn, a.started) for a in beat.active)
    runner.processed = beat.processed
    runner.failed = beat.failed
    runner.boot = beat.boot
    runner.interval = beat.interval
    runner.last_ts = beat.ts
    runner.stopped = False
    runner.stop_reason = ""


def _heartbeat(state: State, beat: Heartbeat, at: float, replay: bool) -> int:
    changed = _advance(state, at) | _track_seq(state, beat.src, beat.seq, replay)
    health = state.health
    health.events += 1
    health.last_event = at
    runner = _runner(state, beat.src)
    if runner.last_ts is not None and beat.boot == runner.boot and beat.ts <= runner.last_ts:
        health.stale_events += 1  # an older beat of the same boot: a redelivery or out of order
        return changed
    previous = runner.last_recv
    gap = None if previous is None else at - previous
    runner.latencies.append((at, at - beat.ts, gap))
    state.beats_this_tick.append((at - beat.ts, gap))
    state.last_beat = at
    changed |= _runner_news(state, runner, beat, at)
    _apply_beat(runner, beat)
    runner.last_recv = at
    runner.skew = at - beat.ts
    if runner.first_seen is None:
        runner.first_seen = at
    status = runner_status(runner, state.now)
    if status != runner.status:
        if previous is not None:  # a first beat is told as "joined" already
            changed |= _status_event(state, runner, status, at)
        runner.status = status
    state.dirty_runners.add(runner.id)
    return changed | RUNNERS | _sync_active(state, runner, beat)


def _runner_event(state: State, at: float, runner_id: str, message: str, severity: str) -> int:
    state.seq += 1
    state.runner_events.appendleft((state.seq, at, runner_id, message, severity))
    return RUNNER_EVENTS


def _runner_news(state: State, runner: Runner, beat: Heartbeat, at: float) -> int:
    """Runner events a beat tells, compared with what the runner showed before it."""
    if runner.last_ts is None:
        where = " ".join(p for p in (beat.region, beat.host) if p)
        return _runner_event(state, at, runner.id, f"joined{' (' + where + ')' if where else ''}", "info")
    if beat.boot != runner.boot:
        return _runner_event(state, at, runner.id, "restarted", "info")
    if runner.stopped:
        return _runner_event(state, at, runner.id, "beating again after it stopped", "info")
    if beat.state != runner.state:
        return _runner_event(state, at, runner.id, f"now {beat.state}", "info")
    return 0


def _sync_active(state: State, runner: Runner, beat: Heartbeat) -> int:
    """Heal running jobs from the beat's `active` list when job events were missed."""
    changed = 0
    listed = set()
    for active in beat.active:
        listed.add(active.job)
        job = state.jobs.get(active.job)
        if job is None:
            job = _new_job(state, active.job, active.channel, active.fn)
        if job.status == "running" or (job.phase >= 1 and job.status != "unknown"):
            continue  # running already, or finished: a beat may lag the job's own events
        job.phase = 1
        if job.runner != runner.id:
            _reindex(state.index["runner"], job.id, job.runner, runner.id)
            job.runner = runner.id
        job.started_at = active.started
        job.ts = max(job.ts, active.started)
        job.updated = state.now
        _touch(state.jobs, job)
        changed |= _move(state, job, "running") | JOBS
    held = state.runner_jobs.get(runner.id)
    if held:
        for job_id in [j for j in held if j not in listed]:
            job = state.jobs[job_id]
            started = job.started_at if job.started_at is not None else float("-inf")
            if started < beat.ts - _ACTIVE_GRACE:
                # The runner says it is not running this job and it started before the beat: its end was lost.
                changed |= _move(state, job, "unknown") | JOBS
    return changed


def _runner_stopped(state: State, msg: RunnerStopped, at: float, replay: bool) -> int:
    changed = _advance(state, at) | _track_seq(state, msg.src, msg.seq, replay)
    state.health.events += 1
    state.health.last_event = at
    runner = _runner(state, msg.src)
    if runner.last_ts is not None and msg.ts < runner.last_ts:
        state.health.stale_events += 1
        return changed
    runner.stopped = True
    runner.stop_reason = msg.reason
    runner.last_ts = msg.ts
    runner.active = ()
    runner.status = "offline"
    state.dirty_runners.add(runner.id)
    reason = f" ({msg.reason})" if msg.reason else ""
    return changed | RUNNERS | _runner_event(state, at, runner.id, f"stopped{reason}", "info")


def _runner_removed(state: State, msg: RunnerRemoved, at: float, replay: bool) -> int:
    """Forget a runner the job system cleaned up: its card goes, and the store forgets it on the next save."""
    changed = _advance(state, at) | _track_seq(state, msg.src, msg.seq, replay)
    state.health.events += 1
    state.health.last_event = at
    runner = state.runners.get(msg.runner)
    if runner is None:
        return changed
    if runner.status in ("online", "busy", "draining") and runner.last_ts is not None and runner.last_ts > msg.ts:
        # It beat after the removal was decided: it is alive, so it stays (the next beat would re-add it anyway).
        return changed
    del state.runners[msg.runner]
    state.dirty_runners.add(msg.runner)
    reason = f" ({msg.reason})" if msg.reason else ""
    return changed | RUNNERS | _runner_event(state, at, msg.runner, f"removed{reason}", "info")


# -- channels -----------------------------------------------------------------------------------


def _depth(state: State, msg: Depth, at: float, replay: bool) -> int:
    changed = _advance(state, at) | _track_seq(state, msg.src, msg.seq, replay)
    state.health.events += 1
    state.health.last_event = at
    for name, depth in msg.channels.items():
        changed |= _set_depth(state, name, depth, msg.ts if depth.ts is None else depth.ts)
    if changed & CHANNELS:
        changed |= _retotal(state, at)
    return changed


def _set_depth(state: State, name: str, depth: ChannelDepth, ts: float) -> int:
    channel = state.channels.get(name)
    if channel is None:
        if len(state.channels) >= state.limits.max_channels:
            return 0
        channel = Channel(name)
        state.channels[name] = channel
    elif channel.ts is not None and ts < channel.ts:
        return 0
    channel.ts = ts
    if (channel.queued, channel.inflight, channel.scheduled, channel.oldest, channel.paused) == (
        depth.queued,
        depth.inflight,
        depth.scheduled,
        depth.oldest,
        depth.paused,
    ):
        return 0
    channel.queued = depth.queued
    channel.inflight = depth.inflight
    channel.scheduled = depth.scheduled
    channel.oldest = depth.oldest
    channel.paused = depth.paused
    return CHANNELS


def _retotal(state: State, at: float) -> int:
    totals = [0, 0, 0]
    for channel in state.channels.values():
        totals[0] += channel.queued
        totals[1] += channel.inflight
        totals[2] += channel.scheduled
    if totals == state.totals:
        return 0
    state.totals = totals
    if state.health.any_connected:
        _bucket(state, int(at // 60))[PENDING : PENDING + 3] = totals
    return COUNTERS


# -- shell events -------------------------------------------------------------------------------


def _tick(state: State, tick: Tick) -> int:
    changed = _advance(state, tick.now)
    # Intake counters (events, duplicates, out-of-order) change with nearly every event; they are shown
    # once a tick rather than patched into every batch.
    health = state.health
    counters = (health.events, health.dupes, health.stale_events, health.evicted_jobs)
    if counters != health.shown:
        health.shown = counters
        changed |= HEALTH
    now = state.now
    state.day_end = tick.day_end
    if tick.connected:
        minute = int(now // 60)
        bucket = state.series.get(minute)
        if bucket is None:
            bucket = _bucket(state, minute)
            changed |= SERIES
        longest = _longest_running(state, now)
        if bucket[LONGEST] != longest:
            bucket[LONGEST] = longest
            state.dirty_minutes.add(minute)
            changed |= SERIES
        hour = _hour(state, minute // 60)
        hour[PENDING:] = bucket[PENDING:]
    changed |= _pulse(state, now)
    for runner in state.runners.values():
        status = runner_status(runner, now)
        if status != runner.status:
            changed |= _status_event(state, runner, status, now)
            runner.status = status
            state.dirty_runners.add(runner.id)
            changed |= RUNNERS
    if rules.evaluate(state, now):
        changed |= ALERTS
    return changed


def _longest_running(state: State, now: float) -> int:
    """Seconds the longest-running job has run (the first of the running pool started first)."""
    for job_id in state.running:
        started = state.jobs[job_id].started_at
        return max(0, int(now - started)) if started is not None else 0
    return 0


def _pulse(state: State, now: float) -> int:
    """Fold the beats received since the last tick into one heartbeat-latency sample."""
    beats = state.beats_this_tick
    if not beats:
        return 0
    latencies = sorted(lat for lat, _ in beats)
    gaps = [gap for _, gap in beats if gap is not None]
    p50 = latencies[len(latencies) // 2]
    state.pulse.append((int(now), round(p50 * 1000, 1), round(latencies[-1] * 1000, 1),
                        round(max(gaps), 2) if gaps else 0.0, len(beats)))  # fmt: skip
    state.beats_this_tick = []
    return PULSE


def _status_event(state: State, runner: Runner, status: str, at: float) -> int:
    old = runner.status
    if status == "stale":
        return _runner_event(state, at, runner.id, "stopped beating: stale", "warning")
    if status == "offline" and not runner.stopped:
        silent = "" if runner.last_recv is None else f" for {int(at - runner.last_recv)}s"
        return _runner_event(state, at, runner.id, f"silent{silent}: offline", "error")
    if old in ("stale", "offline") and status in ("online", "busy", "draining"):
        return _runner_event(state, at, runner.id, "beating again", "info")
    return 0


def _link(state: State, source: str) -> Link | None:
    """The link to `source`: a configured one (with one source configured, "" means it too), or, where none are
    configured (tests, tools), one made on first mention, at most MAX_LABELS."""
    links = state.health.links
    link = links.get(source)
    if link is not None:
        return link
    configured = state.limits.sources
    if len(configured) == 1 and not source:
        return links.get(next(iter(configured)))
    if configured or len(links) >= MAX_LABELS:
        return None  # a label nobody configured: nothing to show it under
    link = links[source] = Link(source)
    return link


def _source_status(state: State, msg: SourceStatus) -> int:
    link = _link(state, msg.source)
    if link is None:
        return 0
    error = redact(msg.error)  # a driver's error may quote the URL it was given, password and all
    if link.connected == msg.connected and link.error == error and link.parts == msg.parts:
        return 0
    if link.connected != msg.connected:
        link.since = msg.at
    link.connected = msg.connected
    link.error = error
    link.parts = dict(msg.parts)
    return HEALTH


def _source_warning(state: State, msg: SourceWarning) -> int:
    """Hold or clear a condition the source's connector reported; the rules raise it as an alert at the next tick."""
    link = _link(state, msg.source)
    if link is None:
        return 0
    warnings = link.warnings
    if not msg.severity:
        return HEALTH if warnings.pop(msg.key, None) is not None else 0
    value = (msg.severity, msg.title[:200], msg.detail[:500])
    if warnings.get(msg.key) == value:
        return 0
    if msg.key not in warnings and len(warnings) >= MAX_SOURCE_WARNINGS:
        return 0
    warnings[msg.key] = value
    return HEALTH


def _reconciled(state: State, msg: Reconciled) -> int:
    changed = _advance(state, msg.at) | HEALTH
    link = _link(state, msg.source)
    if link is not None:
        link.reconciled = msg.at
        if msg.rtt is not None:
            link.rtt = msg.rtt
    beating = set()
    for beat in msg.heartbeats:
        beating.add(beat.src)
        runner = _runner(state, beat.src)
        if runner.last_ts is not None and beat.boot == runner.boot and beat.ts <= runner.last_ts:
            continue  # we already know this beat or a later one
        _apply_beat(runner, beat)
        # The key proves a beat at beat.ts (the source's clock); map it to ours by the last skew seen.
        estimate = min(msg.at, beat.ts + runner.skew)
        if runner.last_recv is None or estimate > runner.last_recv:
            runner.last_recv = estimate
        if runner.first_seen is None:
            runner.first_seen = runner.last_recv
        runner.status = runner_status(runner, state.now)
        state.dirty_runners.add(runner.id)
        changed |= RUNNERS | _sync_active(state, runner, beat)
    for runner_id in msg.registered:
        if runner_id not in state.runners:
            _runner(state, runner_id)  # registered but never seen beating: show it, offline
            state.dirty_runners.add(runner_id)
            changed |= RUNNERS
    if msg.complete:
        changed |= _forget_unregistered(state, msg, beating)
    touched = 0
    for name, depth in msg.depth.items():
        touched |= _set_depth(state, name, depth, depth.ts if depth.ts is not None else msg.at)
    if touched:
        changed |= touched | _retotal(state, msg.at)
    return changed


def _forget_unregistered(state: State, msg: Reconciled, beating: set[str]) -> int:
    """Drop runners the registry no longer lists and that are not alive: their removal was missed."""
    registered = set(msg.registered)
    several = state.limits.several
    gone = [
        runner
        for runner in state.runners.values()
        if runner.id not in registered
        and (not several or runner.source == msg.source)  # another source's registry says nothing of it
        and runner.id not in beating
        # A runner that beat lately may have registered after the registry was read: the next reconcile decides.
        and runner_status(runner, msg.at) in ("stale", "offline")
    ]
    changed = 0
    for runner in gone:
        del state.runners[runner.id]
        state.dirty_runners.add(runner.id)
        changed |= RUNNERS | _runner_event(state, msg.at, runner.id, "removed (no longer registered)", "info")
    return changed


def _restored(state: State, msg: Restored) -> int:
    state.counted_until = max(state.counted_until, msg.counted_until)
    if msg.synthetic_until is not None:
        state.synthetic_until = max(state.synthetic_until or msg.synthetic_until, msg.synthetic_until)
    for minute, values in msg.series.items():
        if minute not in state.series and len(values) <= BUCKET_WIDTH:
            state.series[minute] = [*values, *[0] * (BUCKET_WIDTH - len(values))]  # older, narrower buckets
    for hour, values in msg.hours.items():
        if hour not in state.hours and len(values) <= BUCKET_WIDTH:
            state.hours[hour] = [*values, *[0] * (BUCKET_WIDTH - len(values))]
    limits = state.limits
    for channel, minutes in msg.channel_series.items():
        ring = state.channel_series.get(channel)
        if ring is None:
            if len(state.channel_series) >= limits.max_channel_series:
                continue
            ring = state.channel_series[channel] = MinuteRing(CHANNEL_WIDTH, limits.channel_minutes)
        for minute, values in sorted(minutes.items()):
            if ring.get(minute) is None:
                for column, n in enumerate(values[:CHANNEL_WIDTH]):
                    ring.add(minute, column, n)
    _recompute_sums(state)
    for record in msg.runners:
        beat = record.beat
        if beat.src in state.runners:
            continue
        runner = _runner(state, beat.src)
        _apply_beat(runner, beat)
        runner.last_recv = record.last_recv
        runner.stopped = record.stopped
        runner.stop_reason = record.stop_reason
        runner.first_seen = record.first_seen
        runner.status = runner_status(runner, state.now)
    known = {f.event for f in state.failures}
    for f in reversed(msg.failures):  # newest first in the record, so append oldest first
        if f.event not in known:
            state.failures.appendleft(
                Failure(f.event, f.job, f.fn, f.channel, f.error, f.at, f.runner, f.attempt, f.traceback)
            )
    return ALL
