"""A Redis pub/sub connection read straight off the socket with hiredis.

Shell layer. redis-py's PubSub costs a coroutine round and a dict per message,
which caps ingest near the rate of its own loop (docs/benchmarks.md). This is
an asyncio.Protocol: each socket read is fed to a hiredis.Reader and every
complete message goes to a plain callback, then `on_chunk_end` once per read,
so the fold runs in bulk and the hub is poked once per read, not per message.
It speaks RESP2 (AUTH, SUBSCRIBE, PSUBSCRIBE, PING) over TCP, TLS or a unix
socket, and notices a dead or stalled connection by a PING deadline.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlparse

import hiredis


class SubscriberError(ConnectionError):
    """The pub/sub connection could not be set up, or it broke."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, parsed from a redis://, rediss:// or unix:// URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r}")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 6379,
            path=parsed.path if parsed.scheme == "unix" else None,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            tls=parsed.scheme == "rediss",
        )


def command(*args: bytes | str) -> bytes:
    """Encode one RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


OnMessage = Callable[[bytes, bytes], None]

# A backlog in the socket must not hold the event loop: after this much work in one loop turn, reading
# pauses until the next turn, so ticks, websocket writes and pings get their share.
TURN_BUDGET = 0.008  # s


class _Protocol(asyncio.Protocol):
    def __init__(self, on_message: OnMessage, on_chunk_end: Callable[[], None]) -> None:
        self.on_message = on_message
        self.on_chunk_end = on_chunk_end
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        self.replies: asyncio.Queue[object] = asyncio.Queue()  # non-message replies (AUTH, subscribe, pong)
        self.last_data = loop.time()
        self.subscribed = False
        self._turn_started: float | None = None
        self.paused_turns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.last_data = now
        if self._turn_started is None:
            self._turn_started = now
            loop.call_soon(self._end_turn)
        reader = self.reader
        reader.feed(data)
        on_message = self.on_message
        try:
            while (reply := reader.gets()) is not False:
                if type(reply) is list and len(reply) >= 3:
                    kind = reply[0]
                    if kind == b"message":
                        on_message(reply[1], reply[2])
                        continue
                    if kind == b"pmessage" and len(reply) == 4:
                        on_message(reply[2], reply[3])
                        continue
                self.replies.put_nowait(reply)
        except hiredis.ProtocolError as exc:
            self._fail(SubscriberError(f"bad reply from Redis: {exc}"))
            return
        finally:
            self.on_chunk_end()
            # Again after the fold: a big chunk can take longer than the PING deadline to fold, and that time
            # is ours, not a silent Redis (the keepalive runs right after this callback).
            self.last_data = loop.time()
        if loop.time() - self._turn_started > TURN_BUDGET and self.transport is not None:
            self.transport.pause_reading()
            self.paused_turns += 1
            loop.call_soon(self._resume)

    def _end_turn(self) -> None:
        self._turn_started = None

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc or SubscriberError("connection closed by Redis"))

    def _fail(self, exc: BaseException) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        if self.transport is not None:
            self.transport.abort()


class Subscriber:
    """A live subscription. Use `await Subscriber.connect(...)`, then `await sub.wait_closed()`."""

    def __init__(self, proto: _Protocol, ping_interval: float, ping_timeout: float) -> None:
        self._proto = proto
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._pinger = asyncio.create_task(self._keepalive(), name="subscriber-keepalive")

    @classmethod
    async def connect(
        cls,
        url: str,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
        *,
        on_message: OnMessage,
        on_chunk_end: Callable[[], None] = lambda: None,
        connect_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 10.0,
        client_name: str = "jobpulse-sub",
    ) -> Subscriber:
        """Connect, authenticate, subscribe; return once Redis confirmed every subscription.

        Raises:
            SubscriberError: on refusal, a wrong password, or no answer within `connect_timeout`.
        """
        endpoint = Endpoint.from_url(url)
        loop = asyncio.get_running_loop()

        def factory() -> _Protocol:
            return _Protocol(on_message, on_chunk_end)

        proto: _Protocol | None = None
        try:
            async with asyncio.timeout(connect_timeout):
                if endpoint.path:
                    _, proto = await loop.create_unix_connection(factory, endpoint.path)
                else:
                    context = ssl.create_default_context() if endpoint.tls else None
                    _, proto = await loop.create_connection(factory, endpoint.host, endpoint.port, ssl=context)
                transport = proto.transport
                assert transport is not None
                if endpoint.password is not None:
                    args = ["AUTH", endpoint.password]
                    if endpoint.username:
                        args.insert(1, endpoint.username)
                    transport.write(command(*args))
                    await _expect_ok(proto, "AUTH")
                transport.write(command("CLIENT", "SETNAME", client_name))
                await _expect_ok(proto, "CLIENT SETNAME")
                if channels:
                    transport.write(command("SUBSCRIBE", *channels))
                if patterns:
                    transport.write(command("PSUBSCRIBE", *patterns))
                for _ in range(len(channels) + len(patterns)):
                    reply = await proto.replies.get()
                    if not (isinstance(reply, list) and reply and reply[0] in (b"subscribe", b"psubscribe")):
                        raise SubscriberError(f"subscribe refused: {reply!r}")
                proto.subscribed = True
        except BaseException as exc:
            if proto is not None and proto.transport is not None:
                proto.transport.abort()
            if isinstance(exc, TimeoutError):
                raise SubscriberError(f"no answer from Redis within {connect_timeout} s") from None
            if isinstance(exc, OSError) and not isinstance(exc, SubscriberError):
                raise SubscriberError(f"cannot connect to Redis: {exc}") from exc
            raise
        return cls(proto, ping_interval, ping_timeout)

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection ends; return why."""
        return await self._proto.closed

    @property
    def closed(self) -> bool:
        return self._proto.closed.done()

    def close(self) -> None:
        self._pinger.cancel()
        transport = self._proto.transport
        if transport is not None:
            transport.abort()
        self._proto.connection_lost(None)

    async def _keepalive(self) -> None:
        # A connection that hangs (a network stall) never reports an error: PING it, and give up on it when
        # nothing at all arrives for `ping_timeout`.
        proto = self._proto
        loop = asyncio.get_running_loop()
        while not proto.closed.done():
            await asyncio.sleep(self._ping_interval)
            transport = proto.transport
            if transport is None or transport.is_closing():
                return
            if loop.time() - proto.last_data > self._ping_timeout:
                proto._fail(SubscriberError(f"no data from Redis for {self._ping_timeout:.0f} s"))
                return
            transport.write(command("PING"))
            while not proto.replies.empty():  # pongs and stray replies are not needed
                proto.replies.get_nowait()


async def _expect_ok(proto: _Protocol, what: str) -> None:
    reply = await proto.replies.get()
    if isinstance(reply, hiredis.ReplyError):
        raise SubscriberError(f"{what} refused: {reply}")
