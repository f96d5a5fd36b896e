"""A TCP proxy that can stall: the network fault where connections hang instead of closing.

Killing Redis resets every connection at once, which any client notices. A
stalled network (a dead switch, a black-holed route, a frozen VM) is harder:
the sockets stay open, writes succeed into buffers, and nothing comes back.
Put this proxy between jobpulse and Redis; `stall()` stops forwarding in both
directions without closing anything (new connections are accepted and hang
too), `heal()` lets the bytes flow again. `cut()` is the far end going away:
every connection closes and new ones are closed at once, until `heal()`. It runs its own event loop in a
thread, so it keeps forwarding while the test blocks (starting a server).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class FaultProxy:
    """Forwards 127.0.0.1:<port> to a target; `stall()` and `heal()` switch forwarding off and on."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Every accepted connection's handler until it ends: one still waiting out a stall when the proxy closes ends
        # and closes its socket (the server's close leaves accepted sockets open; left to the collector, they warn in
        # a later test, which then fails for it).
        self._accepts: set[asyncio.Task[None]] = set()
        self._closing = False
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)
        return self

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def heal(self) -> None:
        def mend() -> None:
            self._refusing = False
            self._flowing.set()

        self._loop.call_soon_threadsafe(mend)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=5)

    async def _cut(self) -> None:
        self._refusing = True
        for task in list(self._tasks):
            task.cancel()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closing = True
        self._flowing.set()  # wakes the handlers that wait out a stall: they see the proxy closing and end
        await asyncio.gather(*self._accepts, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._accepts.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._accepts.discard(task)
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()  # a stalled network does not get as far as the far end
        if self._refusing or self._closing:
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            return  # the far end is down: the connection closes (_accept)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                with contextlib.suppress(OSError, RuntimeError):
                    w.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await self._flowing.wait()
                data = await source.read(65_536)
                if not data:
                    return
                await self._flowing.wait()  # bytes read just before a stall are held, as a dead link would
                sink.write(data)
                await sink.drain()
