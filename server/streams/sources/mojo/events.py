"""django-mojo's heartbeats, job rows and job events as jobpulse events.

Pure layer: no I/O, no clock (`now` comes in). The shell (`server.streams.sources.mojo.connector`)
reads django-mojo's Redis and Postgres and hands the values here; docs/mojo.md
says what each one means, with citations into django-mojo's source.

Three rules from docs/mojo.md shape this module:

- **The row is the truth; events say which rows to look at.** Event ids commit
  out of order, a `canceled` event can leave a pending row, and django-mojo's
  own purge writes no event at all. So every event is read with its job's row,
  and a row ahead of what jobpulse showed yields the event that row implies.
- **One id per lifecycle step.** An event made from an event row and one made
  from a job row for the same step (job, attempt, phase) get the same id
  (`mojo:<job>:<attempt>:<event>`), so the fold counts the step once however
  it was learnt.
- **Attempts in jobpulse's numbering.** django-mojo writes `queued` with attempt
  0 (the scheduler's re-queue of a retry too, and possibly after the retry's
  `running`: `scheduler.py:417-431`); a `queued` belongs to the attempt after
  the last `retry` seen, so a late one is an old step, not a step back.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from server.streams.core.events import ActiveJob, ChannelDepth, Heartbeat, JobEvent, Rejected, RunnerStopped

SRC = "mojo"  # the `src` of job events made from Postgres (one publisher: its seq never jumps)
TERMINAL = frozenset({"completed", "failed", "canceled", "expired"})
PHASE = {"queued": 0, "scheduled": 0, "started": 1, "retried": 2, "completed": 3, "failed": 3, "canceled": 3,
         "expired": 3}  # fmt: skip
# `retry` events that are an engine's or the reaper's retry of the same job; a `retry_requested` one marks a
# finished job replaced by a new one (job_actions.py), which is no step of this job's lifecycle.
ENGINE_RETRIES = frozenset({"failure", "reaper_timeout", "manual_clear_stuck"})
MAX_ACTIVE = 100  # jobs a heartbeat lists (the protocol's cap)
MAX_FN = 300


@dataclass(frozen=True, slots=True)
class EventRow:
    """One row of jobs_jobevent (times as epoch seconds; `run_at` from the details' `run_at` or `next_run_at`)."""

    id: int
    job: str
    channel: str
    event: str
    at: float
    runner: str | None
    attempt: int
    details: Mapping[str, Any]
    run_at: float | None = None


@dataclass(frozen=True, slots=True)
class Beat:
    """A runner's hb document as read (times as epoch seconds), or why it could not be read (`error`)."""

    ts: float = 0.0  # last_heartbeat
    boot: float = 0.0  # started
    host: str = ""
    channels: tuple[str, ...] = ()
    processed: int = 0
    draining: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True)
class JobRow:
    """The columns of one jobs_job row that jobpulse shows (times as epoch seconds)."""

    id: str
    channel: str
    func: str
    status: str
    attempt: int
    max_retries: int
    runner: str | None
    error: str
    traceback: str
    run_at: float | None
    started_at: float | None
    finished_at: float | None
    created: float
    payload: bytes  # raw JSON
    cid: str | None = None  # a correlation id, kept in metadata["cid"] (django-mojo has no column for it)


class IdCursor:
    """Which jobs_jobevent ids have been read, when ids commit out of order.

    `top` is the highest id read. An id below it that has not been read is
    missing: its writer's transaction is still open, or it rolled back and the
    id never comes. Missing ids are asked for again until `lookback_s` after
    they were first noticed, then given up (counted in `given_up`); at most
    `max_missing` are kept (the oldest given up first).
    """

    def __init__(self, lookback_s: float, max_missing: int = 10_000) -> None:
        self.lookback_s = lookback_s
        self.max_missing = max_missing
        self.top = 0
        self.started = False
        self.missing: OrderedDict[int, float] = OrderedDict()  # id -> when it was first noticed missing
        self.given_up = 0

    def start(self, top: int) -> None:
        """Begin after `top` (everything up to it is history, read from the rows instead)."""
        self.top = max(self.top, top)
        self.started = True

    def observe(self, ids: Iterable[int], now: float) -> set[int]:
        """Note ids just read; return those not read before."""
        new: set[int] = set()
        for event_id in sorted(ids):
            if event_id > self.top:
                first_gap = max(self.top + 1, event_id - self.max_missing)
                self.given_up += first_gap - (self.top + 1)
                for gap in range(first_gap, event_id):
                    self.missing[gap] = now
                self.top = event_id
                new.add(event_id)
            elif self.missing.pop(event_id, None) is not None:
                new.add(event_id)
        while len(self.missing) > self.max_missing:
            self.missing.popitem(last=False)
            self.given_up += 1
        return new

    def expire(self, now: float) -> int:
        """Give up ids missing for longer than the look-back; return how many."""
        gone = 0
        while self.missing:
            event_id, since = next(iter(self.missing.items()))
            if now - since <= self.lookback_s:
                break
            del self.missing[event_id]
            gone += 1
        self.given_up += gone
        return gone


@dataclass(slots=True)
class _Job:
    channel: str
    fn: str
    emitted: set[tuple[int, str]] = field(default_factory=set)  # (attempt, event) steps already made
    step: tuple[int, int] = (0, -1)  # (attempt, phase) of the furthest step made
    retried: int = 0  # the attempt of the last engine retry seen: a `queued` belongs to the one after it
    queued_at: float | None = None
    started_at: float | None = None
    runner: str | None = None


@dataclass(slots=True)
class _Runner:
    seq: int = 0
    last_ts: float | None = None
    draining: bool = False
    stopped: bool = False
    lost: bool = False  # its hb key expired while its registry entry stayed: a crash, not a clean stop
    failed: int = 0


class MojoTranslator:
    """Turns what the shell read into jobpulse events; remembers what it made, within bounds."""

    def __init__(self, heartbeat_s: float, concurrency: int, max_jobs: int = 100_000, max_runners: int = 5_000) -> None:
        self.heartbeat_s = heartbeat_s
        self.concurrency = max(1, concurrency)
        self.max_jobs = max_jobs
        self.max_runners = max_runners
        self.jobs: OrderedDict[str, _Job] = OrderedDict()
        self.runners: OrderedDict[str, _Runner] = OrderedDict()
        self.running: dict[str, dict[str, None]] = {}  # runner -> its running jobs, oldest first
        self.channels: set[str] = set()  # every channel a job or a runner named
        self.seq = 0

    # -- jobs -----------------------------------------------------------------------------------------

    def events(self, rows: Iterable[EventRow], jobs: Mapping[str, JobRow], now: float) -> list[JobEvent]:
        """Job events for event rows read (in id order), then what their jobs' rows say beyond them."""
        out: list[JobEvent] = []
        touched: dict[str, JobRow] = {}
        for row in sorted(rows, key=lambda r: r.id):
            job_row = jobs.get(row.job)
            if job_row is None:
                continue  # the job is gone (pruned or deleted): nothing to show
            touched[row.job] = job_row
            made = self._from_event(row, job_row)
            if made is not None:
                out.append(made)
        out += self.rows(touched.values(), now)
        return out

    def rows(self, rows: Iterable[JobRow], now: float) -> list[JobEvent]:
        """The step each row is at, for rows ahead of what jobpulse showed (rows decide)."""
        out: list[JobEvent] = []
        for row in rows:
            name, attempt, ts = _row_step(row, now)
            job = self._job(row)
            if (attempt, PHASE[name]) <= job.step or (attempt, name) in job.emitted:
                continue
            runner = row.runner if name != "queued" and name != "scheduled" else None
            made = self._make(row, job, name, attempt, ts, runner=runner, run_at=row.run_at if name == "scheduled"
                              else None, error=row.error or None, traceback=row.traceback or None)  # fmt: skip
            if made is not None:
                out.append(made)
        return out

    def _from_event(self, ev: EventRow, row: JobRow) -> JobEvent | None:
        job = self._job(row)
        details = ev.details
        name: str
        run_at = None
        reason = None
        error = None
        if ev.event in ("queued", "scheduled"):
            name = ev.event
            attempt = job.retried + 1
            if name == "scheduled":
                run_at = ev.run_at
        elif ev.event == "running":
            name, attempt = "started", max(ev.attempt, 1)
        elif ev.event == "retry":
            reason = str(details.get("reason") or "")
            if reason not in ENGINE_RETRIES:
                return None
            name, attempt = "retried", max(ev.attempt, 1)
            job.retried = max(job.retried, attempt)
            run_at = ev.run_at
            error = row.error or None
        elif ev.event in ("completed", "failed", "expired"):
            name, attempt = ev.event, max(ev.attempt, row.attempt, 1)
            error = str(details.get("error") or row.error or "") or None if name != "completed" else None
            reason = details.get("reason") if isinstance(details.get("reason"), str) else None
        elif ev.event == "canceled":
            if row.status != "canceled":
                return None  # a cancel request: the row says whether it took (job_actions.py, jobs.cancel)
            name, attempt = "canceled", max(row.attempt, 1)
            reason = "operator"
        else:
            return None  # `created` (its `queued` or `scheduled` follows), and names jobpulse has no step for
        return self._make(row, job, name, attempt, ev.at, runner=ev.runner, run_at=run_at, error=error,
                          traceback=(row.traceback or None) if name == "failed" else None, reason=reason)  # fmt: skip

    def _make(
        self,
        row: JobRow,
        job: _Job,
        name: str,
        attempt: int,
        ts: float,
        *,
        runner: str | None = None,
        run_at: float | None = None,
        error: str | None = None,
        traceback: str | None = None,
        reason: str | None = None,
    ) -> JobEvent | None:
        if (attempt, name) in job.emitted:
            return None
        job.emitted.add((attempt, name))
        phase = PHASE[name]
        if (attempt, phase) > job.step:
            job.step = (attempt, phase)
        if name == "queued":
            job.queued_at = ts
        started_at = None
        duration = None
        if job.queued_at is None and attempt == 1 and name != "scheduled":
            # Its `queued` is not read yet (publish RPUSHes before it writes the event, so the engine's `running`
            # can come first) or was never watched: the row's creation (or due time) is when it began to wait.
            job.queued_at = row.run_at if row.run_at is not None and row.run_at > row.created else row.created
        if name == "started":
            job.started_at = started_at = ts
            job.runner = runner
            if runner:
                self._hold(runner, row.id)
        elif phase >= 2:
            if phase == 3:  # the end says when it started, for a job whose start jobpulse did not see
                started_at = job.started_at if job.started_at is not None else row.started_at
            began = job.started_at if job.started_at is not None else row.started_at
            if began is not None and name != "canceled":
                duration = max(0.0, ts - began)
            held_by = job.runner or runner
            if held_by:
                self._release(held_by, row.id)
                if name == "failed":
                    self._runner(held_by).failed += 1
        self.seq += 1
        fn = row.func[:MAX_FN] or "?"
        return JobEvent(
            v=1, id=f"mojo:{row.id}:{attempt}:{name}", src=SRC, seq=self.seq, ts=ts, event=name,  # type: ignore[arg-type]
            job=row.id, channel=row.channel, fn=fn, attempt=attempt, cid=row.cid, runner=runner or job.runner,
            max_attempts=max(1, row.max_retries), queued_at=job.queued_at, run_at=run_at, started_at=started_at,
            duration=duration, payload=msgspec.Raw(row.payload) if row.payload else msgspec.Raw(), error=error,
            traceback=traceback, reason=reason,
        )  # fmt: skip

    def _job(self, row: JobRow) -> _Job:
        job = self.jobs.get(row.id)
        if job is None:
            job = self.jobs[row.id] = _Job(row.channel, row.func)
            if len(self.jobs) > self.max_jobs:
                old_id, old = self.jobs.popitem(last=False)
                if old.runner:
                    self._release(old.runner, old_id)
            if len(self.channels) < 10_000:
                self.channels.add(row.channel)
        else:
            self.jobs.move_to_end(row.id)
        return job

    def _hold(self, runner: str, job_id: str) -> None:
        held = self.running.setdefault(runner, {})
        held[job_id] = None
        if len(held) > 10 * MAX_ACTIVE:
            held.pop(next(iter(held)))

    def _release(self, runner: str, job_id: str) -> None:
        held = self.running.get(runner)
        if held is not None:
            held.pop(job_id, None)

    def open_jobs(self, limit: int) -> list[str]:
        """Jobs shown waiting or running, newest first: the rows worth re-reading (a purge writes no event)."""
        out = []
        for job_id in reversed(self.jobs):
            if self.jobs[job_id].step[1] < 3:
                out.append(job_id)
                if len(out) >= limit:
                    break
        return out

    def finished(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.step[1] == 3

    def queued_at(self, job_id: str) -> float | None:
        job = self.jobs.get(job_id)
        return None if job is None else job.queued_at

    # -- runners --------------------------------------------------------------------------------------

    def beats(
        self, docs: Mapping[str, Beat | None], registered: Iterable[str], now: float
    ) -> list[Heartbeat | RunnerStopped | Rejected]:
        """Heartbeats for the hb documents that changed, and stops for runners that left cleanly.

        `docs` maps runner ids to their hb document (None: no key); `registered` is every id in a runner
        registry. A clean stop (`job_engine.py:466-476`) deletes the key and the registry entries at once; a crash
        lets the key expire after 3 intervals while the registry entry stays: that runner is left to turn stale,
        then offline, by its silence, as django-mojo itself judges it.
        """
        out: list[Heartbeat | RunnerStopped | Rejected] = []
        listed = set(registered)
        for runner_id, raw in docs.items():
            if raw is None:
                known = self.runners.get(runner_id)
                if known is None or known.stopped or known.last_ts is None:
                    continue
                if runner_id in listed:
                    known.lost = True
                elif not known.lost and now - known.last_ts <= 3 * self.heartbeat_s:
                    known.stopped = True
                    known.seq += 1
                    reason = "drained" if known.draining else "shutdown"
                    out.append(RunnerStopped(v=1, src=runner_id, seq=known.seq, ts=now, reason=reason))
                continue
            beat = self._beat(runner_id, raw)
            if beat is not None:
                out.append(beat)
        return out

    def _beat(self, runner_id: str, doc: Beat) -> Heartbeat | Rejected | None:
        if doc.error:
            return Rejected("schema", f"mojo heartbeat of {runner_id[:100]}: {doc.error}"[:300])
        ts = doc.ts
        channels = [c for c in doc.channels if c != runner_id]  # its own channel (last) is an address, not work
        runner = self._runner(runner_id)
        if runner.last_ts is not None and ts <= runner.last_ts:
            return None  # the same beat as last time
        runner.last_ts = ts
        runner.draining = doc.draining
        runner.stopped = runner.lost = False
        runner.seq += 1
        for channel in channels:
            if len(self.channels) < 10_000:
                self.channels.add(channel)
        active = []
        for job_id in list(self.running.get(runner_id, {}))[-MAX_ACTIVE:]:
            job = self.jobs.get(job_id)
            if job is not None and job.started_at is not None:
                active.append(ActiveJob(job_id, job.channel, job.fn[:MAX_FN] or "?", job.started_at))
        return Heartbeat(
            v=1, src=runner_id, seq=runner.seq, ts=ts, boot=doc.boot or ts, interval=self.heartbeat_s,
            host=doc.host[:200], state="draining" if runner.draining else "running",
            channels=channels[:1000], concurrency=self.concurrency, active=active, processed=max(0, doc.processed),
            failed=runner.failed,
        )  # fmt: skip

    def _runner(self, runner_id: str) -> _Runner:
        runner = self.runners.get(runner_id)
        if runner is None:
            runner = self.runners[runner_id] = _Runner()
            if len(self.runners) > self.max_runners:
                gone, _ = self.runners.popitem(last=False)
                self.running.pop(gone, None)
        return runner

    # -- channels -------------------------------------------------------------------------------------

    def depth(
        self,
        queued: int,
        processing: list[str],
        processing_count: int,
        scheduled: int,
        paused: bool,
        oldest: str | None,
        now: float,
    ) -> ChannelDepth:
        """One channel's depth. The processing set can keep a finished job's id until the reaper's next pass
        (`job_engine.py:576-586`): ids jobpulse saw finish are not in flight."""
        done = sum(1 for job_id in processing if self.finished(job_id))
        return ChannelDepth(
            queued=queued,
            inflight=max(0, processing_count - done),
            scheduled=scheduled,
            oldest=None if oldest is None else self.queued_at(oldest),
            paused=paused,
            ts=now,
        )


def _row_step(row: JobRow, now: float) -> tuple[str, int, float]:
    """The step a job row is at: (event, attempt in jobpulse's numbering, when)."""
    status = row.status
    if status in TERMINAL:
        return status, max(row.attempt, 1), row.finished_at or row.started_at or row.created
    if status == "running":
        return "started", max(row.attempt, 1), row.started_at or row.created
    # pending: waiting for attempt n + 1 (django-mojo counts attempts as they start)
    if row.run_at is not None and row.run_at > now:
        return "scheduled", row.attempt + 1, row.created
    return "queued", row.attempt + 1, row.created


def scheduler_warning(lock_key: str, holder: str | None, lease: str | None) -> tuple[str, str, str]:
    """(severity, title, detail) of django-mojo's scheduler, or ("", "", "") while it works.

    `holder` is the value of `P:lock:scheduler` (a random id, `SET NX PX 5000`, renewed every 2.5 s); `lease` the
    `lease` of `P:scheduler:progress`, which the leader writes at most every 5 s with `EX 30` as the sha256 of its
    lock value (`scheduler.py:355-366`): a lock without a matching progress key is a leader that holds on and does
    not loop. No clocks are compared: the keys' expiry is Redis' own.
    """
    if holder is None:
        return ("warning", "django-mojo scheduler down",
                f"nobody holds {lock_key}: delayed jobs and retries are not queued")  # fmt: skip
    if lease != hashlib.sha256(holder.encode()).hexdigest():
        detail = f"{lock_key} is held but its leader wrote no progress for 30 s: delayed jobs and retries may wait"
        return ("warning", "django-mojo scheduler not looping", detail)
    return ("", "", "")
