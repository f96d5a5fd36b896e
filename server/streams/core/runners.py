"""Runners: each runner's record, its status by the silence rule, and the fold of heartbeats and runner messages.

Pure layer. A beat updates its runner (an older beat of the same boot changes
nothing), tells what is new about it in the runner event log, and heals the
jobs it lists as running (`sync_active`) when their own events were missed.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from server.streams.core import jobs
from server.streams.core.aspects import JOBS, RUNNER_EVENTS, RUNNERS
from server.streams.core.events import ActiveJob, Heartbeat, RunnerRecord
from server.streams.core.labels import source_of

if TYPE_CHECKING:
    from server.streams.core.events import Reconciled, RunnerRemoved, RunnerStopped
    from server.streams.core.state import Limits, State

RUNNER_STATUSES = ("offline", "stale", "draining", "busy", "online")


class Runner:
    """One runner (worker process) as the fleet view needs it."""

    __slots__ = (
        "active",
        "boot",
        "channels",
        "concurrency",
        "failed",
        "first_seen",
        "gaps",
        "host",
        "id",
        "interval",
        "last_recv",
        "last_ts",
        "latencies",
        "offline_factor",
        "pid",
        "processed",
        "region",
        "skew",
        "source",
        "stale_factor",
        "state",
        "status",
        "stop_reason",
        "stopped",
        "version",
    )

    def __init__(self, runner_id: str, limits: Limits) -> None:
        self.id = runner_id
        # Its source (a label; "" with one unnamed source) and that job system's rule for silence.
        self.source = source_of(runner_id, limits.sources)
        self.stale_factor, self.offline_factor = limits.factors_of(self.source)
        self.host = ""
        self.region = ""
        self.pid = 0
        self.version = ""
        self.state = "running"
        self.channels: tuple[str, ...] = ()
        self.concurrency = 1
        self.active: tuple[tuple[str, str, str, float], ...] = ()  # (job, channel, fn, started)
        self.processed = 0
        self.failed = 0
        self.boot = 0.0
        self.interval = 2.0
        self.last_ts: float | None = None  # the runner's clock, last beat
        self.last_recv: float | None = None  # jobpulse's clock, last beat received
        self.skew = 0.0  # last (receive time - send time): latency plus clock offset
        self.first_seen: float | None = None
        self.stopped = False
        self.stop_reason = ""
        self.status = "offline"
        # (received at, latency = recv - sent, gap since the previous beat) per beat.
        self.latencies: deque[tuple[float, float, float | None]] = deque(maxlen=limits.latency_samples)
        self.gaps = 0


_ACTIVE_GRACE = 0.5  # s: a job started this close before a beat may be missing from that beat's active list


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


def runner_of(state: State, runner_id: str) -> Runner:
    runner = state.runners.get(runner_id)
    if runner is None:
        if len(state.runners) >= state.limits.max_runners:
            _evict(state)
        runner = Runner(runner_id, state.limits)
        state.runners[runner_id] = runner
    return runner


def _evict(state: State) -> None:
    """Make room for one runner: the one silent longest goes (offline ones first, by status order)."""
    victim = min(
        state.runners.values(),
        key=lambda r: (r.status != "offline", r.last_recv if r.last_recv is not None else float("-inf"), r.id),
    )
    del state.runners[victim.id]
    state.dirty_runners.add(victim.id)


def apply_beat(runner: Runner, beat: Heartbeat) -> None:
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


def fold_heartbeat(state: State, beat: Heartbeat, at: float, replay: bool) -> int:
    runner = runner_of(state, beat.src)
    if runner.last_ts is not None and beat.boot == runner.boot and beat.ts <= runner.last_ts:
        state.health.stale_events += 1  # an older beat of the same boot: a redelivery or out of order
        return 0
    previous = runner.last_recv
    gap = None if previous is None else at - previous
    runner.latencies.append((at, at - beat.ts, gap))
    state.beats_this_tick.append((at - beat.ts, gap))
    state.last_beat = at
    changed = _news(state, runner, beat, at)
    apply_beat(runner, beat)
    runner.last_recv = at
    runner.skew = at - beat.ts
    if runner.first_seen is None:
        runner.first_seen = at
    status = runner_status(runner, state.now)
    if status != runner.status:
        if previous is not None:  # a first beat is told as "joined" already
            changed |= status_event(state, runner, status, at)
        runner.status = status
    state.dirty_runners.add(runner.id)
    return changed | RUNNERS | sync_active(state, runner, beat)


def runner_event(state: State, at: float, runner_id: str, message: str, severity: str) -> int:
    state.seq += 1
    state.runner_events.appendleft((state.seq, at, runner_id, message, severity))
    return RUNNER_EVENTS


def _news(state: State, runner: Runner, beat: Heartbeat, at: float) -> int:
    """Runner events a beat tells, compared with what the runner showed before it."""
    if runner.last_ts is None:
        where = " ".join(p for p in (beat.region, beat.host) if p)
        return runner_event(state, at, runner.id, f"joined{' (' + where + ')' if where else ''}", "info")
    if beat.boot != runner.boot:
        if beat.version and runner.version and beat.version != runner.version:
            # A new version on a new boot: a deploy (a function's chart marks it as one).
            return runner_event(state, at, runner.id, f"restarted on {beat.version} (was {runner.version})", "info")
        return runner_event(state, at, runner.id, "restarted", "info")
    if runner.stopped:
        return runner_event(state, at, runner.id, "beating again after it stopped", "info")
    if beat.state != runner.state:
        return runner_event(state, at, runner.id, f"now {beat.state}", "info")
    return 0


def sync_active(state: State, runner: Runner, beat: Heartbeat) -> int:
    """Heal running jobs from the beat's `active` list when job events were missed."""
    changed = 0
    listed = set()
    for active in beat.active:
        listed.add(active.job)
        job = state.jobs.get(active.job)
        if job is None:
            job = jobs.new_job(state, active.job, active.channel, active.fn)
        if job.status == "running" or (job.phase >= 1 and job.status != "unknown"):
            continue  # running already, or finished: a beat may lag the job's own events
        job.phase = 1
        if job.runner != runner.id:
            jobs.index_move(state.index["runner"], job.id, job.runner, runner.id)
            job.runner = runner.id
        job.started_at = active.started
        job.ts = max(job.ts, active.started)
        job.updated = state.now
        jobs.touch(state.jobs, job)
        changed |= jobs.move(state, job, "running") | JOBS
    held = state.runner_jobs.get(runner.id)
    if held:
        for job_id in [j for j in held if j not in listed]:
            job = state.jobs[job_id]
            started = job.started_at if job.started_at is not None else float("-inf")
            if started < beat.ts - _ACTIVE_GRACE:
                # The runner says it is not running this job and it started before the beat: its end was lost.
                changed |= jobs.move(state, job, "unknown") | JOBS
    return changed


def fold_stopped(state: State, msg: RunnerStopped, at: float, replay: bool) -> int:
    runner = runner_of(state, msg.src)
    if runner.last_ts is not None and msg.ts < runner.last_ts:
        state.health.stale_events += 1
        return 0
    runner.stopped = True
    runner.stop_reason = msg.reason
    runner.last_ts = msg.ts
    runner.active = ()
    runner.status = "offline"
    state.dirty_runners.add(runner.id)
    reason = f" ({msg.reason})" if msg.reason else ""
    return RUNNERS | runner_event(state, at, runner.id, f"stopped{reason}", "info")


def fold_removed(state: State, msg: RunnerRemoved, at: float, replay: bool) -> int:
    """Forget a runner the job system cleaned up: its card goes, and the store forgets it on the next save."""
    runner = state.runners.get(msg.runner)
    if runner is None:
        return 0
    if runner.status in ("online", "busy", "draining") and runner.last_ts is not None and runner.last_ts > msg.ts:
        # It beat after the removal was decided: it is alive, so it stays (the next beat would re-add it anyway).
        return 0
    del state.runners[msg.runner]
    state.dirty_runners.add(msg.runner)
    reason = f" ({msg.reason})" if msg.reason else ""
    return RUNNERS | runner_event(state, at, msg.runner, f"removed{reason}", "info")


def status_event(state: State, runner: Runner, status: str, at: float) -> int:
    old = runner.status
    if status == "stale":
        return runner_event(state, at, runner.id, "stopped beating: stale", "warning")
    if status == "offline" and not runner.stopped:
        silent = "" if runner.last_recv is None else f" for {int(at - runner.last_recv)}s"
        return runner_event(state, at, runner.id, f"silent{silent}: offline", "error")
    if old in ("stale", "offline") and status in ("online", "busy", "draining"):
        return runner_event(state, at, runner.id, "beating again", "info")
    return 0


def forget_unregistered(state: State, msg: Reconciled, beating: set[str]) -> int:
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
        changed |= RUNNERS | runner_event(state, msg.at, runner.id, "removed (no longer registered)", "info")
    return changed
