"""The aggregator: owns the live state, feeds it events from the connectors, ticks the clock, persists.

Shell layer. Everything that changes the state goes through `feed` (which calls
the pure `fold`); after each chunk of input, the changed aspects are handed to
the hub once. Each configured source has its connector, with a `SourceFeed` as
its sink that labels its events (server/streams/core/labels.py). Background
work (each connector, clock, persistence) runs in supervised tasks: a crash is
logged loudly and that task alone restarted, and readiness reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aredis

from server.clock import wall
from server.latency import LatencyRing
from server.settings import Settings
from server.streams import sources
from server.streams.connector import Connector
from server.streams.core.events import (
    REJECT_REASONS,
    Depth,
    Event,
    GroupMutes,
    Heartbeat,
    JobEvent,
    LogRecorded,
    Rejected,
    RunnerRemoved,
    RunnerStopped,
    ShellStats,
    Tick,
)
from server.streams.core.labels import relabel
from server.streams.core.reducer import fold, initial_state
from server.streams.hub import Hub
from server.streams.store import Store
from server.tasks import cancel_and_wait

log = logging.getLogger("jobpulse.aggregator")

GC_EVERY_EVICTIONS = 1000
MESSAGES = frozenset({JobEvent, Heartbeat, Depth, RunnerStopped, RunnerRemoved})  # what a source says


class LogRing(logging.Handler):
    """Keeps jobpulse's own recent warnings and errors for the service log page.

    Records may come from any thread; they wait in a bounded deque until the clock loop folds them.
    """

    def __init__(self, cap: int) -> None:
        super().__init__(level=logging.WARNING)
        self.records: deque[LogRecorded] = deque(maxlen=cap)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            self.records.append(LogRecorded(record.created, record.levelname.lower(), record.name, message[:2000]))
        except Exception:  # a handler must never raise into the code that logged
            self.handleError(record)

    def drain(self) -> list[LogRecorded]:
        out = []
        while self.records:
            out.append(self.records.popleft())
        return out


def _day_end(now: float, zone: ZoneInfo) -> float:
    """When the day that contains `now` ends in `zone`, as epoch seconds."""
    local = datetime.fromtimestamp(now, zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    return midnight.timestamp()


def _rss_bytes() -> int:
    """This process's resident memory (Linux: /proc; elsewhere the peak, from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class SourceFeed:
    """One connector's sink: its events, labelled with its source, into the aggregator's fold.

    It counts what its source sent (messages, and rejections by reason) for /metrics' `source` label.
    """

    def __init__(self, aggregator: Aggregator, label: str, prefixed: bool) -> None:
        self.aggregator = aggregator
        self.label = label
        self.prefixed = prefixed
        self.messages = 0
        self.rejected: dict[str, int] = {}

    def feed(self, event: Event, at: float, replay: bool = False) -> None:
        kind = type(event)
        if kind in MESSAGES:
            self.messages += 1
            if self.prefixed:  # one source's messages keep their ids: relabel would hand them back as they are
                event = relabel(event, self.label, True)
        else:
            if kind is Rejected:
                reason = event.reason  # type: ignore[union-attr]
                if reason in REJECT_REASONS:  # a fixed set: labels that hostile input cannot grow
                    self.rejected[reason] = self.rejected.get(reason, 0) + 1
            event = relabel(event, self.label, self.prefixed)
        self.aggregator.feed(event, at, replay)

    def chunk_end(self) -> None:
        self.aggregator.chunk_end(self.label)


class Aggregator:
    """State, intake and persistence of one jobpulse process."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = wall) -> None:
        self.settings = settings
        self.clock = clock
        self.state = initial_state(settings.limits())
        self.hub: Hub | None = None
        self.http_latency: LatencyRing | None = None  # the app's, set where the app is built
        specs = settings.source_specs()
        prefixed = len(specs) > 1
        # label -> connector, in the configured order (one source: labelled by its kind, its ids its own)
        self.feeds = {spec.label: SourceFeed(self, spec.label, prefixed) for spec in specs}
        self.connectors: dict[str, Connector] = {
            spec.label: sources.make(spec, self.feeds[spec.label], clock) for spec in specs
        }
        self.store_client = aredis.Redis.from_url(settings.store, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.store = Store(
            self.store_client,
            settings.prefix,
            settings.series_minutes,
            settings.failures_cap,
            stats_minutes=settings.stats_minutes,
            stats_hours=settings.hours_retention,
        )
        self.restored = False
        self.crashes = 0
        self._pending = 0
        self._gc_mark = 0
        self._gaps = 0  # health.gaps as of the last chunk end
        self.started = clock()
        self.log_ring = LogRing(settings.logs_cap)
        self._stats_at = 0.0
        self._stats_events = 0
        self._stats_flushes = 0
        self._stats_flush_s = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    # -- intake (called by the connector) -------------------------------------------------------

    def feed(self, event: Event, at: float, replay: bool = False) -> None:
        self._pending |= fold(self.state, event, at, replay)

    def chunk_end(self, source: str | None = None) -> None:
        """The end of a chunk of input (from `source`'s connector, or the shell's own): hand the changes on."""
        evicted = self.state.health.evicted_jobs
        if evicted - self._gc_mark >= GC_EVERY_EVICTIONS:
            # A full job table replaces jobs one for one, so the collector's allocation count never trips and
            # young garbage piles up until a single young pass stalls the loop for 40-75 ms. Collect the young
            # generations in small steps instead (docs/benchmarks.md, "young collections").
            self._gc_mark = evicted
            gc.collect(1)
        pending, self._pending = self._pending, 0
        gaps = self.state.health.gaps
        if gaps != self._gaps:
            # The chunk skipped seqs (messages lost): the source whose chunk it was catches up.
            self._gaps = gaps
            for label, connector in self.connectors.items():
                if source is None or label == source:
                    connector.request_catch_up()
        if self.hub is not None and pending:
            self.hub.mark(pending)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore durable state (briefly; it is retried later if the store is down) and start the tasks."""
        logging.getLogger().addHandler(self.log_ring)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                await self._restore()
        self._tasks = [
            *(
                asyncio.create_task(self._supervise(f"source {label}", connector.run), name=f"source-{label}")
                for label, connector in self.connectors.items()
            ),
            asyncio.create_task(self._supervise("clock", self._clock_loop), name="clock"),
            asyncio.create_task(self._supervise("persist", self._persist_loop), name="persist"),
        ]

    async def stop(self) -> None:
        logging.getLogger().removeHandler(self.log_ring)
        await cancel_and_wait(self._tasks)
        if self.restored:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.store.save(self.state)
        for connector in self.connectors.values():
            with contextlib.suppress(Exception):  # one that fails to close must not keep the others open
                await connector.close()
        await self.store_client.aclose()

    @property
    def connected(self) -> bool:
        """Some source is followed (with several, one down is a warning for that source, not a blind console)."""
        return any(connector.connected for connector in self.connectors.values())

    @property
    def source_name(self) -> str:
        """What the pages call the sources: the kind of the one, or each label with its kind."""
        if len(self.connectors) == 1:
            return next(iter(self.connectors.values())).name
        return ", ".join(f"{label} ({c.name})" for label, c in self.connectors.items())

    def source_list(self) -> list[dict[str, str]]:
        """Each source's label and kind when there are several (the pages' source filters); empty with one."""
        if len(self.connectors) < 2:
            return []
        return [{"label": label, "kind": c.name} for label, c in self.connectors.items()]

    @property
    def ready(self) -> bool:
        """Serving the truth: a source is connected and the durable state was restored."""
        return self.connected and self.restored

    async def _restore(self) -> None:
        try:
            restored = await self.store.load(self.clock(), self.state.limits)
        except (aredis.RedisError, OSError) as exc:
            log.warning("store not readable yet (%s); will retry before the first save", exc)
            return
        self.feed(restored, self.clock())
        self.restored = True
        self.chunk_end()
        log.info(
            "restored %d series minutes, %d runners, %d failures",
            len(restored.series),
            len(restored.runners),
            len(restored.failures),
        )

    async def _supervise(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        backoff = 0.5
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.crashes += 1
                log.exception("%s task crashed; restarting in %.1f s", name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _clock_loop(self) -> None:
        interval = self.settings.clock_ms / 1000
        zone = ZoneInfo(self.settings.timezone)
        while True:
            now = self.clock()
            for record in self.log_ring.drain():
                self.feed(record, now)
            self.feed(Tick(now=now, connected=self.connected, day_end=_day_end(now, zone)), now)
            self.feed(ShellStats(at=now, values=self._shell_stats(now)), now)
            self.chunk_end()
            await asyncio.sleep(interval)

    def _shell_stats(self, now: float) -> dict[str, float | int | str]:
        """This process's own numbers for the platform page (the fold cannot read them itself)."""
        health = self.state.health
        events = health.events
        elapsed = max(now - self._stats_at, 1e-6) if self._stats_at else 0.0
        rate = (events - self._stats_events) / elapsed if elapsed else 0.0
        self._stats_at, self._stats_events = now, events
        values: dict[str, float | int | str] = {
            "pid": os.getpid(),
            "started": self.started,
            "events_per_s": round(rate, 1),
            "rss_mb": round(_rss_bytes() / 1_048_576, 1),
            "crashes": self.crashes,
            "source": self.source_name,
        }
        hub = self.hub
        if hub is not None:
            flushes = hub.stats.flushes - self._stats_flushes
            seconds = hub.stats.flush_seconds - self._stats_flush_s
            self._stats_flushes, self._stats_flush_s = hub.stats.flushes, hub.stats.flush_seconds
            values.update(
                epoch=hub.epoch,
                clients=len(hub.clients),
                views=hub.views,
                flush_ms=round(1000 * seconds / flushes, 2) if flushes else 0.0,
                flushes_per_s=round(flushes / elapsed, 1) if elapsed else 0.0,
            )
        if health.last_event is not None:
            values["idle_s"] = round(now - health.last_event, 1)
        # jobpulse's own latency, last five minutes: HTTP answers and pushes to the websockets.
        rings = (("http", self.http_latency), ("push", hub.push_latency if hub is not None else None))
        for name, ring in rings:
            if ring is not None:
                for key, value in ring.summary().items():
                    values[f"{name}_{key}" if key == "n" else f"{name}_{key}_ms"] = value
        return values

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.persist_s)
            try:
                if not self.restored:
                    await self._restore()  # never write before reading, or history would be overwritten
                    continue
                await self.store.save(self.state)
                await self.read_mutes()
            except (aredis.RedisError, OSError) as exc:
                log.warning("could not write to the store: %s", exc)

    async def read_mutes(self) -> None:
        """Fold the failure-group mutes every process shares (an operator's mute in another process shows here
        within one persist round; this process's own at once, server/groups.py)."""
        mutes = await self.store.mutes()
        self.feed(GroupMutes(mutes), self.clock())
        self.chunk_end()
