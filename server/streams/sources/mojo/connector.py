"""The mojo connector: a django-mojo deployment, read live from its Redis and its Postgres without changing it.

Shell layer: it alone knows django-mojo's layout (docs/mojo.md, with citations).
django-mojo publishes no job events and writes no NOTIFY, so this connector
polls, cheaply and incrementally:

- Redis, every `JOBPULSE_MOJO_REDIS_POLL_S`: each channel's runner registry,
  queue list, processing set, schedule sets and pause flag in one pipeline, then
  the hb documents of every runner named; plus the scheduler's leader lock.
- Postgres, every `JOBPULSE_MOJO_POLL_S`: jobs_jobevent rows after the highest
  id read (a primary-key range), the ids below it still missing (they commit
  out of order; given up after `JOBPULSE_MOJO_LOOKBACK_S`), and those events'
  job rows by primary key; every `JOBPULSE_MOJO_ROWS_S` the rows of jobs shown
  waiting or running (django-mojo's own purge changes rows without events).

It stays subscribed to django-mojo's broadcast channel, for one reason: the
subscription's PING deadline notices a Redis that died or stalled within a
second, with the same backoff and reconnect as the other connectors
(`stay_subscribed`). Postgres has its own reconnect; while either is down the
source shows as down, naming which. The pure `MojoTranslator` turns what was
read into jobpulse's events.

Actions go through django-mojo's control channels, its reaper and its publish
contract (`server.streams.sources.mojo.actions`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis.asyncio as aredis

from server.actions import SPECS, Args, Performed
from server.routing import Known
from server.settings import Settings
from server.streams.connector import CommandError, Sink, Status, one_at_a_time
from server.streams.core.events import Reconciled, Restored, SourceWarning, count
from server.streams.sources.mojo.actions import UNSUPPORTED, WRITE_ACTIONS, MojoActions
from server.streams.sources.mojo.db import NO_PSYCOPG, MojoDatabase
from server.streams.sources.mojo.events import Beat, IdCursor, MojoTranslator, scheduler_warning
from server.streams.sources.mojo.keys import MojoKeys
from server.streams.sources.subscription import stay_subscribed
from server.streams.sources.times import epoch

log = logging.getLogger("jobpulse.mojo")

EVENT_BATCH = 2_000  # event rows read per query
MAX_BATCHES = 10  # queries per poll: a backlog is caught up in steps, the loop stays responsive
OPEN_ROWS = 5_000  # rows of open jobs re-read per pass
RECENT_S = 3_600.0  # at connect, finished jobs created this recently are shown
RECENT_ROWS = 2_000
PROCESSING_READ = 1_000  # processing ids read per channel to leave out finished ones; past that, ZCARD alone
DISCOVER_EVERY = 10  # Redis polls between SCANs for channels nobody named yet
LIVE_S = 60.0  # an event younger than this is counted when it is read; an older one, when it happened
HISTORY_HOURS = 72  # django-mojo's hour counters expire after 3 days (apps/metrics/utils.py:18-25)
# jobpulse's hour columns (published, completed, failed, retried) and the slug and clock django-mojo counts each with.
HISTORY_SLUGS = (("jobs.published", "utc"), ("jobs.completed", "local"), ("jobs.failed", "local"),
                 ("jobs.retried", "local"))  # fmt: skip


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _counter(raw: bytes | str | None) -> int:
    """One of django-mojo's hour counters; a value no counter can hold (out of range, not a number) counts 0."""
    try:
        return count(_text(raw)) if raw else 0
    except ValueError:
        log.warning("an hour counter of django-mojo holds %r, not a count: read as 0", raw[:40] if raw else raw)
        return 0


def parse_beat(raw: bytes | str) -> Beat:
    """One hb document (`job_engine.py:617-629`), times as epoch seconds."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            return Beat(error="not a JSON object")
        ts = epoch(doc.get("last_heartbeat"))
        if ts is None:
            return Beat(error="no readable last_heartbeat")
        listed = doc.get("channels")
        channels = tuple(c for c in listed if isinstance(c, str)) if isinstance(listed, list) else ()
        return Beat(
            ts=ts, boot=epoch(doc.get("started")) or ts, host=str(doc.get("hostname") or ""), channels=channels,
            processed=count(doc.get("jobs_processed") or 0, "jobs_processed"), draining=bool(doc.get("draining")),
        )  # fmt: skip
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        return Beat(error=str(exc)[:200])


class MojoConnector:
    """Reads a django-mojo deployment's runners, channels and jobs; delivers events to a sink."""

    name = "mojo"
    unsupported: dict[str, str]

    def __init__(self, settings: Settings, sink: Sink, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.url = settings.mojo_redis_url or settings.redis_url
        self.keys = MojoKeys(settings.mojo_prefix, settings.mojo_pubsub_prefix)
        self.translator = MojoTranslator(
            settings.mojo_heartbeat_s, settings.mojo_concurrency, settings.max_jobs, settings.max_runners
        )
        self.cursor = IdCursor(settings.mojo_lookback_s)
        self.redis = aredis.Redis.from_url(self.url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.db = MojoDatabase(settings.mojo_database_url, max(settings.source_timeout_s, 1.0))
        self.configured = tuple(c.strip() for c in settings.mojo_channels.split(",") if c.strip())
        self.status = Status(sink, clock)
        self.redis_up = False
        self.db_up = False
        self.db_error = "not connected yet"
        self.redis_error = ""
        self._scheduler_said: tuple[str, str] | None = None
        self._polls = 0
        self._found: set[str] = set()  # channels found by SCAN
        self._seeded = False
        self._history_read = False
        self.actions: MojoActions | None = None
        try:
            import psycopg  # noqa: F401  # the source cannot work without it: say so at start, not at first poll
        except ImportError:
            self.psycopg = False
            self.unsupported = dict.fromkeys(SPECS, NO_PSYCOPG)
        else:
            self.psycopg = True
            self.unsupported = dict(UNSUPPORTED)
            if not settings.mojo_write_database_url:
                why = "needs JOBPULSE_MOJO_WRITE_DATABASE_URL: django-mojo does this by writing jobs_job/jobs_jobevent"
                self.unsupported.update(dict.fromkeys(WRITE_ACTIONS, why))

    # -- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.settings
        await stay_subscribed(
            self.url,
            channels=[self.keys.broadcast],
            on_message=self._on_broadcast,
            on_chunk_end=self.sink.chunk_end,
            on_status=self._set_redis,
            follow=self._follow,
            client_name="jobpulse-mojo",
            ping_s=s.source_ping_s,
            timeout_s=s.source_timeout_s,
            backoff_max_s=s.source_backoff_max_s,
        )

    def _on_broadcast(self, channel: bytes, data: bytes) -> None:
        # Commands other consoles send to every engine (status, shutdown): the runners' beats show their effect.
        log.debug("django-mojo broadcast: %s", data[:200])

    def request_catch_up(self) -> None:
        """Nothing to replay: the cursor and the polls are the catch-up."""

    async def _follow(self, first: bool) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._poll_redis())
            group.create_task(self._poll_db())

    def _set_redis(self, up: bool, error: str = "") -> None:
        self.redis_up, self.redis_error = up, error
        self._report()

    def _set_db(self, up: bool, error: str = "") -> None:
        if (up, error) != (self.db_up, self.db_error):
            self.db_up, self.db_error = up, error
            self._report()

    def _report(self) -> None:
        parts = {
            "Redis": "" if self.redis_up else (self.redis_error or "not connected")[:300],
            "Postgres": "" if self.db_up else (self.db_error or "not connected")[:300],
        }
        error = "; ".join(f"{name}: {why}" for name, why in parts.items() if why)
        self.status(not error, error, parts)

    @property
    def connected(self) -> bool:
        return self.status.connected

    # -- Redis: runners, depths, the scheduler ----------------------------------------------------------

    async def _poll_redis(self) -> None:
        while True:
            try:
                await self._read_redis()
            except (aredis.RedisError, OSError) as exc:
                log.warning("could not read django-mojo's Redis: %s", exc)
            await asyncio.sleep(self.settings.mojo_redis_poll_s)

    async def _channels(self) -> list[str]:
        if self._polls % DISCOVER_EVERY == 0:
            found = set()
            for pattern, head in ((self.keys.queue_pattern, self.keys.queue("")),
                                  (self.keys.registry_pattern, self.keys.runner_registry(""))):  # fmt: skip
                async for key in self.redis.scan_iter(match=pattern, count=1000):
                    found.add(_text(key)[len(head) :])
                    if len(found) >= self.settings.max_channels:
                        break
            found.update(_text(m) for m in await self.redis.smembers(self.keys.sched_registry))
            self._found = found
        self._polls += 1
        runner_ids = set(self.translator.runners)
        names = (set(self.configured) | self._found | self.translator.channels) - runner_ids
        return sorted(c for c in names if c)[: self.settings.max_channels]

    async def _read_redis(self) -> None:
        if not self._history_read:
            await self._history()
            self._history_read = True
        keys = self.keys
        channels = await self._channels()
        pipe = self.redis.pipeline(transaction=False)
        for ch in channels:
            pipe.zrange(keys.runner_registry(ch), 0, -1)
            pipe.llen(keys.queue(ch))
            pipe.zcard(keys.processing(ch))
            pipe.zrange(keys.processing(ch), 0, PROCESSING_READ - 1)
            pipe.zcard(keys.sched(ch))
            pipe.zcard(keys.sched_broadcast(ch))
            pipe.exists(keys.paused(ch))
            pipe.lindex(keys.queue(ch), 0)  # the list is LIFO at its tail: index 0 waited longest
        pipe.get(keys.scheduler_lock)
        pipe.get(keys.scheduler_progress)
        started = time.perf_counter()
        values = await pipe.execute()
        rtt = time.perf_counter() - started
        registered: set[str] = set()
        depths = {}
        now = self.clock()
        for i, ch in enumerate(channels):
            members, queued, inflight, processing, sched, sched_b, paused, oldest = values[i * 8 : i * 8 + 8]
            registered.update(m.decode(errors="replace") for m in members)
            depths[ch] = self.translator.depth(
                int(queued), [p.decode() for p in processing], int(inflight), int(sched) + int(sched_b),
                bool(paused), oldest.decode() if oldest else None, now,
            )  # fmt: skip
        # Each engine also consumes a channel named after itself (its registry lists only it): an address for
        # broadcast jobs, shown on its card, not as a channel of its own.
        runner_ids = registered | set(self.translator.runners)
        for runner_id in runner_ids:
            depths.pop(runner_id, None)
        self._scheduler(values[-2], values[-1])
        ids = sorted(runner_ids)[: self.settings.max_runners]
        docs: dict[str, Beat | None] = {}
        if ids:
            raws = await self.redis.mget([keys.runner_hb(r) for r in ids])
            docs = {r: None if raw is None else parse_beat(raw) for r, raw in zip(ids, raws, strict=True)}
        now = self.clock()
        for event in self.translator.beats(docs, registered, now):
            self.sink.feed(event, now)
        # Registered runners show even before their first beat is read; a runner that left the registries stays
        # (stale, then offline) rather than vanishing: `complete` stays False.
        self.sink.feed(Reconciled(at=now, registered=tuple(sorted(registered)), heartbeats=(), depth=depths,
                                  rtt=rtt), now)  # fmt: skip
        self.sink.chunk_end()

    def _scheduler(self, lock: bytes | None, progress: bytes | None) -> None:
        """Say when django-mojo's scheduler is missing or stuck: a hot issue (`source_warning:scheduler`)."""
        holder = _text(lock) if lock else None
        lease = None
        if progress:
            try:
                doc = json.loads(progress)
                lease = str(doc.get("lease")) if isinstance(doc, dict) else None
            except (ValueError, UnicodeDecodeError):
                lease = None
        severity, title, detail = scheduler_warning(self.keys.scheduler_lock, holder, lease)
        if (severity, detail) == self._scheduler_said:
            return
        self._scheduler_said = (severity, detail)
        if severity:
            log.warning("%s: %s", title, detail)
        elif holder is not None:
            log.info("django-mojo's scheduler is at work (lock held by %s)", holder)
        now = self.clock()
        self.sink.feed(SourceWarning("scheduler", now, severity, title, detail), now)

    # -- Postgres: job events and rows -----------------------------------------------------------------

    async def _poll_db(self) -> None:
        if not self.psycopg:
            self._set_db(False, NO_PSYCOPG)
            return
        backoff = 0.25
        rows_due = 0.0
        while True:
            try:
                await self.db.connect()
                if not self._seeded:
                    await self._seed()
                self._set_db(True)
                backoff = 0.25
                while True:
                    await self._read_events()
                    if time.monotonic() >= rows_due:
                        await self._recheck_rows()
                        rows_due = time.monotonic() + self.settings.mojo_rows_s
                    await asyncio.sleep(self.settings.mojo_poll_s)
            except Exception as exc:  # psycopg's errors, OSError, a stall: all mean "not reading" (never cancellation)
                log.warning("could not read django-mojo's Postgres: %s: %s", type(exc).__name__, exc)
                self._set_db(False, f"{type(exc).__name__}: {exc}"[:300])
                await self.db.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.source_backoff_max_s)

    async def _history(self) -> None:
        """Hours before jobpulse watched, from django-mojo's own counters: the hours chart starts full.

        Publishes are bucketed by UTC hour, the engine's counts by METRICS_TIMEZONE hour (docs/mojo.md section 3).
        The current hour is left out: jobpulse counts it itself from here on, and the fold only fills hours it
        has no bucket for, so nothing is counted twice.
        """
        local = ZoneInfo(self.settings.mojo_metrics_tz)
        hour_now = int(self.clock() // 3600)
        hours = [hour_now - back for back in range(1, min(HISTORY_HOURS, self.settings.hours_retention))]
        keys = []
        for hour in hours:
            moment = datetime.fromtimestamp(hour * 3600, UTC)
            for slug, clock in HISTORY_SLUGS:
                at = moment if clock == "utc" else moment.astimezone(local)
                keys.append(MojoKeys.metric(slug, f"hr:{at:%Y-%m-%dT%H}"))
        values = await self.redis.mget(keys)
        width = len(HISTORY_SLUGS)
        found: dict[int, tuple[int, ...]] = {}
        for i, hour in enumerate(hours):
            counts = tuple(_counter(v) for v in values[i * width : (i + 1) * width])
            if any(counts):
                found[hour] = counts
        if found:
            now = self.clock()
            self.sink.feed(Restored(series={}, runners=(), failures=(), hours=found), now)
            self.sink.chunk_end()
            log.info("django-mojo: %d hours of history from its metrics", len(found))

    async def _seed(self) -> None:
        """First connect: start the cursor at the newest event and show the jobs open now and finished lately."""
        top = await self.db.top_event()
        rows = await self.db.open_jobs(min(self.settings.max_jobs, 50_000))
        rows += await self.db.recent_jobs(RECENT_S, RECENT_ROWS)
        now = self.clock()
        # Oldest first, each at its own time: the series count them in the minute they happened, not now.
        rows.sort(key=lambda r: r.finished_at or r.started_at or r.created)
        for event in self.translator.rows(rows, now):
            self.sink.feed(event, min(now, event.ts))
        self.sink.chunk_end()
        self.cursor.start(top)
        self._seeded = True
        log.info("django-mojo: %d jobs shown at connect; following job events after id %d", len(rows), top)

    async def _read_events(self) -> None:
        """The ids still missing below the cursor (once a poll), then new rows in batches while a backlog lasts."""
        missing = list(self.cursor.missing)[:EVENT_BATCH]
        late = await self.db.events_by_id(missing) if missing else []
        for _ in range(MAX_BATCHES):
            fresh = await self.db.events_after(self.cursor.top, EVENT_BATCH)
            read, late = [*late, *fresh], []
            now = self.clock()
            new = self.cursor.observe([r.id for r in read], now)
            rows = [r for r in read if r.id in new]
            if rows:
                jobs = await self.db.jobs(sorted({r.job for r in rows}))
                self._feed(self.translator.events(rows, jobs, now), now)
            if len(fresh) < EVENT_BATCH:
                break
        self.cursor.expire(self.clock())

    async def _recheck_rows(self) -> None:
        ids = self.translator.open_jobs(OPEN_ROWS)
        if not ids:
            return
        rows = await self.db.jobs(ids)
        now = self.clock()
        self._feed(self.translator.rows(rows.values(), now), now)

    def _feed(self, events: list[Any], now: float) -> None:
        for event in events:
            # Live events count when read (the fold's rule); a backlog after an outage counts when it happened.
            self.sink.feed(event, now if now - event.ts < LIVE_S else event.ts)
        if events:
            self.sink.chunk_end()

    # -- actions ---------------------------------------------------------------------------------------

    async def perform(self, action: str, args: Args, known: Known) -> Performed:
        """Do an operator action on the deployment (docs/mojo.md section 8)."""
        if action in self.unsupported:
            raise CommandError(f"{action}: {self.unsupported[action]}", "unavailable")
        if self.actions is None:
            feed = one_at_a_time(self.sink, self.clock)
            self.actions = MojoActions(self.keys, self.redis, self.settings.mojo_write_database_url, feed,
                                       lambda: self.settings.command_timeout_s)  # fmt: skip
        return await self.actions.perform(action, args, known)

    async def close(self) -> None:
        if self.actions is not None:
            await self.actions.close()
        await self.db.close()
        await self.redis.aclose()
