"""A real HTTP receiver for the alert tests: answers POSTs as scripted (fail, hang, then accept) and records them.

A plain asyncio HTTP/1.1 server (one request per connection, Content-Length
bodies), so a test can make it fail, stall or recover at will and check what
arrived: headers, body, the answer given and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

HANG = -1  # an answer that never comes: the request stays open until the sender gives up or dies


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0  # what the receiver answered (HANG: nothing)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    answers: list[int] = field(default_factory=list)  # answers to the first requests, in order; then 200
    requests: list[Request] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, answers: list[int] | None = None) -> Receiver:
        receiver = cls(list(answers or []))
        receiver.server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
        receiver.port = receiver.server.sockets[0].getsockname()[1]
        return receiver

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[Request]:
        """The requests answered 2xx: what a receiver that dedupes nothing would have acted on."""
        return [r for r in self.requests if 200 <= r.status < 300]

    async def wait_for(self, predicate: Any, within: float) -> None:
        deadline = time.monotonic() + within
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                got = [(r.status, r.headers.get("x-jobpulse-event"), r.body[:120]) for r in self.requests]
                raise AssertionError(f"the receiver did not get what was expected within {within} s: {got}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.2))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(path, headers, body, time.time())
            self.requests.append(request)
            status = self.answers.pop(0) if self.answers else 200
            request.status = status
            self.arrived.set()
            if status == HANG:
                await reader.read()  # until the sender closes (or dies)
                return
            text = b"ok" if status < 300 else b"try later"
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, len(text), text)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class ThreadedReceiver:
    """A Receiver on an event loop of its own thread, for synchronous tests (the browser tests)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="receiver", daemon=True)
        self.thread.start()
        self.receiver: Receiver = asyncio.run_coroutine_threadsafe(Receiver.start(answers), self.loop).result(10)

    @property
    def url(self) -> str:
        return self.receiver.url

    def accepted(self) -> list[Request]:
        return list(self.receiver.accepted())

    def wait_for(self, predicate: Any, within: float) -> None:
        deadline = time.monotonic() + within
        while not predicate(self):
            if time.monotonic() > deadline:
                got = [(r.status, r.headers.get("x-jobpulse-event")) for r in list(self.receiver.requests)]
                raise AssertionError(f"the receiver did not get what was expected within {within} s: {got}")
            time.sleep(0.1)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
