"""The native connector: the jobpulse protocol (docs/protocol.md section 1) over Redis.

Shell layer: it alone knows the native Redis layout. It subscribes to
`P:events`, parses every message into events, reconciles from the
authoritative keys (at connect, every `reconcile_s`, and at once after a seq
gap), replays `P:stream` across gaps, and reconnects with jittered backoff.
It never crashes on bad input: rejections become `Rejected` events.

It also sends operator commands on `P:control` (section 2) and gathers the
replies that come back on `P:replies`, read on the same subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aredis

from server.actions import Args, Performed
from server.routing import Known
from server.settings import Settings
from server.streams.connector import CommandError, Sink, Status, WireCommand
from server.streams.core.events import ChannelDepth, Heartbeat, Reconciled, Rejected, parse_message
from server.streams.sources.native.actions import NativeActions
from server.streams.sources.subscription import stay_subscribed

log = logging.getLogger("jobpulse.native")

_heartbeat_decoder = msgspec.json.Decoder(Heartbeat)
_depth_decoder = msgspec.json.Decoder(ChannelDepth)

REPLAY_MARGIN = 2.0  # s replayed before the last message seen: the stream's and our clocks may differ a little
MGET_CHUNK = 500
XRANGE_CHUNK = 1000
RETRY_READ_S = 0.25  # after a failed reconcile or replay; the subscription's keepalive judges whether Redis is up


@dataclass
class _Pending:
    expect: int | None
    replies: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class NativeConnector:
    """Reads a native-protocol source; delivers events to a sink; sends commands and gathers replies."""

    name = "native"
    # The actions of docs/protocol.md 4.4 map onto section-2 commands a native source must answer, but one.
    unsupported: dict[str, str] = {  # noqa: RUF012 - read-only
        "task.rate_limit": "the native protocol has no per-function rate limits (a Celery source has)",
    }

    def __init__(self, settings: Settings, sink: Sink, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.sink = sink
        self.clock = clock
        prefix = settings.prefix
        self.events_channel = f"{prefix}:events"
        self.runners_key = f"{prefix}:runners"
        self.runner_key = f"{prefix}:runner:"
        self.depth_key = f"{prefix}:depth"
        self.stream_key = f"{prefix}:stream"
        self.control_channel = f"{prefix}:control"
        self.replies_channel = f"{prefix}:replies"
        self._replies_bytes = self.replies_channel.encode()
        self._pending: dict[str, _Pending] = {}
        self.replies_dropped = 0  # replies to no command we wait for (late, or another process's)
        self.redis = aredis.Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.status = Status(sink, clock)
        self.actions = NativeActions(self.send, lambda: self.settings.command_timeout_s)
        self.last_message_at: float | None = None  # our clock, the last message folded
        self._chunk_started: float | None = None
        self._catch_up_from: float | None = None
        self._catch_up = asyncio.Event()
        self._reject_log_window = 0
        self._reject_logged = 0

    @property
    def connected(self) -> bool:
        return self.status.connected

    # -- live path ------------------------------------------------------------------------------

    def _on_message(self, channel: bytes, data: bytes) -> None:
        if channel == self._replies_bytes:
            self._on_reply(data)
            return
        at = self.clock()
        if self._chunk_started is None:
            self._chunk_started = self.last_message_at if self.last_message_at is not None else at
        try:
            messages, rejects = parse_message(data, self.settings.message_max)
            feed = self.sink.feed
            for message in messages:
                feed(message, at)
            for rejected in rejects:
                feed(rejected, at)
                self._log_reject(rejected, data)
        except Exception as exc:
            # A bug must not cost the subscription: count the message, log it (rate limited) and go on.
            rejected = Rejected("error", f"{type(exc).__name__}: {exc}"[:300])
            self.sink.feed(rejected, at)
            self._log_reject(rejected, data, exc_info=True)
        self.last_message_at = at

    def _on_chunk_end(self) -> None:
        self._chunk_started = None
        self.sink.chunk_end()

    def request_catch_up(self) -> None:
        """Reconcile and replay soon: the fold saw a seq gap."""
        start = self._chunk_started if self._chunk_started is not None else self.last_message_at
        if start is not None and (self._catch_up_from is None or start < self._catch_up_from):
            self._catch_up_from = start
        self._catch_up.set()

    def _log_reject(self, rejected: Rejected, data: bytes, exc_info: bool = False) -> None:
        window = int(self.clock() // 60)
        if window != self._reject_log_window:
            self._reject_log_window, self._reject_logged = window, 0
        if self._reject_logged < self.settings.log_rejects_per_min:
            self._reject_logged += 1
            log.warning(
                "rejected a message (%s: %s): %r", rejected.reason, rejected.detail, data[:200], exc_info=exc_info
            )

    # -- supervision ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay subscribed until cancelled: connect, catch up, follow; on loss, back off and reconnect."""
        s = self.settings
        await stay_subscribed(
            s.redis_url,
            channels=[self.events_channel, self.replies_channel],
            on_message=self._on_message,
            on_chunk_end=self._on_chunk_end,
            on_status=self.status,
            follow=lambda first: self._follow(since=None if first else self.last_message_at),
            client_name="jobpulse-native",
            ping_s=s.source_ping_s,
            timeout_s=s.source_timeout_s,
            backoff_max_s=s.source_backoff_max_s,
        )

    async def _follow(self, since: float | None) -> None:
        """While subscribed: catch up once now, then reconcile on a timer and catch up after gaps.

        A failed read is retried shortly, never given up: right after Redis returns, the first command may
        meet a pooled connection that died with the old server, and the catch-up it was doing is still owed.
        """
        owed: tuple[float | None] | None = (since,)  # a catch-up to do, and from when
        # One more read of the keys a second after connecting: after an outage the job system's own writers
        # reconnect too, and what they write just after our first read would otherwise wait for the timer.
        settle = True
        while True:
            try:
                if owed is not None:
                    await self.reconcile()
                    await self.replay(owed[0])
                    owed = None
                    await asyncio.sleep(1.0)  # at most one catch-up a second, however many gaps
                    if settle:
                        await self.reconcile()
                        settle = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.reconcile_s):
                        await self._catch_up.wait()
                if self._catch_up.is_set():
                    self._catch_up.clear()
                    start, self._catch_up_from = self._catch_up_from, None
                    owed = (start,)
                else:
                    await self.reconcile()
            except (aredis.RedisError, OSError) as exc:
                log.warning("reading the source's keys failed (%s); retrying", exc)
                if owed is None:
                    owed = (self.last_message_at,)
                await asyncio.sleep(RETRY_READ_S)

    # -- authoritative keys ---------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Read `P:runners`, `P:runner:<id>` and `P:depth`, and fold what they say."""
        started = time.perf_counter()
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.runners_key)
        pipe.hgetall(self.depth_key)
        members, raw_depth = await pipe.execute()
        rtt = time.perf_counter() - started
        at = self.clock()
        complete = len(members) <= self.settings.max_runners
        registered = sorted(m.decode(errors="replace") for m in members)[: self.settings.max_runners]
        beats: list[Heartbeat] = []
        for start in range(0, len(registered), MGET_CHUNK):
            ids = registered[start : start + MGET_CHUNK]
            for raw in await self.redis.mget([self.runner_key + i for i in ids]):
                if raw is None:
                    continue
                try:
                    beats.append(_heartbeat_decoder.decode(raw))
                except msgspec.DecodeError as exc:
                    self.sink.feed(Rejected("schema", f"runner key: {exc}"[:300]), at)
        depth: dict[str, ChannelDepth] = {}
        for name, raw in raw_depth.items():
            try:
                depth[name.decode()] = _depth_decoder.decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                self.sink.feed(Rejected("schema", f"depth {name[:100]!r}: {exc}"[:300]), at)
        self.sink.feed(
            Reconciled(
                at=at, registered=tuple(registered), heartbeats=tuple(beats), depth=depth, rtt=rtt, complete=complete
            ),
            at,
        )
        self.sink.chunk_end()

    async def replay(self, since: float | None) -> int:
        """Fold `P:stream` entries newer than `since` (or the newest `replay_max` at start); return the count."""
        limit = self.settings.replay_max
        floor = "-" if since is None else f"{int((since - REPLAY_MARGIN) * 1000)}-0"
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        end = "+"
        # Newest first, page by page, so a long outage replays its most recent part within the cap.
        while len(entries) < limit:
            page: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrevrange(  # type: ignore[assignment]
                self.stream_key, max=end, min=floor, count=min(XRANGE_CHUNK, limit)
            )
            if not page:
                break
            entries.extend(page)
            last_id = page[-1][0].decode()
            ms, _, seq = last_id.partition("-")
            end = f"({ms}-{seq}"
            if len(page) < XRANGE_CHUNK:
                break
        entries = entries[:limit]
        feed = self.sink.feed
        for entry_id, fields in reversed(entries):
            data = fields.get(b"m")
            if data is None:
                continue
            at = int(entry_id.split(b"-", 1)[0]) / 1000
            messages, rejects = parse_message(data, self.settings.message_max)
            for message in messages:
                feed(message, at, True)
            for rejected in rejects:
                feed(rejected, at, True)
        if entries:
            self.sink.chunk_end()
            log.info("replayed %d stream entries", len(entries))
        return len(entries)

    # -- commands (docs/protocol.md section 2) ---------------------------------------------------

    async def perform(self, action: str, args: Args, known: Known) -> Performed:
        """Do an operator action as section-2 commands (server/streams/sources/native/actions.py)."""
        if action in self.unsupported:
            raise CommandError(f"{action}: {self.unsupported[action]}", "unavailable")
        return await self.actions.perform(action, args, known)

    def _on_reply(self, data: bytes) -> None:
        try:
            reply = msgspec.json.decode(data)
        except msgspec.DecodeError:
            self.replies_dropped += 1
            return
        pending = self._pending.get(str(reply.get("id"))) if isinstance(reply, dict) else None
        if pending is None or not isinstance(reply, dict) or reply.get("type") != "reply":
            self.replies_dropped += 1
            return
        pending.replies.append(
            {
                "src": str(reply.get("src", ""))[:200],
                "ok": reply.get("ok") is True,
                "result": reply.get("result") if isinstance(reply.get("result"), dict) else None,
                "error": str(reply["error"])[:500] if reply.get("error") else None,
            }
        )
        if pending.expect is not None and len(pending.replies) >= pending.expect:
            pending.done.set()

    async def send(self, commands: list[WireCommand], wait_s: float) -> list[list[dict[str, Any]]]:
        """Publish `commands` and wait (at most `wait_s`) for their replies; one list of replies per command.

        Raises:
            CommandError: when the subscription that reads replies is down, or Redis refuses the publish.
        """
        if not self.connected:
            raise CommandError("not connected to the job system's Redis", "unavailable")
        pendings = [_Pending(c.expect) for c in commands]
        for command, pending in zip(commands, pendings, strict=True):
            self._pending[command.id] = pending
        try:
            pipe = self.redis.pipeline(transaction=False)
            now = self.clock()
            for c in commands:
                message = {"v": 1, "type": "command", "id": c.id, "action": c.action, "to": c.to, "args": c.args,
                           "ts": now, "reply_to": self.replies_channel}  # fmt: skip
                pipe.publish(self.control_channel, msgspec.json.encode(message))
            try:
                await pipe.execute()
            except (aredis.RedisError, OSError) as exc:
                raise CommandError(f"could not publish on {self.control_channel}: {exc}", "unavailable") from exc
            waits = [p.done.wait() for p in pendings if p.expect is not None]
            if waits:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*waits), wait_s)
            else:
                await asyncio.sleep(wait_s)
        finally:
            for command in commands:
                self._pending.pop(command.id, None)
        return [p.replies for p in pendings]

    async def close(self) -> None:
        await self.redis.aclose()
