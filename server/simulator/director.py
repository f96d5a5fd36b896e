"""The director: plays the story scenario on a running fleet, applying each phase as it begins and ends.

The timeline is scenario.py's (pure data); this is the shell that turns its
phases into what the fleet does: a runner goes silent and comes back, a channel's
jobs wait on a stalled dependency, webhook deliveries fail, the legacy app
publishes and a runner is given its channel, a rolling deploy. Every change is
logged at INFO ("scenario: ..."), so the demo's output tells the story.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from server.simulator import scenario
from server.simulator.context import Context
from server.simulator.layout import Layout
from server.simulator.runner import VERSION, Runner
from server.simulator.scenario import Phase
from server.simulator.workload import UNCONSUMED_CHANNEL, Burst
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MIN_SLEEP = 0.01
SILENCE_WAIT = 5.0
"""Real seconds, at most, the silent phase waits for its runner to hold a job (a freeze tells most then)."""
DRAIN_SHARE = 0.5
"""Share of a deploy's step a restarting runner may spend finishing its jobs before it requeues them."""
SWITCH_TIMEOUT = 2.0
"""Real seconds a runner restarting to take or drop webhooks-legacy may spend finishing its jobs."""
POLL = 0.05


_CHANNEL_OF = {scenario.REPORTS_STALL: scenario.STALLED_CHANNEL, scenario.WEBHOOKS_FAILING: scenario.FAILING_CHANNEL}
"""The channel a phase acts on, for the phases that act on one."""


class Director:
    """Plays `timeline` over and over on the fleet's runners, workload and context, until cancelled."""

    def __init__(
        self,
        ctx: Context,
        layout: Layout,
        runners: Mapping[str, Runner],
        cycle: float,
        timeline: tuple[Phase, ...] = scenario.TIMELINE,
    ) -> None:
        self._ctx = ctx
        self._layout = layout
        self._runners = runners
        self._cycle = cycle
        self._timeline = timeline
        self._tasks: dict[str, asyncio.Task[None]] = {}
        """A phase's long action (a silence waiting for a job, a deploy), one per kind at most."""
        self._deploys = 0
        self.started: float | None = None
        """Wall-clock time the timeline started (tests place its phases with it)."""
        self.silent_id = layout.silent
        self.legacy_id = _legacy_runner(layout)

    def prepare(self) -> None:
        """Set the calm state before anything runs: the legacy app publishes nothing yet."""
        self._ctx.workload.set_share(UNCONSUMED_CHANNEL, 0.0)

    async def run(self) -> None:
        """Apply each phase's start and end on time, until cancelled."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.started = time.time()
        log.info("scenario: story, a cycle of incidents every %gs; it starts calm", self._cycle)
        active: tuple[Phase, ...] = ()
        try:
            while True:
                t = loop.time() - began
                now = scenario.active(t, self._cycle, self._timeline)
                ended = [phase for phase in active if phase not in now]
                begun = [phase for phase in now if phase not in active]
                for phase in ended:
                    self._end(phase)
                for phase in begun:
                    self._begin(phase)
                if active and not now:
                    log.info("scenario: calm again: no incident running")
                active = now
                wake = scenario.next_change(t, self._cycle, self._timeline)
                await asyncio.sleep(max(MIN_SLEEP, wake - (loop.time() - began)))
        finally:
            await cancel_and_wait(self._tasks.values())
            # Let attempts waiting on a stall go, so the fleet's stop is not held up by them.
            for event in self._ctx.stalls.values():
                event.set()
            self._ctx.stalls.clear()

    def _length(self, phase: Phase) -> float:
        start, end = scenario.window(phase, self._cycle)
        return end - start

    def _spawn(self, kind: str, coro: Coroutine[Any, Any, None]) -> None:
        previous = self._tasks.get(kind)
        if previous is not None and not previous.done():
            previous.cancel()
        self._tasks[kind] = asyncio.create_task(coro, name=f"sim:scenario:{kind}")

    def _stop_task(self, kind: str) -> bool:
        """Cancel the kind's action if it is still running; True if it was."""
        task = self._tasks.pop(kind, None)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    # ---- phases ----------------------------------------------------------------------------------

    def _skipped(self, phase: Phase, begins: bool) -> bool:
        """A phase on a channel this fleet does not consume (`--channels` left it out) does nothing."""
        channel = _CHANNEL_OF.get(phase.kind)
        missing = channel is not None and channel not in self._layout.consumed
        if missing and begins:
            log.info("scenario: %s skipped: no %s channel in this fleet", phase.kind, channel)
        return missing

    def _begin(self, phase: Phase) -> None:
        kind = phase.kind
        ctx = self._ctx
        if self._skipped(phase, True):
            return
        if kind == scenario.SILENT_RUNNER:
            self._spawn(kind, self._silence(self._length(phase)))
        elif kind == scenario.LEGACY_BACKLOG:
            ctx.workload.set_share(UNCONSUMED_CHANNEL, scenario.LEGACY_SHARE)
            log.info("scenario: %s begins: %s, and no runner consumes it", kind, phase.what)
        elif kind == scenario.LEGACY_RUNNER:
            self._switch_legacy(phase, True)
        elif kind == scenario.REPORTS_STALL:
            ctx.stalls.setdefault(scenario.STALLED_CHANNEL, asyncio.Event())
            ctx.workload.set_share(scenario.STALLED_CHANNEL, scenario.REPORTS_SURGE)
            log.info("scenario: %s begins: %s (report jobs wait on the lock); its queue backs up", kind, phase.what)
        elif kind == scenario.WEBHOOKS_FAILING:
            burst = Burst(scenario.FAIL_RATE, scenario.FAIL_ERROR)
            ctx.workload.set_burst(scenario.FAILING_CHANNEL, burst)
            log.info("scenario: %s begins: %s, %d%% of attempts fail", kind, phase.what, round(100 * burst.rate))
        elif kind == scenario.DEPLOY:
            self._spawn(kind, self._deploy(self._length(phase)))

    def _end(self, phase: Phase) -> None:
        kind = phase.kind
        ctx = self._ctx
        if self._skipped(phase, False):
            return
        if kind == scenario.SILENT_RUNNER:
            self._stop_task(kind)
            self._revive()
        elif kind == scenario.LEGACY_BACKLOG:
            ctx.workload.set_share(UNCONSUMED_CHANNEL, 0.0)
            log.info("scenario: %s ends: the legacy app stops publishing to %s", kind, UNCONSUMED_CHANNEL)
        elif kind == scenario.LEGACY_RUNNER:
            self._switch_legacy(phase, False)
        elif kind == scenario.REPORTS_STALL:
            stall = ctx.stalls.pop(scenario.STALLED_CHANNEL, None)
            if stall is not None:
                stall.set()
            ctx.workload.set_share(scenario.STALLED_CHANNEL, 1.0)
            log.info("scenario: %s ends: the rush is over, the lock released; the backlog drains", kind)
        elif kind == scenario.WEBHOOKS_FAILING:
            ctx.workload.set_burst(scenario.FAILING_CHANNEL, None)
            log.info("scenario: %s ends: webhook deliveries succeed again", kind)
        # A deploy ends on its own: its last restart is timed to its window's end.

    async def _silence(self, length: float) -> None:
        runner = self._runners.get(self.silent_id or "")
        if runner is None:
            log.info("scenario: silent_runner skipped: no runner to silence")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(SILENCE_WAIT, length / 4)
        # A freeze tells most when it strands work, so wait a little for the runner to hold a job.
        while runner.up and not runner.holds() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL / 2)
        if not runner.up:
            log.info("scenario: silent_runner skipped: runner %s is not up", runner.id)
            return
        held = runner.holds()
        runner.go_silent()
        log.info(
            "scenario: silent_runner begins: runner %s stops responding (no heartbeats), holding %d job(s)",
            runner.id,
            held,
        )

    def _revive(self) -> None:
        runner = self._runners.get(self.silent_id or "")
        if runner is None:
            return
        held = runner.orphans()
        if runner.come_back():
            log.info(
                "scenario: silent_runner ends: runner %s is restarted (a new boot) and requeues the %d job(s) it held",
                runner.id,
                held,
            )

    def _switch_legacy(self, phase: Phase, consume: bool) -> None:
        runner = self._runners.get(self.legacy_id or "")
        if runner is None:
            log.info("scenario: %s skipped: no runner to give %s", phase.kind, UNCONSUMED_CHANNEL)
            return
        usual = tuple(ch for ch in runner.spec.channels if ch != UNCONSUMED_CHANNEL)
        channels = (*usual, UNCONSUMED_CHANNEL) if consume else usual
        runner.restart(SWITCH_TIMEOUT, channels=channels)
        if consume:
            log.info("scenario: %s begins: runner %s restarts consuming %s too", phase.kind, runner.id, channels[-1])
        else:
            log.info("scenario: %s ends: runner %s restarts without %s", phase.kind, runner.id, UNCONSUMED_CHANNEL)

    async def _deploy(self, length: float) -> None:
        """Restart the runners that are up one by one, spread over `length` seconds, onto a new version."""
        self._deploys += 1
        base, _, _ = VERSION.rpartition(".")
        version = f"{base}.{self._deploys}"
        order = [runner for runner in self._runners.values() if runner.up]
        log.info("scenario: deploy begins: restarting %d runners one by one (%s)", len(order), version)
        if not order:
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        step = length / len(order)
        restarted = 0
        for index, runner in enumerate(order):
            step_end = began + (index + 1) * step
            boot = runner.boot
            if runner.restart(step * DRAIN_SHARE, version=version):
                restarted += 1
                # The next one waits until this one is back (or its step is over): a rolling restart.
                while not (runner.up and runner.boot != boot) and loop.time() < step_end:  # noqa: ASYNC110
                    await asyncio.sleep(POLL)
            await asyncio.sleep(max(0.0, step_end - loop.time()))
        log.info("scenario: deploy done: %d of %d runners restarted on %s", restarted, len(order), version)


def _legacy_runner(layout: Layout) -> str | None:
    """The runner that is given webhooks-legacy: a general one, not the one that goes silent (unless it is alone)."""
    general = [spec.id for spec in layout.runners if not spec.strict_order and spec.id != layout.silent]
    others = [spec.id for spec in layout.runners if spec.id != layout.silent]
    return next(iter(general or others or [spec.id for spec in layout.runners]), None)
