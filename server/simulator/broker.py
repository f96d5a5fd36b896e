"""The broker: the part of the job system that owns channels and queues (commands sent `to: system`).

It moves due scheduled jobs (retries included) to their queues and announces them
`queued`, reports channel depth on `P:events` and in `P:depth` when it changes
(checked every 250 ms, in full every 2 s), and runs run, purge, clear_stuck,
retry, cancel, pause and resume against the Redis queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.client import Pipeline

from server.simulator.backoff import REDIS_ERRORS, Backoff, retry_forever
from server.simulator.context import Context
from server.simulator.control import BadArgument, Command, Receiver, arg_channel, arg_int, arg_number, arg_str
from server.simulator.outbox import Emitter, encode
from server.simulator.producer import new_job_id
from server.simulator.queue import Depth, Job
from server.simulator.runner import OPERATOR, TAKEN, Runner
from server.simulator.workload import function
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SRC = "sim-broker"
DEPTH_EVERY = 0.25
DEPTH_FULL_EVERY = 2.0
SCHEDULER_EVERY = 0.2
DEFAULT_STUCK_AFTER = 60.0
RETRYABLE = frozenset({"failed", "canceled", "expired"})
SCHEDULED = frozenset({"scheduled"})
# Queue.retry or Queue.run_now: (job id, channel, now) -> (previous status, job), or None for an unknown job.
Requeue = Callable[[str, str, float], Awaitable[tuple[str, Job] | None]]
MAX_PAYLOAD = 16 * 1024
MAX_CHANNELS = 100
"""Channels `run` may create: each one is reported in every full depth report, forever."""


class Broker(Receiver):
    """Scheduler, depth reporter and system command handler of the simulated job system."""

    def __init__(self, ctx: Context, find_runner: Callable[[str], Runner | None]) -> None:
        super().__init__()
        self.src = SRC
        self._ctx = ctx
        self._find_runner = find_runner
        self._emitter = Emitter(SRC, ctx.boot, ctx.outbox)
        self._last: dict[str, Depth] = {}
        self._last_full = 0.0
        self._last_sent = 0.0
        self.handlers = {
            "run": self._run,
            "purge": self._purge,
            "clear_stuck": self._clear_stuck,
            "retry": self._retry,
            "run_now": self._run_now,
            "cancel": self._cancel,
            "pause": self._pause,
            "resume": self._resume,
            "cleanup": self._cleanup,
        }

    async def start(self) -> None:
        """Register the channels, and learn the paused ones and any channel a previous run created."""
        ctx = self._ctx

        async def load() -> tuple[set[str], set[str]]:
            pipe = ctx.redis.pipeline(transaction=False)
            pipe.sadd(ctx.keys.channels, *ctx.channels)
            pipe.smembers(ctx.keys.channels)
            pipe.smembers(ctx.keys.paused)
            _, known, paused = await pipe.execute()
            return set(known), set(paused)

        known, paused = await retry_forever(load, "loading channels", log)
        ctx.channels.extend(sorted(known - set(ctx.channels)))
        ctx.paused.update(paused)

    async def run(self) -> None:
        """Schedule and report depth until cancelled."""
        loops = [
            asyncio.create_task(self._every(SCHEDULER_EVERY, self._move_due, "moving due jobs"), name="sim:scheduler"),
            asyncio.create_task(self._every(DEPTH_EVERY, self.report_depth, "reporting depth"), name="sim:depth"),
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            await cancel_and_wait(loops)

    async def _every(self, period: float, step: Callable[[], Any], what: str) -> None:
        backoff = Backoff()
        while True:
            try:
                await step()
            except REDIS_ERRORS as exc:
                delay = backoff.next()
                log.warning("%s failed (%s: %s); again in %.2fs", what, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            await asyncio.sleep(period)

    async def _move_due(self) -> None:
        ctx = self._ctx
        for job in await ctx.queue.due(ctx.channels, time.time()):
            self._emitter.emit("job", job.event("queued", run_at=job.run_at, payload=job.payload))
            ctx.notify(job.channel)

    async def final_depth(self) -> None:
        """Report every channel once more (after the runners requeued their jobs), keeping the 250 ms spacing."""
        await asyncio.sleep(max(0.0, self._last_sent + DEPTH_EVERY - time.monotonic()))
        await self.report_depth(full=True)

    async def report_depth(self, full: bool = False) -> None:
        """Publish the channels whose depth changed (all of them every `DEPTH_FULL_EVERY` s, or when `full`)."""
        ctx = self._ctx
        depths = await ctx.queue.depth(ctx.channels)
        now = time.time()
        ctx.backlog = {ch: depth.queued for ch, depth in depths.items()}
        # Pauses set by another process show up here too.
        for ch, depth in depths.items():
            if depth.paused:
                ctx.paused.add(ch)
            else:
                ctx.paused.discard(ch)
        full = full or now - self._last_full >= DEPTH_FULL_EVERY
        changed = {ch: depth for ch, depth in depths.items() if full or self._last.get(ch) != depth}
        if not changed:
            return
        self._last.update(changed)
        if full:
            self._last_full = now
        self._emitter.emit("depth", {"channels": {ch: depth.as_dict() for ch, depth in changed.items()}})
        self._last_sent = time.monotonic()
        mapping = {ch: encode(depth.as_dict() | {"ts": now}) for ch, depth in changed.items()}
        key = ctx.keys.depth

        def store(pipe: Pipeline) -> None:
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]

        ctx.outbox.write(store)

    # ---- system commands -------------------------------------------------------------------------

    async def _run(self, command: Command) -> dict[str, Any]:
        args = command.args
        fn = arg_str(args, "fn", required=True, max_len=300)
        assert fn is not None
        channel = arg_channel(args)
        assert channel is not None
        run_at = arg_number(args, "run_at", 0.0) if args.get("run_at") is not None else None
        cid = arg_str(args, "cid", required=False)
        max_attempts = arg_int(args, "max_attempts", function(fn).max_attempts, 1, 100)
        payload = args.get("payload")
        if len(encode(payload)) > MAX_PAYLOAD:
            raise BadArgument(f"payload: larger than {MAX_PAYLOAD} bytes of JSON")
        ctx = self._ctx
        if channel not in ctx.channels and len(ctx.channels) >= MAX_CHANNELS:
            raise BadArgument(f"channel: {channel!r} would be channel {MAX_CHANNELS + 1}; the limit is {MAX_CHANNELS}")
        now = time.time()
        scheduled = run_at is not None and run_at > now
        job_id = new_job_id()
        job = Job(
            id=job_id,
            channel=channel,
            fn=fn,
            payload=payload,
            cid=cid,
            attempt=1,
            max_attempts=max_attempts,
            status="scheduled" if scheduled else "queued",
            key=job_id,
            queued_at=None if scheduled else now,
            run_at=run_at if scheduled else None,
        )
        pipe = ctx.redis.pipeline(transaction=False)
        ctx.queue.enqueue(pipe, job)
        pipe.sadd(ctx.keys.channels, channel)
        await pipe.execute()
        if channel not in ctx.channels:
            ctx.channels.append(channel)
        extra: dict[str, Any] = {"payload": job.payload}
        if scheduled:
            extra["run_at"] = job.run_at
        self._emitter.emit("job", job.event(job.status, **extra))
        ctx.notify(channel)
        return {"job": job.id}

    async def _purge(self, command: Command) -> dict[str, Any]:
        channel = arg_channel(command.args)
        assert channel is not None
        jobs = await self._ctx.queue.purge(channel, time.time())
        for job in jobs:
            self._emitter.emit("job", job.event("canceled", reason="purged", runner=None))
        log.info("purged %d jobs from %s", len(jobs), channel)
        return {"purged": len(jobs)}

    async def _clear_stuck(self, command: Command) -> dict[str, Any]:
        channel = arg_channel(command.args, required=False)
        older_than = arg_number(command.args, "older_than", DEFAULT_STUCK_AFTER)
        channels = [channel] if channel is not None else list(self._ctx.channels)
        requeued, expired = await self._take_back(channels, lambda job, age, silent: age >= older_than or silent)
        return {"cleared": requeued + expired, "requeued": requeued, "expired": expired}

    async def _cleanup(self, command: Command) -> dict[str, Any]:
        """Forget dead runners (no heartbeat key) and take back the jobs they left."""
        runners = command.args.get("runners")
        if not isinstance(runners, list) or not 1 <= len(runners) <= 1000:
            raise BadArgument("runners: a list of 1-1000 runner ids")
        if not all(isinstance(r, str) and 1 <= len(r) <= 200 for r in runners):
            raise BadArgument("runners: each a runner id of 1-200 characters")
        ctx = self._ctx
        pipe = ctx.redis.pipeline(transaction=False)
        for runner_id in runners:
            pipe.exists(ctx.keys.runner(runner_id))
        alive = await pipe.execute()
        dead = {r for r, beating in zip(runners, alive, strict=True) if not beating}
        requeued = expired = 0
        if dead:
            requeued, expired = await self._take_back(list(ctx.channels), lambda job, age, silent: job.runner in dead)
            await ctx.redis.srem(ctx.keys.runners, *dead)
            for runner_id in sorted(dead):
                self._emitter.emit("runner.removed", {"runner": runner_id, "reason": "cleanup"})
            log.info("cleaned up %d dead runners (%d jobs requeued, %d expired)", len(dead), requeued, expired)
        return {"removed": len(dead), "skipped": len(runners) - len(dead), "requeued": requeued, "expired": expired}

    async def _take_back(self, channels: list[str], take: Callable[[Job, float, bool], bool]) -> tuple[int, int]:
        """Requeue (attempts left) or expire the in-flight jobs of `channels` that `take(job, age, silent)` picks."""
        ctx = self._ctx
        now = time.time()
        inflight: list[tuple[str, float]] = []
        for ch in channels:
            inflight += await ctx.queue.inflight(ch)
        jobs = await ctx.queue.get_many([job_id for job_id, _ in inflight])
        holders = sorted({job.runner for job in jobs if job is not None and job.runner})
        beating: dict[str, bool] = {}
        if holders:
            pipe = ctx.redis.pipeline(transaction=False)
            for holder in holders:
                pipe.exists(ctx.keys.runner(holder))
            beating = dict(zip(holders, (bool(n) for n in await pipe.execute()), strict=True))
        requeued = expired = 0
        for (_, started), job in zip(inflight, jobs, strict=True):
            if job is None or job.status != "running" or job.runner is None:
                continue
            age = now - started
            silent = not beating.get(job.runner, False)
            if not take(job, age, silent):
                continue
            why = f"cleared as stuck after {age:.1f}s on {job.runner}" + (" (no heartbeat)" if silent else "")
            run = {"runner": job.runner, "started_at": job.started_at, "duration": round(age, 6), "error": why}
            if job.attempt < job.max_attempts:
                fields: dict[str, Any] = {
                    "status": "queued",
                    "attempt": job.attempt + 1,
                    "queued_at": now,
                    "runner": None,
                    "started_at": None,
                }
                if await ctx.queue.settle(job, job.runner, "queue", fields):
                    requeued += 1
                    self._emitter.emit("job", job.event("retried", reason="stuck", **run))
                    ctx.notify(job.channel)
                else:
                    continue
            else:
                fields = {"status": "expired", "reason": "stuck", "finished_at": now, "error": why}
                if await ctx.queue.settle(job, job.runner, "done", fields):
                    expired += 1
                    self._emitter.emit("job", job.event("expired", reason="stuck", **run))
                else:
                    continue
            # The attempt may still be running (hung) in a live runner: stop that coroutine too.
            runner = self._find_runner(job.runner)
            if runner is not None:
                runner.take_back(job.id, TAKEN)
        if requeued or expired:
            log.info("took back %d jobs (%d requeued, %d expired)", requeued + expired, requeued, expired)
        return requeued, expired

    async def _job(self, command: Command) -> Job:
        job_id = arg_str(command.args, "job", required=True)
        assert job_id is not None
        job = await self._ctx.queue.get(job_id)
        if job is None:
            raise BadArgument(f"job: unknown job {job_id!r} (never existed, or expired after finishing)")
        return job

    async def _requeue(self, command: Command, move: Requeue, allowed: frozenset[str], only: str) -> tuple[str, Job]:
        """Queue the command's job through `move` (retry, run_now) and announce it queued; refuse a job whose status
        is not in `allowed`, saying what `only` may be."""
        job = await self._job(command)
        result = await move(job.id, job.channel, time.time())
        if result is None:
            raise BadArgument(f"job: unknown job {job.id!r}")
        was, job = result
        if was not in allowed:
            raise BadArgument(f"job: is {was}; only {only}")
        self._emitter.emit("job", job.event("queued", payload=job.payload, reason="operator"))
        self._ctx.notify(job.channel)
        return was, job

    async def _retry(self, command: Command) -> dict[str, Any]:
        only = "failed, canceled or expired jobs can be retried"
        _, job = await self._requeue(command, self._ctx.queue.retry, RETRYABLE, only)
        return {"job": job.id, "attempt": job.attempt}

    async def _run_now(self, command: Command) -> dict[str, Any]:
        was, job = await self._requeue(command, self._ctx.queue.run_now, SCHEDULED, "a scheduled job can be run now")
        return {"job": job.id, "was": was}

    async def _cancel(self, command: Command) -> dict[str, Any]:
        job = await self._job(command)
        now = time.time()
        result = await self._ctx.queue.cancel(job.id, job.channel, now)
        if result is None:
            raise BadArgument(f"job: unknown job {job.id!r}")
        was, job = result
        if was in ("queued", "scheduled"):
            self._emitter.emit("job", job.event("canceled", reason="operator", runner=None))
            return {"job": job.id, "was": was}
        if was != "running":
            raise BadArgument(f"job: is {was}; only queued, scheduled or running jobs can be canceled")
        runner = self._find_runner(job.runner) if job.runner else None
        if runner is not None and runner.up and runner.take_back(job.id, OPERATOR):
            return {"job": job.id, "was": was}
        # Its runner is gone or silent, so nobody would abort it: the system cancels it itself.
        fields: dict[str, Any] = {"status": "canceled", "reason": "operator", "finished_at": now}
        if await self._ctx.queue.settle(job, job.runner or "", "done", fields):
            started = job.started_at or now
            self._emitter.emit(
                "job",
                job.event("canceled", reason="operator", runner=job.runner, started_at=started, duration=now - started),
            )
        return {"job": job.id, "was": was}

    async def _pause(self, command: Command) -> dict[str, Any]:
        return await self._set_paused(command, True)

    async def _resume(self, command: Command) -> dict[str, Any]:
        return await self._set_paused(command, False)

    async def _set_paused(self, command: Command, paused: bool) -> dict[str, Any]:
        channel = arg_channel(command.args)
        assert channel is not None
        ctx = self._ctx
        if paused:
            await ctx.redis.sadd(ctx.keys.paused, channel)
            ctx.paused.add(channel)
        else:
            await ctx.redis.srem(ctx.keys.paused, channel)
            ctx.paused.discard(channel)
            ctx.notify(channel)
        log.info("%s channel %s", "paused" if paused else "resumed", channel)
        return {"channel": channel, "paused": paused}
