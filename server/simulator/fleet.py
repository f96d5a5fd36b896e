"""The fleet: starts the broker, the producer, the runners and the control listener, and stops them cleanly.

A clean `stop()` requeues the jobs runners hold, publishes `runner.stopped` for
each live runner, removes their keys, reports depth a last time and flushes the
outbox; no task outlives `run()`. A bug in any part ends `run()` with its
exception; Redis errors are retried inside each part and never end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aredis

from server.simulator.backoff import REDIS_ERRORS
from server.simulator.broker import Broker
from server.simulator.config import FleetConfig
from server.simulator.context import Context
from server.simulator.control import ControlListener, Receiver
from server.simulator.director import Director
from server.simulator.keys import Keys
from server.simulator.layout import Layout, plan
from server.simulator.outbox import Outbox, remove_member
from server.simulator.producer import Producer
from server.simulator.queue import JobQueue
from server.simulator.runner import STOP_GRACE, Runner
from server.simulator.workload import CHANNELS, HANG_RATE, UNCONSUMED_CHANNEL, Workload
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SILENCE_WAIT = 5.0
"""Real seconds the silent runner may wait, past `silent_after`, to be holding a job when it freezes."""
FINAL_FLUSH = 3.0
MAX_HUNG_SHARE = 8
"""At most one in this many job slots of the fleet is held by a randomly hung job."""


class Fleet:
    """A simulated job system: runners, a producer and a broker speaking the jobpulse protocol over Redis."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        channels = (*CHANNELS[: config.channels], UNCONSUMED_CHANNEL)
        story = config.scenario == "story"
        # The story's incidents come and go: a randomly hung job (held until an operator clears it) and a legacy job
        # scheduled far ahead (due long after its runner left) would each raise an alert that never clears.
        self.workload = Workload(
            self.seed,
            channels,
            config.time_scale,
            hang_rate=0.0 if story else HANG_RATE,
            immediate=frozenset({UNCONSUMED_CHANNEL}) if story else frozenset(),
        )
        self.layout: Layout = plan(config, self.seed, self.workload)
        self.runners: dict[str, Runner] = {}
        self.director: Director | None = None
        """Plays the story scenario (None in the steady one)."""
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._finished = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._by_channel: dict[str, list[Runner]] = {}
        self._turn: dict[str, int] = {}

    def stop(self) -> None:
        """Ask `run()` to stop cleanly; safe to call from a signal handler or another thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stop.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stop.set()
        else:
            loop.call_soon_threadsafe(self._stop.set)

    async def wait_ready(self) -> None:
        """Return once every runner's first heartbeat reached Redis and commands are being listened to.

        Raises:
            RuntimeError: `run()` ended before the fleet was ready.
        """
        ready = asyncio.ensure_future(self._ready.wait())
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait({ready, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            finished.cancel()
        if not self._ready.is_set():
            raise RuntimeError("the fleet stopped before it was ready")

    async def run(self) -> None:
        """Run the fleet until `stop()`."""
        if self._loop is not None:
            raise RuntimeError("a Fleet runs once")
        self._loop = asyncio.get_running_loop()
        config = self.config
        client = aredis.Redis.from_url(config.redis_url, decode_responses=True)
        keys = Keys(config.prefix)
        outbox = Outbox(client, channel=keys.events, stream=keys.stream if config.stream else None)
        ctx = Context(
            config=config,
            keys=keys,
            redis=client,
            queue=JobQueue(client, keys),
            outbox=outbox,
            workload=self.workload,
            boot=time.time(),
            channels=list(self.layout.channels),
            notify=self._notify,
            max_hung=max(1, sum(spec.concurrency for spec in self.layout.runners) // MAX_HUNG_SHARE),
            rerouted=self._reroute,
        )
        runners = [Runner(spec, ctx) for spec in self.layout.runners]
        self.runners = {runner.id: runner for runner in runners}
        self._reroute()
        if config.scenario == "story":
            self.director = Director(ctx, self.layout, self.runners, config.cycle)
            self.director.prepare()
        broker = self._broker = Broker(ctx, self.runners.get)
        producer = Producer(ctx, self.seed)
        listener = ControlListener(ctx, self._route)
        log.info(
            "fleet on %s prefix %r: seed %d, %d runners, channels %s, %.1f jobs/s, time scale %g, scenario %s",
            config.redis_url,
            config.prefix,
            self.seed,
            len(runners),
            ", ".join(self.layout.channels),
            config.rate,
            config.time_scale,
            config.scenario,
        )

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
            return asyncio.create_task(coro, name=f"sim:{name}")

        outbox_task = spawn(outbox.run(), "outbox")
        broker_task = spawn(self._run_broker(broker), "broker")
        # These run until stopped; runners and the one-off helpers may also end on their own.
        steady = [spawn(producer.run(), "producer"), spawn(listener.run(), "control")]
        if self.director is not None:
            steady.append(spawn(self.director.run(), "scenario"))
        one_off = [spawn(self._silence(), "silence"), spawn(self._readiness(runners, listener), "ready")]
        runner_tasks = [spawn(runner.run(), runner.id) for runner in runners]
        helpers = steady + one_off
        everything = [outbox_task, broker_task, *helpers, *runner_tasks]
        error: BaseException | None = None
        try:
            error = await self._supervise([outbox_task, broker_task, *steady], [*one_off, *runner_tasks])
            log.info("fleet stopping")
            await cancel_and_wait(helpers)
            for runner in runners:
                runner.stop_with_fleet()
            _, pending = await asyncio.wait(runner_tasks, timeout=STOP_GRACE + 2)
            if pending:
                log.warning("%d runners did not stop in time", len(pending))
            await cancel_and_wait(pending)
            # A silent runner never said goodbye; the simulation is over, so take it off the roster.
            for runner in runners:
                if runner.silent:
                    outbox.write(remove_member(keys.runners, runner.id))
            await cancel_and_wait([broker_task])
            with contextlib.suppress(TimeoutError, *REDIS_ERRORS):
                await asyncio.wait_for(broker.final_depth(), FINAL_FLUSH)
            await outbox.close()
            _, pending = await asyncio.wait([outbox_task], timeout=FINAL_FLUSH)
            if pending:
                log.warning("fleet stopped with unpublished messages")
        finally:
            await cancel_and_wait(everything)
            await client.aclose()
            self._finished.set()
            log.info("fleet stopped")
        if error is not None:
            raise error

    async def _supervise(
        self, parts: list[asyncio.Task[None]], finite: list[asyncio.Task[None]]
    ) -> BaseException | None:
        """Wait for `stop()`, or for a part to fail (returned, to be raised after a clean stop).

        `parts` run until stopped; `finite` ones (runners, which shut down or go silent, and one-off
        helpers) may also end on their own.
        """
        stop = asyncio.create_task(self._stop.wait(), name="sim:stop")
        watched: set[asyncio.Task[Any]] = {stop, *parts, *finite}
        try:
            while True:
                done, watched = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return None
                for task in done:
                    if task.cancelled():
                        return RuntimeError(f"{task.get_name()} was cancelled")
                    if task.exception() is not None:
                        log.error("%s failed; stopping the fleet", task.get_name(), exc_info=task.exception())
                        return task.exception()
                    if task not in finite:
                        return RuntimeError(f"{task.get_name()} ended on its own")
        finally:
            await cancel_and_wait([stop])

    async def _run_broker(self, broker: Broker) -> None:
        await broker.start()
        await broker.run()

    async def _readiness(self, runners: list[Runner], listener: ControlListener) -> None:
        await asyncio.gather(*(runner.ready.wait() for runner in runners), listener.subscribed.wait())
        self._ready.set()
        log.info("fleet ready: %d runners beating", len(runners))

    async def _silence(self) -> None:
        silent_after, silent = self.config.silent_after, self.layout.silent
        if silent_after is None or silent is None or self.director is not None:
            return
        await asyncio.sleep(silent_after)
        runner = self.runners[silent]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SILENCE_WAIT
        # A freeze tells most when it strands work, so wait a little for the runner to hold a job.
        while not (runner.up and runner.holds()) and loop.time() < deadline and not runner.gone:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if runner.up:
            runner.go_silent()

    def _route(self, to: str) -> list[Receiver]:
        if to == "system":
            return [self._broker] if self._broker is not None else []
        if to == "*":
            return [runner for runner in self.runners.values() if runner.up]
        if to.startswith("runner:"):
            runner = self.runners.get(to.removeprefix("runner:"))
            return [runner] if runner is not None and runner.up else []
        return []

    def _reroute(self) -> None:
        """Learn again which runners consume each channel (a runner booted with other channels)."""
        runners = list(self.runners.values())
        channels = {ch for runner in runners for ch in runner.spec.channels} | set(self.layout.channels)
        self._by_channel = {ch: [r for r in runners if ch in r.spec.channels] for ch in channels}

    def _notify(self, channel: str) -> None:
        runners = self._by_channel.get(channel)
        if not runners:
            return
        # Woken first claims first: rotating who is woken first shares the work out, as BRPOP's
        # longest-waiting-client-first rule does in a real job system.
        start = self._turn[channel] = (self._turn.get(channel, -1) + 1) % len(runners)
        for runner in runners[start:] + runners[:start]:
            runner.wake()
