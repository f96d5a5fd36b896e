"""The hub: per-widget seqs, coalescing tick, encode-once fan-out, resume, and the slow-client policy.

Shell layer (asyncio). `Hub` is the driver of `HubCore` (server/streams/hubcore.py: the state and the rules,
without I/O): it runs the tick that refreshes and fans out, each client's writer, and the housekeeping round
that pings, beats and closes stalled clients. No Redis and no web framework: clients are `Peer`s.

Rules:
- A widget's patch is computed and encoded once per tick; clients with the same
  subscriptions get the very same message bytes.
- A snapshot is encoded once per widget version, however many clients need it.
- Changes are coalesced: a flush happens at most once per tick, and at once when
  the hub was idle (so a lone event is not held back a whole tick). While the
  loop is saturated (a wall of pages connecting at once), the tick doubles, up
  to `tick_max`, and halves back once the loop has time to spare: a flush costs
  one socket write per client, and fewer of them leave the loop to the work it
  is behind on. Clients get the same patches, coalesced over more time.
- A client that can take a message now gets it inline: where the server allows,
  the websocket frame itself is built once and the same bytes are written to
  every such socket. Otherwise the message goes to the client's bounded outbox,
  drained by its own writer task. An outbox that
  overflows is dropped and replaced by one snapshot per widget.
- A client that reads nothing for `stall_timeout` is closed with 4408 (and cut
  off). Whether it reads is asked, not guessed from buffers: every client gets a
  websocket ping every `ping_every` seconds, and one unanswered for
  `stall_timeout` closes it however quiet the stream (a client's kernel takes a
  quiet stream's bytes for minutes while its program reads none of them). A
  send that waits on a full buffer is the other clock. Either clock restarts
  while the bytes left for the client (the transport's buffer and the kernel's
  queue) shrink, the ping's only while it is still behind them: a slow reader
  gets snapshots and stays, and only one that reads nothing goes. A client
  whose ping of a round ago is unanswered is held: its messages wait in its
  outbox until the pong, so a slow reader's backlog stays a round's worth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from server import protocol
from server.clock import wall
from server.latency import LatencyRing
from server.streams.hubcore import ClientState, HubCore, HubLimits, Peer, Projector, Resolver
from server.streams.pressure import LoopPressure
from server.tasks import cancel_and_wait

log = logging.getLogger("jobpulse.hub")

# The loop's load (share of the time it ran or waited for a CPU) at which the tick doubles, and below which it
# halves back: apart, so that it does not flap. Doubling waits for three such ticks in a row: on a machine whose
# cores are all taken a tick or two of queueing is common and says little, while a connect storm lasts hundreds of
# milliseconds (side by side, doubling on the first such tick cost the fan-out benchmark's p99 ~10-20%).
BUSY = 0.9
EASY = 0.7
SATURATED_TICKS = 3
# A client closed for reading nothing has this long to answer the close frame before it is cut off with a reset.
STALL_CUT_S = 1.0


class Client(ClientState):
    """A client as the driver runs it: its state, plus the event that wakes its writer and the writer task."""

    __slots__ = ("wake", "writer")

    def __init__(self, peer: Peer, now: float) -> None:
        super().__init__(peer, now)
        # Made with the writer, the first time the client cannot take a message at once: most clients never need
        # either, and an Event is 800 bytes a connection.
        self.wake: asyncio.Event | None = None
        self.writer: asyncio.Task[None] | None = None


class Hub(HubCore):
    """Fan-out of widget projections to websocket clients: `HubCore` run on asyncio."""

    def __init__(
        self,
        widgets: Iterable[tuple[str, int, Projector]],
        limits: HubLimits,
        epoch: str,
        clock: Callable[[], float] = wall,
        resolver: Resolver | None = None,
        push_latency: LatencyRing | None = None,
    ) -> None:
        super().__init__(widgets, limits, epoch, clock, resolver)
        # From a change marked to the end of the flush that wrote it (the status page's websocket latency).
        self.push_latency = push_latency
        self._dirty_since: float | None = None
        self._dirty = 0
        self._dirty_event = asyncio.Event()
        self._last_flush = 0.0
        self._pings = 0  # pings sent, one payload per round: a client's pong says which round it read up to
        self._tasks: list[asyncio.Task[None]] = []

    def _new_client(self, peer: Peer) -> Client:
        return Client(peer, self.monotonic())

    def _wake(self, client: ClientState) -> None:
        """Wake the client's writer, starting it the first time: most clients take every frame at once and never
        need one, and a task per client made connect storms dearer (docs/reliability.md 4)."""
        assert isinstance(client, Client)
        if client.wake is None:
            client.wake = asyncio.Event()
        client.wake.set()
        if client.writer is None and not client.closed:
            client.writer = asyncio.create_task(self._writer(client, client.wake), name="hub-writer")

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="hub-flush"),
            asyncio.create_task(self._housekeeping_loop(), name="hub-housekeeping"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        for client in list(self.clients):
            await self.close_client(client, protocol.CloseCode.GOING_AWAY, "server shutting down")

    # -- the tick -------------------------------------------------------------------------------

    def mark(self, aspects: int) -> None:
        """Note that the reducer changed `aspects`; a flush follows within one tick."""
        if aspects:
            if not self._dirty:
                self._dirty_since = self.monotonic()
            self._dirty |= aspects
            self._dirty_event.set()

    def flush(self) -> int:
        """Recompute dirty widgets and send their patches; return how many widgets changed."""
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, 0
        self._dirty_event.clear()
        frames, waiting = self.refresh(dirty)
        if waiting:
            # Some views are throttled: come back when the first of them may be recomputed.
            asyncio.get_running_loop().call_later(waiting, self._dirty_event.set)
        dirty_since, self._dirty_since = self._dirty_since, None
        if frames:
            self.fan_out(frames)
            if self.push_latency is not None and dirty_since is not None:
                done = self.monotonic()
                self.push_latency.add(done - dirty_since, done)
        self.stats.flushes += 1
        self.stats.flush_seconds += time.perf_counter() - started
        return len(frames)

    # -- clients --------------------------------------------------------------------------------

    def attach(self, peer: Peer) -> Client:
        client = super().attach(peer)
        assert isinstance(client, Client)
        return client

    async def detach(self, client: ClientState) -> None:
        self.clients.discard(client)
        self._regroup(client, frozenset())
        client.closed = True
        writer = client.writer if isinstance(client, Client) else None
        if writer is not None and writer is not asyncio.current_task():
            await cancel_and_wait([writer])

    async def _writer(self, client: Client, wake: asyncio.Event) -> None:
        try:
            while not client.closed:
                await wake.wait()
                wake.clear()
                while not client.closed and not client.held and (client.outbox or client.resync):
                    if client.resync:
                        client.resync = False
                        message = self._resync_message(client)
                    else:
                        message = client.outbox.pop(0)
                        client.outbox_bytes -= len(message)
                    client.busy_since = self.monotonic()
                    await client.peer.send(message.text)
                    client.busy_since = None
                    client.last_sent = self.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("writer ended: %r", exc)
        finally:
            client.closed = True
            client.busy_since = None

    async def close_client(self, client: ClientState, code: int, reason: str, cut_after: float | None = None) -> None:
        """Close a client with `code`; cut it off if the close frame cannot be written within a second, or, with
        `cut_after`, if the connection has not closed that many seconds after it was (a client that reads nothing
        will not read the close frame either, and would hold its socket until the server's close timeout)."""
        client.closed = True
        peer = client.peer
        try:
            if peer.ready():
                await asyncio.wait_for(peer.close(code, reason), timeout=1.0)
                if cut_after is not None:
                    asyncio.get_running_loop().call_later(cut_after, peer.abort)
            else:
                peer.abort()
        except Exception:
            peer.abort()
        await self.detach(client)

    # -- loops ----------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick, tick_max = self.limits.tick, max(self.limits.tick, self.limits.tick_max)
        interval = tick
        pressure = LoopPressure()
        saturated = 0  # ticks in a row that found the loop saturated
        try:
            while True:
                await self._dirty_event.wait()
                due = self._last_flush + interval
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                # A loop that ran (or queued for a CPU) nearly all the time, tick after tick, has more work than
                # time: flush half as often, since each flush is a socket write per client. Timers still fire on time
                # then (uvloop interleaves them), so lateness would not tell; the thread's scheduler times do.
                load = pressure.sample()
                saturated = saturated + 1 if load >= BUSY else 0
                if saturated >= SATURATED_TICKS:
                    interval = min(interval * 2, tick_max)
                elif load < EASY:
                    interval = max(interval / 2, tick)
                self.stats.tick_interval = interval
                if interval > tick:
                    self.stats.stretched_flushes += 1
                self._last_flush = loop.time()
                try:
                    self.flush()
                except Exception:
                    log.exception("flush failed")
        finally:
            pressure.close()

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.housekeeping)
            self._pings += 1
            for client, waited in self.round(self.monotonic(), self._pings.to_bytes(8, "big")):
                self.stats.stalled_closed += 1
                log.info("closing a client that read nothing for %.1f s", waited)
                await self.close_client(client, protocol.CloseCode.TOO_SLOW, "too slow", cut_after=STALL_CUT_S)
