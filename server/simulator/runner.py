"""One simulated runner (a worker process): heartbeats, claiming and running jobs, and its commands.

Each boot has a new `boot` and `seq` from 0. It beats every interval (on `P:events`
and `SET P:runner:<id> ... EX`), claims jobs up to its concurrency, runs and settles
them, and answers ping, drain, undrain, restart, shutdown and logs. Gone silent,
it stops at once without a word and leaves its jobs in flight, as a crash does;
brought back (`come_back`, the story scenario), it boots again and requeues them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from server.simulator.backoff import REDIS_ERRORS, Backoff, retry_forever
from server.simulator.context import Context
from server.simulator.control import BadArgument, Command, Receiver, arg_int, arg_number, arg_str
from server.simulator.layout import RunnerSpec
from server.simulator.outbox import Emitter, remove_member
from server.simulator.queue import Job
from server.simulator.workload import Outcome
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

VERSION = "sim/0.1.0"
LOG_LINES = 500
IDLE_POLL = 0.5
"""Real seconds between claims when nothing woke the runner (jobs queued by another process)."""
CLAIM_BATCH = 8
RESTART_PAUSE = 1.5
"""Modelled seconds a restarting process is down."""
STOP_GRACE = 5.0
"""Real seconds a stopping runner gives its interrupted jobs to be requeued."""
DEFAULT_EXIT_TIMEOUT = 30.0

# What a job's abort future is resolved with: who interrupted the attempt, and so what happens to it.
TAKEN = "taken"  # cleared as stuck by the system: it already moved the job; just stop
OPERATOR = "operator"  # canceled by an operator: the runner marks it canceled
# any other value ("restart", "shutdown"): the runner is going down and requeues the job


@dataclass
class _Slot:
    job: Job
    started: float
    abort: asyncio.Future[str]
    task: asyncio.Task[None] | None = None


class Runner(Receiver):
    """One runner process of the fleet, across its restarts."""

    def __init__(self, spec: RunnerSpec, ctx: Context) -> None:
        super().__init__()
        self.spec = spec
        self.id = spec.id
        self.src = spec.id
        self.ctx = ctx
        self.state = "running"
        self.up = False
        """Booted and answering (between its first heartbeat and `runner.stopped`)."""
        self.silent = False
        self.gone = False
        """Shut down for good."""
        self.boot = 0.0
        self.pid = spec.pid
        self.processed = 0
        self.failed = 0
        self.ready = asyncio.Event()
        """Set once the first heartbeat of the first boot reached Redis."""
        self._emitter: Emitter | None = None
        self._slots: dict[str, _Slot] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._hurry = asyncio.Event()
        self._exit: asyncio.Future[tuple[str, float]] | None = None
        self._fleet_stopping = False
        self._revive = asyncio.Event()
        self._orphans: list[tuple[Job, float]] = []
        """Jobs (and their start) it held when it went silent: requeued when it comes back. At most `concurrency`."""
        self.version = VERSION
        self._next_channels: tuple[str, ...] | None = None
        self._next_version: str | None = None
        self._logs: deque[dict[str, Any]] = deque(maxlen=LOG_LINES)
        self._rotation = 0
        self.handlers = {
            "ping": self._ping,
            "drain": self._drain,
            "undrain": self._undrain,
            "restart": self._restart,
            "shutdown": self._shutdown,
            "logs": self._log_lines,
            "broadcast": self._broadcast,
        }

    # ---- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve boot after boot until shut down or stopped with the fleet (or silenced, unless it comes back)."""
        while True:
            reason = await self._serve()
            if reason == "silent":
                # Frozen until its supervisor brings it back (`come_back`) or the fleet stops.
                await self._revive.wait()
                self._revive.clear()
                if self._fleet_stopping:
                    return
                self.silent = False
                self.pid = 1200 + (self.pid * 7 + 13) % 62000
                continue
            if reason != "restart":
                return
            await asyncio.sleep(self.ctx.scaled(RESTART_PAUSE))
            self.pid = 1200 + (self.pid * 7 + 13) % 62000
            if self._fleet_stopping:
                # It was down (restarting) when the fleet stopped: it just never comes back.
                self.ctx.outbox.write(remove_member(self.ctx.keys.runners, self.id))
                self.gone = True
                return

    def stop_with_fleet(self) -> None:
        """The fleet is stopping: requeue the jobs at once and say `runner.stopped` (a silent one stays silent)."""
        self._fleet_stopping = True
        self._hurry.set()
        self._revive.set()
        self._request_exit("stop", 0.0)

    def go_silent(self) -> None:
        """Stop beating, claiming and answering at once, leaving the jobs in flight (a crash or a freeze)."""
        self._request_exit("silent", 0.0)

    def come_back(self) -> bool:
        """A silent runner's process is restarted: it boots anew and requeues the jobs it held. False if not silent."""
        if not self.silent:
            return False
        self._revive.set()
        return True

    def restart(self, timeout: float, channels: tuple[str, ...] | None = None, version: str | None = None) -> bool:
        """Restart as the `restart` command does; the next boot consumes `channels` and runs `version` if given.

        False if it is not up to restart now (down, silent): the changes still apply at its next boot.
        """
        if channels is not None:
            self._next_channels = channels
        if version is not None:
            self._next_version = version
        if not self.up or self._exit is None or self._exit.done():
            return False
        self._request_exit("restart", timeout)
        return True

    def orphans(self) -> int:
        """How many jobs it left in flight when it went silent (requeued when it comes back)."""
        return len(self._orphans)

    def wake(self) -> None:
        """A job may be waiting in one of this runner's channels."""
        self._wake.set()

    def holds(self) -> int:
        """How many jobs it is running now."""
        return len(self._slots)

    def take_back(self, job_id: str, reason: str) -> bool:
        """Abort the attempt of `job_id` (TAKEN: the system already moved it; OPERATOR: cancel it)."""
        slot = self._slots.get(job_id)
        if slot is None or slot.abort.done():
            return False
        slot.abort.set_result(reason)
        return True

    def _request_exit(self, reason: str, timeout: float) -> None:
        if self._exit is not None and not self._exit.done():
            self._exit.set_result((reason, timeout))

    async def _serve(self) -> str:
        """One boot of the process; returns why it ended."""
        self.boot = max(time.time(), self.boot + 0.001)
        self._apply_pending()
        self._emitter = Emitter(self.id, self.boot, self.ctx.outbox)
        self.processed = self.failed = 0
        self.state = "running"
        self._exit = asyncio.get_running_loop().create_future()
        if self._fleet_stopping:
            return "stop"
        self.up = True
        channels = ", ".join(self.spec.channels)
        self._log("info", f"booted: pid {self.pid}, channels {channels}, concurrency {self.spec.concurrency}")
        self._adopt_orphans()
        beats = asyncio.create_task(self._heartbeats(), name=f"{self.id}:heartbeats")
        claims = asyncio.create_task(self._claims(), name=f"{self.id}:claims")
        try:
            reason, timeout = await self._exit
            if reason == "silent":
                self.silent = True
                self.up = False
                self._orphans = [(slot.job, slot.started) for slot in self._slots.values()]
                log.warning("runner %s went silent holding %d job(s)", self.id, len(self._slots))
                self._log("error", f"stopped responding, holding {len(self._slots)} job(s)")
                # Cancelled, not settled: in Redis its jobs stay in flight, held by a runner that is gone. Claims go
                # first: a claim cut short still starts the jobs it took, and those slots must be cancelled too.
                await cancel_and_wait([beats, claims])
                await cancel_and_wait([slot.task for slot in self._slots.values() if slot.task is not None])
                return "silent"
            await cancel_and_wait([claims])
            if reason != "stop":
                self.state = "draining"
                self._log("info", f"{reason}: finishing {len(self._slots)} jobs (timeout {timeout:g}s)")
                self._beat()
                await self._wait_idle(timeout)
            await self._interrupt_all("shutdown" if reason == "stop" else reason)
            await cancel_and_wait([beats])
            self._stopped("shutdown" if reason == "stop" else reason)
            return reason
        finally:
            self.up = False
            await cancel_and_wait([beats, claims, *(slot.task for slot in self._slots.values())])
            self._slots.clear()

    def _apply_pending(self) -> None:
        """Changes a restart asked for (a deploy's version, other channels) take effect at boot."""
        if self._next_version is not None:
            self.version, self._next_version = self._next_version, None
        if self._next_channels is not None:
            channels, self._next_channels = self._next_channels, None
            if channels != self.spec.channels:
                self.spec = dataclasses.replace(self.spec, channels=channels)
                self.ctx.rerouted()

    def _adopt_orphans(self) -> None:
        """Back from silence: the jobs the last boot left in flight are requeued, as a restart requeues its own.

        Each becomes a slot whose attempt is already interrupted, so `_work` requeues it (fenced on runner and
        attempt: one the system took back meanwhile is left alone) and a stop meanwhile waits for it.
        """
        orphans, self._orphans = self._orphans, []
        if orphans:
            self._log("warning", f"found {len(orphans)} job(s) left in flight by the previous boot; requeueing them")
        for job, started in orphans:
            slot = _Slot(job, started, asyncio.get_running_loop().create_future())
            slot.abort.set_result("restart")
            self._slots[job.id] = slot
            self._idle.clear()
            assert self._emitter is not None
            slot.task = asyncio.create_task(self._work(slot, self._emitter), name=f"{self.id}:{job.id}")
            slot.task.add_done_callback(functools.partial(self._release, job.id))

    async def _wait_idle(self, limit: float) -> None:
        """Wait for the running jobs to finish, at most `limit` seconds (less if the whole fleet stops)."""
        if not self._slots:
            return
        self._idle.clear()
        waits = [asyncio.create_task(self._idle.wait()), asyncio.create_task(self._hurry.wait())]
        try:
            await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waits)
        if self._slots:
            self._log("warning", f"gave up waiting for {len(self._slots)} jobs; requeueing them")

    async def _interrupt_all(self, reason: str) -> None:
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        for slot in self._slots.values():
            if not slot.abort.done():
                slot.abort.set_result(reason)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
            if pending:
                log.warning("runner %s: %d jobs not requeued within %gs", self.id, len(pending), STOP_GRACE)
                await cancel_and_wait(pending)

    def _stopped(self, reason: str) -> None:
        assert self._emitter is not None
        self._emitter.emit("runner.stopped", {"reason": reason})
        self._log("info", f"stopped ({reason})")
        key, runners, runner_id = self.ctx.keys.runner(self.id), self.ctx.keys.runners, self.id
        forget = reason != "restart"
        if forget:
            self.gone = True

        def cleanup(pipe: Pipeline) -> None:
            pipe.delete(key)
            if forget:
                pipe.srem(runners, runner_id)

        self.ctx.outbox.write(cleanup)

    # ---- heartbeats ------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            self._beat()
            if not self.ready.is_set():
                await self.ctx.outbox.sync()
                self.ready.set()
            await asyncio.sleep(self.ctx.config.heartbeat_interval)

    def reported_state(self) -> str:
        """`state` as the heartbeat reports it: `paused` when every channel it consumes is paused."""
        if self.state == "running" and all(ch in self.ctx.paused for ch in self.spec.channels):
            return "paused"
        return self.state

    def _beat(self) -> None:
        if self._emitter is None:
            return
        active = [
            {"job": slot.job.id, "channel": slot.job.channel, "fn": slot.job.fn, "started": slot.started}
            for slot in list(self._slots.values())[:100]
        ]
        data = self._emitter.emit(
            "heartbeat",
            {
                "boot": self.boot,
                "interval": self.ctx.config.heartbeat_interval,
                "host": self.spec.host,
                "region": self.spec.region,
                "pid": self.pid,
                "version": self.version,
                "state": self.reported_state(),
                "channels": list(self.spec.channels),
                "concurrency": self.spec.concurrency,
                "active": active,
                "processed": self.processed,
                "failed": self.failed,
            },
        )
        key, runners, runner_id, ttl = self.ctx.keys.runner(self.id), self.ctx.keys.runners, self.id, self.ctx.ttl

        def store(pipe: Pipeline) -> None:
            pipe.set(key, data, ex=ttl)
            # Every beat, not only the first: a runner an operator cleaned up while it was alive comes back.
            pipe.sadd(runners, runner_id)

        self.ctx.outbox.write(store)

    # ---- claiming and running jobs ---------------------------------------------------------------

    async def _claims(self) -> None:
        backoff = Backoff()
        while True:
            free = self.spec.concurrency - len(self._slots)
            if self.state != "running" or free <= 0:
                self._wake.clear()
                await self._sleep(IDLE_POLL)
                continue
            # Cleared before the claim, so a job queued while the claim is in flight wakes the next one.
            self._wake.clear()
            try:
                jobs = await self._claim(min(free, CLAIM_BATCH))
            except REDIS_ERRORS as exc:
                delay = backoff.next()
                log.warning("runner %s: claim failed (%s: %s); again in %.2fs", self.id, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            for job in jobs:
                self._start(job)
            if not jobs:
                await self._sleep(IDLE_POLL)

    async def _claim(self, count: int) -> list[Job]:
        """Claim up to `count` jobs; a stop that lands mid-claim still gets the jobs the script took, as slots."""
        claim = asyncio.ensure_future(self.ctx.queue.claim(self.id, self._order(), count, time.time()))
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            # The script may already have moved jobs into this runner's in-flight set. Cancelling here would orphan
            # them there (a stopped fleet reporting jobs in flight forever), so wait for the answer and hold them:
            # the stop that cancelled us interrupts and requeues every slot.
            while not claim.done():  # cancel_and_wait cancels again if we take long; the claim still finishes
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([claim])
            if not claim.cancelled() and claim.exception() is None:
                for job in claim.result():
                    self._start(job)
            raise

    async def _sleep(self, limit: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), limit)

    def _order(self) -> tuple[str, ...]:
        channels = self.spec.channels
        if self.spec.strict_order:
            return channels
        # Rotating the first channel keeps one busy channel from starving the others.
        self._rotation = (self._rotation + 1) % len(channels)
        return channels[self._rotation :] + channels[: self._rotation]

    def _start(self, job: Job) -> None:
        assert self._emitter is not None
        started = job.started_at or time.time()
        slot = _Slot(job, started, asyncio.get_running_loop().create_future())
        self._slots[job.id] = slot
        self._idle.clear()
        self._emitter.emit("job", job.event("started", runner=self.id, started_at=started))
        self._log("info", f"started {job.fn} {job.id} (attempt {job.attempt}/{job.max_attempts})")
        slot.task = asyncio.create_task(self._work(slot, self._emitter), name=f"{self.id}:{job.id}")
        slot.task.add_done_callback(functools.partial(self._release, job.id))

    def _release(self, job_id: str, task: asyncio.Task[None]) -> None:
        slot = self._slots.get(job_id)
        if slot is not None and slot.task is task:
            del self._slots[job_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("runner %s: job %s crashed", self.id, job_id, exc_info=task.exception())
        self._wake.set()
        if not self._slots:
            self._idle.set()
            if self.state == "draining" and self._exit is not None and not self._exit.done():
                self.state = "drained"
                self._log("info", "drained")
                self._beat()

    async def _work(self, slot: _Slot, emitter: Emitter) -> None:
        job = slot.job
        outcome = self.ctx.workload.outcome(job.key, job.fn, job.attempt, job.payload, job.channel)
        hung = self.ctx.hung
        # Hung jobs hold slots until cleared; past a few, the fleet would stall, so more hangs run normally. An attempt
        # interrupted before it began (one a silent boot left behind) does not run at all.
        hang = outcome.hang and (outcome.forced or len(hung) < self.ctx.max_hung) and not slot.abort.done()
        if hang:
            hung.add(job.id)
            self._log("warning", f"{job.fn} {job.id} is not making progress")
        try:
            reason = await self._attempt(slot, None if hang else outcome.duration)
        finally:
            hung.discard(job.id)
        finished = time.time()
        duration = round(max(0.0, finished - slot.started), 6)
        run = {"runner": self.id, "started_at": slot.started, "duration": duration}
        if reason is None:
            await self._finish(job, outcome, finished, run, emitter)
        elif reason == TAKEN:
            self._log("warning", f"{job.id} was taken back by the system; abandoning attempt {job.attempt}")
        elif reason == OPERATOR:
            fields = {"status": "canceled", "reason": "operator", "finished_at": finished}
            if await self._settle(job, "done", fields):
                self._log("warning", f"canceled {job.fn} {job.id} by an operator")
                emitter.emit("job", job.event("canceled", reason="operator", **run))
        else:
            # Going down: the attempt did not fail, so it does not use up the job's budget of attempts.
            nxt = job.attempt + 1
            budget = max(job.max_attempts, nxt)
            fields = {
                "status": "queued",
                "attempt": nxt,
                "max_attempts": budget,
                "queued_at": finished,
                "runner": None,
                "started_at": None,
            }
            if await self._settle(job, "queue", fields):
                self._log("warning", f"requeued {job.fn} {job.id} as attempt {nxt} ({reason})")
                emitter.emit("job", job.event("retried", reason=reason, **run) | {"max_attempts": budget})
                self.ctx.notify(job.channel)

    async def _attempt(self, slot: _Slot, duration: float | None) -> str | None:
        """Run the attempt for `duration` (None: until aborted); None when it ran its course, else who aborted it.

        While its channel is stalled (a locked database) the attempt waits for the release, and that wait counts
        towards its duration: most released attempts finish at once, none is held much longer than the stall.
        """
        stall = self.ctx.stalls.get(slot.job.channel)
        if stall is not None and duration is not None and not slot.abort.done():
            loop = asyncio.get_running_loop()
            began = loop.time()
            released = asyncio.ensure_future(stall.wait())
            waits: set[asyncio.Future[Any]] = {released, slot.abort}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait([released])
            duration = max(0.0, duration - (loop.time() - began))
        try:
            return await asyncio.wait_for(slot.abort, duration)
        except TimeoutError:
            return None

    async def _finish(self, job: Job, outcome: Outcome, finished: float, run: dict[str, Any], emitter: Emitter) -> None:
        failure = outcome.failure
        if failure is None:
            fields: dict[str, Any] = {"status": "completed", "finished_at": finished, "duration": run["duration"]}
            if await self._settle(job, "done", fields):
                self.processed += 1
                self._log("info", f"completed {job.fn} {job.id} in {run['duration']:.3f}s")
                emitter.emit("job", job.event("completed", **run))
            return
        error = {"error": failure.error, "traceback": failure.traceback}
        if failure.retryable and job.attempt < job.max_attempts:
            run_at = finished + outcome.backoff
            fields = {
                "status": "scheduled",
                "attempt": job.attempt + 1,
                "run_at": run_at,
                "error": failure.error,
                "runner": None,
                "started_at": None,
            }
            if await self._settle(job, "schedule", fields, run_at):
                self.processed += 1
                self.failed += 1
                self._log(
                    "warning",
                    f"{job.fn} {job.id} attempt {job.attempt} failed: {failure.error}; retry in {outcome.backoff:.1f}s",
                )
                emitter.emit("job", job.event("retried", run_at=run_at, **run, **error))
            return
        fields = {"status": "failed", "finished_at": finished, "duration": run["duration"], "error": failure.error}
        if await self._settle(job, "done", fields):
            self.processed += 1
            self.failed += 1
            self._log("error", f"{job.fn} {job.id} failed for good after {job.attempt} attempts: {failure.error}")
            emitter.emit("job", job.event("failed", **run, **error))

    async def _settle(self, job: Job, mode: str, fields: dict[str, Any], run_at: float = 0.0) -> bool:
        async def settle() -> bool:
            return await self.ctx.queue.settle(job, self.id, mode, fields, run_at)

        settled = await retry_forever(settle, f"runner {self.id}: settle {job.id}", log)
        if not settled:
            self._log("warning", f"{job.id} is no longer ours (cleared or canceled); dropping attempt {job.attempt}")
        return settled

    # ---- commands --------------------------------------------------------------------------------

    async def _ping(self, command: Command) -> dict[str, Any]:
        return {"state": self.reported_state(), "active": len(self._slots), "boot": self.boot}

    async def _drain(self, command: Command) -> dict[str, Any]:
        if self.state == "running":
            self.state = "draining"
            self._log("info", f"draining: finishing {len(self._slots)} jobs, taking no more")
            self._beat()
            if not self._slots:
                self.state = "drained"
                self._log("info", "drained")
                self._beat()
        return {"state": self.state, "active": len(self._slots)}

    async def _undrain(self, command: Command) -> dict[str, Any]:
        if self.state in ("draining", "drained") and self._exit is not None and not self._exit.done():
            self.state = "running"
            self._log("info", "taking jobs again")
            self._beat()
            self._wake.set()
        return {"state": self.reported_state()}

    async def _restart(self, command: Command) -> dict[str, Any]:
        timeout = arg_number(command.args, "timeout", DEFAULT_EXIT_TIMEOUT)
        self._request_exit("restart", timeout)
        return {"state": "restarting"}

    async def _shutdown(self, command: Command) -> dict[str, Any]:
        timeout = arg_number(command.args, "timeout", DEFAULT_EXIT_TIMEOUT)
        self._request_exit("shutdown", timeout)
        return {"state": "stopping"}

    async def _broadcast(self, command: Command) -> dict[str, Any]:
        """A message for the log, and config keys this runner knows (concurrency); others are ignored."""
        message = arg_str(command.args, "message", required=False, max_len=500)
        config = command.args.get("config", {})
        if not isinstance(config, dict):
            raise BadArgument("config: must be an object")
        applied, ignored = [], []
        for key in config:
            if key == "concurrency":
                concurrency = arg_int(config, "concurrency", None, 1, 1000)
                self.spec = dataclasses.replace(self.spec, concurrency=concurrency)
                self._wake.set()
                applied.append(key)
            else:
                ignored.append(str(key)[:64])
        if message:
            self._log("info", f"broadcast: {message}")
        if applied:
            self._log("info", f"config: concurrency is now {self.spec.concurrency}")
            self._beat()
        return {"applied": applied, "ignored": ignored}

    async def _log_lines(self, command: Command) -> dict[str, Any]:
        lines = arg_int(command.args, "lines", 100, 1, LOG_LINES)
        return {"lines": list(self._logs)[-lines:]}

    def _log(self, level: str, msg: str) -> None:
        self._logs.append({"ts": time.time(), "level": level, "msg": msg})
