"""The one way out to Redis for published objects: a FIFO flushed in batched pipelines.

All publishers share one Outbox, so each `src`'s `seq` reaches subscribers in order.
A flush is one pipeline: consecutive objects as one PUBLISH (a JSON array of at
most 1,000 objects or 512 KiB), each XADDed to `P:stream`, with key writes and
replies kept in place. Redis errors are retried with backoff; the buffer is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from server.simulator.backoff import REDIS_ERRORS, Backoff

log = logging.getLogger(__name__)

Write = Callable[[Pipeline], None]
"""A key write queued into the flush pipeline (heartbeat keys, depth hash, cleanup)."""

MAX_BATCH_OBJECTS = 1000
MAX_BATCH_BYTES = 512 * 1024
STREAM_MAXLEN = 100_000

_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    """Compact JSON bytes of `obj`."""
    return _encoder.encode(obj)


@dataclass(slots=True)
class _Event:
    data: bytes


@dataclass(slots=True)
class _Message:
    channel: str
    data: bytes


_Item = _Event | _Message | Write


class Outbox:
    """An ordered, bounded buffer of objects, replies and key writes, flushed by `run()`."""

    def __init__(
        self,
        client: aredis.Redis,
        *,
        channel: str,
        stream: str | None,
        capacity: int = 200_000,
        flush_delay: float = 0.005,
        max_flush: int = 5000,
    ) -> None:
        self._client = client
        self._channel = channel
        self._stream = stream
        self._capacity = capacity
        self._flush_delay = flush_delay
        self._max_flush = max_flush
        self._items: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._added = 0
        self._done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.dropped = 0
        self._last_drop_log = 0.0

    def publish(self, data: bytes) -> None:
        """Queue one encoded object for `P:events` (and `P:stream`)."""
        self._add(_Event(data))

    def message(self, channel: str, obj: Any) -> None:
        """Queue a PUBLISH of one object on another channel (command replies)."""
        self._add(_Message(channel, encode(obj)))

    def write(self, op: Write) -> None:
        """Queue a key write, applied after everything queued before it."""
        self._add(op)

    async def sync(self) -> None:
        """Return once everything queued so far has reached Redis (or was dropped, or the outbox closed)."""
        target = self._added
        if self._done >= target or (self._closing and not self._items):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        await future

    async def close(self) -> None:
        """Ask `run()` to flush what is left and return."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Flush until closed and empty. Redis errors are logged and retried with backoff."""
        backoff = Backoff()
        try:
            while True:
                if not self._items:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if not self._closing:
                    # Let the rest of this loop turn add its objects, so they share one PUBLISH.
                    await asyncio.sleep(self._flush_delay)
                count = min(len(self._items), self._max_flush)
                batch = [self._items.popleft() for _ in range(count)]
                try:
                    await self._send(batch)
                except REDIS_ERRORS as exc:
                    # Back at the front, so order is kept; a partly applied pipeline is sent again (at-least-once).
                    self._items.extendleft(reversed(batch))
                    delay = backoff.next()
                    log.warning(
                        "publishing %d items failed (%s: %s); retrying in %.2fs", count, type(exc).__name__, exc, delay
                    )
                    await asyncio.sleep(delay)
                    continue
                backoff.reset()
                self._finished(count)
        finally:
            for _, future in self._waiters:
                if not future.done():
                    future.set_result(None)
            self._waiters.clear()

    def _add(self, item: _Item) -> None:
        self._items.append(item)
        self._added += 1
        if len(self._items) > self._capacity:
            # Redis has been away long enough to fill the buffer: the oldest objects are the least useful.
            drop = len(self._items) - self._capacity
            for _ in range(drop):
                self._items.popleft()
            self.dropped += drop
            self._finished(drop)
            now = time.monotonic()
            if now - self._last_drop_log > 10:
                self._last_drop_log = now
                log.error("outbox full: dropped %d items so far while Redis is unreachable", self.dropped)
        self._wake.set()

    def _finished(self, count: int) -> None:
        self._done += count
        if self._waiters:
            keep = []
            for target, future in self._waiters:
                if self._done >= target:
                    if not future.done():
                        future.set_result(None)
                else:
                    keep.append((target, future))
            self._waiters = keep

    async def _send(self, batch: list[_Item]) -> None:
        pipe = self._client.pipeline(transaction=False)
        chunk: list[bytes] = []
        size = 0

        def close_chunk() -> None:
            nonlocal size
            if not chunk:
                return
            payload = chunk[0] if len(chunk) == 1 else b"[" + b",".join(chunk) + b"]"
            pipe.publish(self._channel, payload)
            if self._stream is not None:
                for data in chunk:
                    pipe.xadd(self._stream, {"m": data}, maxlen=STREAM_MAXLEN, approximate=True)
            chunk.clear()
            size = 0

        for item in batch:
            if isinstance(item, _Event):
                if len(chunk) >= MAX_BATCH_OBJECTS or (chunk and size + len(item.data) > MAX_BATCH_BYTES):
                    close_chunk()
                chunk.append(item.data)
                size += len(item.data) + 1
            elif isinstance(item, _Message):
                close_chunk()
                pipe.publish(item.channel, item.data)
            else:
                close_chunk()
                item(pipe)
        close_chunk()
        await pipe.execute()


def remove_member(key: str, member: str) -> Write:
    """A write that takes `member` off the set `key` (a runner leaving `P:runners`)."""

    def write(pipe: Pipeline) -> None:
        pipe.srem(key, member)

    return write


class Emitter:
    """The envelope of one publisher (`src`): its boot, and a `seq` that grows by one per object.

    A new process (a restarted runner) gets a new Emitter: a new `boot` and `seq` from 0.
    """

    def __init__(self, src: str, boot: float, outbox: Outbox) -> None:
        self.src = src
        self.boot = boot
        self.seq = 0
        self._outbox = outbox
        # Milliseconds keep ids unique even when a runner restarts within the same second.
        self._id_prefix = f"{src}:{round(boot * 1000)}:"

    def emit(self, type_: str, fields: dict[str, Any]) -> bytes:
        """Publish one object of `type_` with `fields`, and return its JSON."""
        seq = self.seq
        self.seq += 1
        obj: dict[str, Any] = {
            "v": 1,
            "type": type_,
            "src": self.src,
            "seq": seq,
            "ts": time.time(),
            "id": f"{self._id_prefix}{seq}",
        }
        obj.update(fields)
        data = encode(obj)
        self._outbox.publish(data)
        return data
