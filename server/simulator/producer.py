"""The producer: the app servers that publish jobs, at `rate` per second, as the seeded workload dictates.

Arrivals are a Poisson process, whose rate follows the scenario's channel
shares. Each job is announced (`queued`, or `scheduled` with `run_at`) before
it is written, so no runner can report `started` for a job whose `queued` is
not out yet. A channel whose queue already holds
`BACKLOG_CAP` jobs gets no more, so a backed-up or unconsumed channel stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid

from server.simulator.backoff import retry_forever
from server.simulator.context import Context
from server.simulator.outbox import Emitter
from server.simulator.queue import Job

log = logging.getLogger(__name__)

SRC = "sim-producer"
BACKLOG_CAP = 5000
TICK = 0.05
MAX_LAG = 1.0
"""Arrivals more than this many seconds overdue (the loop was blocked by an outage) are skipped."""


def new_job_id() -> str:
    """A fresh job id. Not drawn from the seed: a rerun with the same seed must not reuse ids still in Redis."""
    return f"j_{uuid.uuid4().hex[:14]}"


class Producer:
    """Publishes the seeded stream of jobs."""

    def __init__(self, ctx: Context, seed: int) -> None:
        self._ctx = ctx
        self._emitter = Emitter(SRC, ctx.boot, ctx.outbox)
        self._arrivals = random.Random(f"{seed}:arrivals")
        self._generated = 0
        self.skipped = 0

    def rate(self) -> float:
        """Jobs per second now: the configured rate, as the scenario's channel shares change it."""
        return self._ctx.config.rate * self._ctx.workload.rate_factor()

    async def run(self) -> None:
        """Publish until cancelled."""
        if self._ctx.config.rate <= 0:
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        rate = self.rate()
        next_arrival = loop.time() + (self._arrivals.expovariate(rate) if rate > 0 else 0.0)
        while True:
            await asyncio.sleep(TICK)
            now = loop.time()
            rate = self.rate()
            if rate <= 0:
                next_arrival = now
                continue
            if next_arrival < now - MAX_LAG:
                next_arrival = now
            count = 0
            while next_arrival <= now:
                count += 1
                next_arrival += self._arrivals.expovariate(rate)
            if count:
                await self.publish(count)

    async def publish(self, count: int) -> list[Job]:
        """Publish the next `count` jobs of the sequence (fewer when channels are at their backlog cap)."""
        ctx = self._ctx
        now = time.time()
        jobs: list[Job] = []
        for _ in range(count):
            spec = ctx.workload.next_job()
            ordinal = self._generated
            self._generated += 1
            if ctx.backlog.get(spec.channel, 0) >= BACKLOG_CAP:
                self.skipped += 1
                continue
            scheduled = spec.delay is not None
            job = Job(
                id=new_job_id(),
                channel=spec.channel,
                fn=spec.fn,
                payload=spec.payload,
                cid=spec.cid,
                attempt=1,
                max_attempts=spec.max_attempts,
                status="scheduled" if scheduled else "queued",
                key=f"p{ordinal}",
                queued_at=None if scheduled else now,
                run_at=now + spec.delay if spec.delay is not None else None,
            )
            extra = {"payload": job.payload}
            if scheduled:
                extra["run_at"] = job.run_at
            self._emitter.emit("job", job.event(job.status, **extra))
            jobs.append(job)
        if not jobs:
            return jobs

        async def write() -> None:
            pipe = ctx.redis.pipeline(transaction=False)
            for job in jobs:
                ctx.queue.enqueue(pipe, job)
            await pipe.execute()

        await retry_forever(write, f"publishing {len(jobs)} jobs", log)
        for channel in {job.channel for job in jobs if job.status == "queued"}:
            ctx.notify(channel)
        return jobs
