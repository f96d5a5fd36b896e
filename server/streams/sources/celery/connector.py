"""The Celery connector: a Celery cluster on a Redis broker, read live from its event stream.

Shell layer: it alone knows Celery's Redis layout (docs/protocol.md section 6).
It pattern-subscribes to the broker's event fanout (`/<db>.celeryev/*`),
unwraps kombu's envelope (base64 JSON body), turns ISO times into epoch
seconds, and hands each event to the pure `Translator`; it reads queue depth
(the queue list plus its priority lists) on a timer. Like the native
connector it never crashes on bad input (counted as rejected) and reconnects
with jittered backoff.

Operator actions go through Celery's remote control and the broker
(`server.streams.sources.celery.actions`); the few Celery cannot do are listed as
unavailable with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aredis

from server.actions import SPECS, Args, Performed
from server.routing import Known
from server.settings import Settings
from server.streams.connector import CommandError, Sink, Status, one_at_a_time
from server.streams.core.events import ChannelDepth, Reconciled, Rejected
from server.streams.sources.celery.actions import PRIORITY_SEP, UNSUPPORTED, CeleryActions, queue_keys
from server.streams.sources.celery.events import Inspection, Translator
from server.streams.sources.subscription import stay_subscribed
from server.streams.sources.times import epoch

log = logging.getLogger("jobpulse.celery")

MAX_UNACKED_READ = 10_000  # entries of kombu's unacked hash read per poll, at most
MAX_EXCHANGES = 1000  # binding sets read to find queues
NO_CELERY = "the celery package is not installed: pip install 'jobpulse[celery]'"

# What a broker outage raises through an action: redis-py's errors (kombu's Redis transport is redis-py), socket
# errors, and kombu's own wrapper of them, where Celery is installed.
BROKER_ERRORS: tuple[type[Exception], ...] = (aredis.RedisError, OSError)
try:
    from kombu.exceptions import OperationalError as _KombuOperationalError

    BROKER_ERRORS += (_KombuOperationalError,)
except ImportError:  # Celery is optional: without it there are no actions to fail
    pass
_decode = msgspec.json.Decoder()


class _Properties(msgspec.Struct, frozen=True):
    body_encoding: str = ""


class _Envelope(msgspec.Struct, frozen=True):
    """The two fields of kombu's envelope the events need; a typed decode skips the rest (headers, delivery info)
    without building them: a microsecond of the ~16 an event costs."""

    body: str
    properties: _Properties = _Properties()


_decode_envelope = msgspec.json.Decoder(_Envelope)


def unwrap(data: bytes) -> list[dict[str, Any]]:
    """The events inside one message on the event fanout (kombu's JSON envelope, base64 body).

    A worker sends task events in groups (the body is then a JSON array of events); worker events alone.

    Raises:
        ValueError: not an envelope of JSON events.
    """
    try:
        envelope = _decode_envelope.decode(data)
        body: str | bytes = envelope.body
        if envelope.properties.body_encoding == "base64":
            body = base64.b64decode(body)
        decoded = _decode.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
        raise ValueError(f"not a Celery event envelope: {exc}") from None
    events = decoded if isinstance(decoded, list) else [decoded]
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise ValueError("the envelope's body is not an event or a list of events")
        for key in ("eta", "expires"):
            if key in event:
                event[key] = epoch(event[key])
    return events


class Control:
    """Celery's remote control (`app.control`), for `inspect` and `enable_events`; its calls block, so the
    connector runs them in a thread. Needs the celery package (`pip install 'jobpulse[celery]'`)."""

    def __init__(self, broker: str, timeout: float) -> None:
        from celery import Celery

        self.app = Celery("jobpulse", broker=broker, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = True
        self.timeout = timeout

    def inspect(self) -> dict[str, dict[str, Any]]:
        inspector = self.app.control.inspect(timeout=self.timeout)
        out: dict[str, dict[str, Any]] = {}
        for name in ("stats", "active_queues", "active", "reserved", "scheduled"):
            out[name] = getattr(inspector, name)() or {}
        return out

    def enable_events(self, hosts: list[str] | None = None) -> None:
        self.app.control.enable_events(destination=hosts)

    def close(self) -> None:
        self.app.close()


class CeleryConnector:
    """Reads a Celery cluster's events and queue depths from its Redis broker; delivers events to a sink."""

    name = "celery"
    unsupported: dict[str, str]

    def __init__(self, settings: Settings, sink: Sink, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.broker = settings.celery_broker or settings.redis_url
        db = urlsplit(self.broker).path.strip("/") or "0"
        self.pattern = f"/{db}.celeryev/*"
        self.translator = Translator(max_tasks=settings.max_jobs, max_workers=settings.max_runners,
                                     default_queue=settings.celery_default_queue)  # fmt: skip
        self.queues = tuple(q.strip() for q in settings.celery_queues.split(",") if q.strip())
        self.redis = aredis.Redis.from_url(self.broker, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.status = Status(sink, clock)
        self._stale_pools = False
        self.last_message_at: float | None = None
        self.control: Control | None = None
        self.events_off: set[str] = set()  # workers found finishing tasks without task events
        self.actions: CeleryActions | None = None
        try:
            self.control = Control(self.broker, settings.celery_inspect_timeout_s)
            self.unsupported = dict(UNSUPPORTED)
        except ImportError:
            self.unsupported = dict.fromkeys(SPECS, NO_CELERY)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        at = self.clock()
        try:
            for event in unwrap(data):
                for translated in self.translator.translate(event):
                    self.sink.feed(translated, at)
        except (ValueError, KeyError, TypeError, msgspec.ValidationError) as exc:
            self.sink.feed(Rejected("schema", f"celery: {exc}"[:300]), at)
        except Exception as exc:  # a bug must not cost the subscription
            log.exception("could not fold a Celery event")
            self.sink.feed(Rejected("error", f"{type(exc).__name__}: {exc}"[:300]), at)
        self.last_message_at = at

    def request_catch_up(self) -> None:
        """Celery's event stream has no replay; depth is re-read on the next poll anyway."""

    async def run(self) -> None:
        s = self.settings
        await stay_subscribed(
            self.broker,
            patterns=[self.pattern],
            on_message=self._on_message,
            on_chunk_end=self.sink.chunk_end,
            on_status=self._on_status,
            follow=self._follow,
            client_name="jobpulse-celery",
            ping_s=s.source_ping_s,
            timeout_s=s.source_timeout_s,
            backoff_max_s=s.source_backoff_max_s,
        )

    async def _follow(self, first: bool) -> None:
        """While subscribed: poll the queues' depth and ask the workers (inspect) on their timers."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._poll_depth())
            group.create_task(self._inspect_loop())

    @property
    def connected(self) -> bool:
        return self.status.connected

    def _on_status(self, connected: bool, error: str = "") -> None:
        if not connected:
            # Connections pooled now die with the broker: the next action drops them first, and opens fresh ones.
            self._stale_pools = True
        self.status(connected, error)

    async def _drop_stale_pools(self) -> None:
        """After a loss of the broker: a fresh remote control (its pooled connections died with the broker, and
        kombu's pool cannot be emptied while another thread uses it), and the broker client's pool emptied."""
        if not self._stale_pools:
            return
        self._stale_pools = False
        await self.redis.connection_pool.disconnect()
        old = self.control
        if old is not None:
            self.control = Control(self.broker, self.settings.celery_inspect_timeout_s)
            if self.actions is not None:
                self.actions.control = self.control
            # A call still running on the old one may fail once (it is logged); then it goes.
            await asyncio.to_thread(old.close)

    async def _queues(self) -> list[str]:
        """The queues to watch: configured ones, the default queue, the workers' queues, and every queue bound
        to an exchange (kombu keeps each exchange's bindings in the set `_kombu.binding.<exchange>`)."""
        found = set(self.queues) | {self.settings.celery_default_queue}
        for worker in self.translator.workers.values():
            found.update(worker.queues)
        try:
            keys = [key async for key in self.redis.scan_iter(match="_kombu.binding.*", count=500)][:MAX_EXCHANGES]
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.smembers(key)
            for members in await pipe.execute():
                for member in members:
                    text = member.decode(errors="replace") if isinstance(member, bytes) else str(member)
                    queue = text.split(PRIORITY_SEP)[-1]
                    # Celery's own control and reply queues are not job queues.
                    if (
                        queue
                        and not queue.endswith((".celery.pidbox", ".reply.celery.pidbox"))
                        and "pidbox" not in queue
                    ):
                        found.add(queue)
        except (aredis.RedisError, OSError) as exc:
            log.debug("could not read kombu bindings: %s", exc)
        return sorted(found)[: self.settings.max_channels]

    async def _poll_depth(self) -> None:
        """Report each queue's length (its list plus priority lists) every `reconcile_s`."""
        while True:
            try:
                queues = await self._queues()
                pipe = self.redis.pipeline(transaction=False)
                for queue in queues:
                    for key in queue_keys(queue):
                        pipe.llen(key)
                started = time.perf_counter()
                lengths = await pipe.execute()
                rtt = time.perf_counter() - started  # the broker's round trip, for the health card
                inflight = await self._unacked()
                width = len(queue_keys(""))  # lists per queue, as read above
                now = self.clock()
                channels = {}
                for i, queue in enumerate(queues):
                    queued = sum(int(n) for n in lengths[i * width : (i + 1) * width])
                    channels[queue] = ChannelDepth(
                        queued=queued, inflight=inflight.get(queue, 0), scheduled=0, oldest=None, ts=now
                    )
                # What the broker's lists say now: the same fold as the native source's authoritative keys.
                self.sink.feed(Reconciled(at=now, registered=(), heartbeats=(), depth=channels, rtt=rtt), now)
                self.sink.chunk_end()
            except (aredis.RedisError, OSError) as exc:
                log.warning("could not read queue depths: %s", exc)
            await self._turn_events_on()
            await asyncio.sleep(self.settings.reconcile_s)

    async def _inspect_loop(self) -> None:
        """At connect and every `JOBPULSE_CELERY_INSPECT_S`: ask the workers what they run (Celery's events
        have no replay, so a restarted jobpulse learns the truth here), and turn events on where they are off."""
        if self.control is None:
            log.warning("%s: no reconciliation from inspect, and no actions", NO_CELERY)
            return
        while True:
            try:
                await self._drop_stale_pools()
                found = await asyncio.to_thread(self.control.inspect)
                self._reconciled(found)
            except Exception as exc:  # the broker or a worker misbehaving must not stop the loop
                log.warning("inspect failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.settings.celery_inspect_s)

    async def _turn_events_on(self) -> None:
        """Workers that finish tasks without task events (Celery's default without -E): say so, turn them on."""
        off, self.translator.newly_off = self.translator.newly_off, []
        if not off or self.control is None:
            return
        self.events_off.update(off)
        log.warning(
            "task events are off on %s (no task events while it finished tasks): asked it to turn them on, as "
            "`celery control enable_events` does; start workers with -E to keep them on",
            ", ".join(off[:20]),
        )
        try:
            await asyncio.to_thread(self.control.enable_events, off)
        except Exception as exc:
            log.warning("enable_events failed: %s: %s", type(exc).__name__, exc)

    def _reconciled(self, found: dict[str, dict[str, Any]]) -> None:
        now = self.clock()
        scheduled = {
            host: [{**entry, "eta": epoch(entry.get("eta"))} for entry in entries if isinstance(entry, dict)]
            for host, entries in found.get("scheduled", {}).items()
            if isinstance(entries, list)
        }
        inspection = Inspection(
            now=now,
            stats={h: v for h, v in found.get("stats", {}).items() if isinstance(v, dict)},
            active_queues={h: v for h, v in found.get("active_queues", {}).items() if isinstance(v, list)},
            active={h: v for h, v in found.get("active", {}).items() if isinstance(v, list)},
            reserved={h: v for h, v in found.get("reserved", {}).items() if isinstance(v, list)},
            scheduled=scheduled,
        )
        events = self.translator.reconcile(inspection)
        for event in events:
            self.sink.feed(event, now)
        self.sink.chunk_end()
        if events:
            log.info("inspect: %d jobs the event stream had not shown", len(events))

    async def perform(self, action: str, args: Args, known: Known) -> Performed:
        """Do an operator action on the cluster (docs/protocol.md section 6)."""
        if self.control is None:
            raise CommandError(NO_CELERY, "unavailable")
        if self.actions is None:
            feed = one_at_a_time(self.sink, self.clock)
            self.actions = CeleryActions(self.control, self.redis, feed, lambda: self.settings.command_timeout_s)
        try:
            await self._drop_stale_pools()
            return await self.actions.perform(action, args, known)
        except BROKER_ERRORS as exc:
            # Expected while the broker is away (or just back, a pooled connection dying first): said, not a bug.
            why = f"{type(exc).__name__}: {exc}"
            raise CommandError(f"{action}: Celery's broker failed: {why}", "unavailable") from None

    async def _unacked(self) -> dict[str, int]:
        """Tasks delivered to a worker and not yet acknowledged, per queue: kombu's `unacked` hash holds each
        as `[message, exchange, routing_key]`. Read only while it is small enough to read on every poll."""
        try:
            if await self.redis.hlen("unacked") > MAX_UNACKED_READ:
                return {}
            values = await self.redis.hvals("unacked")
        except (aredis.RedisError, OSError):
            return {}
        counts: dict[str, int] = {}
        for value in values:
            try:
                entry = _decode.decode(value)
                queue = entry[2] if isinstance(entry, list) and len(entry) >= 3 else None
            except msgspec.DecodeError:
                queue = None
            if isinstance(queue, str) and queue:
                counts[queue] = counts.get(queue, 0) + 1
        return counts

    async def close(self) -> None:
        if self.control is not None:
            await asyncio.to_thread(self.control.close)
        await self.redis.aclose()
