"""The hub's state and rules, without I/O: widget feeds (seqs, views, patch rings, snapshot cache), clients and
their groups, delivery with conflation, the resync and stall rules.

Pure of asyncio (like websockets' protocol beside its connection): clocks are injected (`clock` for the wall
time batches carry, `monotonic` for every interval the rules measure) and clients are `Peer`s, written to only
through that interface, never awaited. `HubCore` decides; the driver (server/streams/hub.py, `Hub`) runs it on
asyncio: it ticks `refresh` and `fan_out`, runs each client's writer when `_wake` says its outbox has work, and
closes the clients a housekeeping `round` finds stalled. See hub.py for the rules in full.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from server import protocol
from server.clock import wall
from server.streams.core import mergepatch

log = logging.getLogger("jobpulse.hub")


class Peer(Protocol):
    """The hub's view of one websocket connection."""

    def ready(self) -> bool:
        """True when a send would complete without waiting (the socket's buffer has room)."""

    def write(self, message: Outgoing) -> bool:
        """Write the message's pre-built websocket frame (`message.frame`, or `message.deflated(bits)` where the
        connection compresses) now, if this peer can; False means use `send`."""

    async def send(self, message: str) -> None:
        """Send one text message."""

    async def close(self, code: int, reason: str) -> None:
        """Close the websocket with a close frame."""

    def abort(self) -> None:
        """Cut the connection off without waiting (for a peer that reads nothing); nothing once it is closing on its
        own (its client answered the close frame)."""

    def pending(self) -> int | None:
        """Bytes written but not yet taken by the client (its transport's and its kernel's queues), or None when
        the peer cannot tell."""

    def written(self) -> int:
        """Bytes written to the client so far, all ways; less `pending()`, what it has taken."""

    def ping(self, payload: bytes) -> bool:
        """Send a websocket ping now, behind whatever is queued; False when this peer cannot (the hub then watches
        only its sends)."""

    def pong(self) -> bytes | None:
        """The payload of the last pong the client sent (a client answers a ping once it has read up to it)."""


@dataclass(frozen=True)
class HubLimits:
    tick: float = 0.025
    tick_max: float = 0.2  # the longest the tick stretches to while the loop is behind
    beat: float = 2.0
    patch_ring: int = 256
    client_queue: int = 64
    client_queue_bytes: int = 1_048_576
    stall_timeout: float = 15.0
    max_views: int = 1_000  # parametrized views open at once
    view_ttl: float = 60.0  # s a view nobody watches is kept, so a reconnecting page can resume it

    @property
    def ping_every(self) -> float:
        """How often each client is asked whether it reads (a websocket ping): a quarter of the stall timeout, and
        no more often than the beat (each ping is a pong to parse, per client)."""
        return min(self.beat, self.stall_timeout / 4)

    @property
    def housekeeping(self) -> float:
        """The period of the round that beats, pings and closes stalled clients."""
        return min(self.beat / 2, 1.0, self.stall_timeout / 4)

    @property
    def stall_bound(self) -> float:
        """The longest a client that stops reading stays open: its next ping can go up to `ping_every` and one
        round later, and the round that finds it unanswered `stall_timeout` after that, up to a round late."""
        return self.stall_timeout + self.ping_every + 2 * self.housekeeping


Projector = Callable[[], dict[str, Any]]
# Makes the feed of a parametrized widget key: (aspects, projector, min seconds between recomputes).
# Raises protocol.ProtocolError for a key it cannot serve.
Resolver = Callable[[str], tuple[int, Projector, float]]


@dataclass
class HubStats:
    flushes: int = 0
    patches: int = 0
    messages: int = 0
    inline_sends: int = 0
    frame_writes: int = 0
    queued_sends: int = 0
    resyncs: int = 0
    snapshots_encoded: int = 0
    stalled_closed: int = 0
    pings: int = 0
    views_opened: int = 0
    views_closed: int = 0
    flush_seconds: float = 0.0
    stretched_flushes: int = 0  # flushes after a tick longer than the configured one (the loop was saturated)
    tick_interval: float = 0.0  # the tick in force now, s (the hub starts it at the configured tick)


class Outgoing:
    """One server message, shared by every client it goes to: its JSON, its text and its frames, each made once."""

    __slots__ = ("_deflated", "_frame", "_text", "keep", "payload")

    def __init__(self, payload: bytes, keep: bool = False) -> None:
        self.payload = payload
        self.keep = keep  # survives conflation: an ack (every command gets exactly one), not a widget's data
        self._frame: bytes | None = None
        self._text: str | None = None
        self._deflated: tuple[int, bytes] | None = None

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = protocol.text_frame(self.payload)
        return self._frame

    def deflated(self, window_bits: int) -> bytes:
        """Its frame compressed on its own (permessage-deflate without context takeover), for every connection
        that negotiated that window: compressed once, not once a client (server/wsdeflate.py)."""
        cached = self._deflated
        if cached is None or cached[0] != window_bits:
            cached = self._deflated = (window_bits, protocol.deflated_text_frame(self.payload, window_bits))
        return cached[1]

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.payload.decode()
        return self._text

    def __len__(self) -> int:
        return len(self.payload)


class Feed:
    """One widget (or parametrized view): its projection, last view, seq, recent patches and snapshot cache."""

    __slots__ = (
        "aspects",
        "dynamic",
        "idle_since",
        "last_refresh",
        "min_interval",
        "name",
        "pending",
        "project",
        "ring",
        "seq",
        "snapshot",
        "subscribers",
        "view",
    )

    def __init__(
        self,
        name: str,
        aspects: int,
        project: Projector,
        ring: int,
        dynamic: bool = False,
        min_interval: float = 0.0,
        now: float = 0.0,
    ) -> None:
        self.name = name
        self.aspects = int(aspects)  # an Aspect flag; a plain int keeps the flush's & one instruction
        self.project = project
        self.seq = 0
        self.view: dict[str, Any] | None = None
        self.ring: deque[tuple[int, bytes]] = deque(maxlen=ring)  # (seq, encoded patch frame)
        self.snapshot: tuple[int, bytes] | None = None  # (seq, encoded snapshot frame)
        self.dynamic = dynamic  # made on demand for a parametrized key; dropped when nobody watches it
        self.subscribers = 0
        self.idle_since: float | None = now if dynamic else None
        self.min_interval = min_interval  # an expensive view (a query) is recomputed at most this often
        self.last_refresh = 0.0
        self.pending = False  # its inputs changed while it had to wait for min_interval


class ClientState:
    """One connected browser as the hub's rules see it: what it holds, its outbox, its clocks."""

    __slots__ = (
        "busy_since",
        "closed",
        "held",
        "last_sent",
        "outbox",
        "outbox_bytes",
        "peer",
        "pending_seen",
        "ping_payload",
        "ping_since",
        "ping_written",
        "pinged_at",
        "resync",
        "taken_seen",
        "widgets",
    )

    def __init__(self, peer: Peer, now: float) -> None:
        self.peer = peer
        # The widgets it subscribes to. It gets every patch of these in seq order (or, after an overflow, a
        # snapshot), so the hub need not remember which seq each client holds.
        self.widgets: frozenset[str] = frozenset()
        # A list, not a deque: it holds at most client_queue messages and is nearly always empty, and an empty
        # deque costs 600 bytes, a list 56 (10,000 idle clients a process: issue #17).
        self.outbox: list[Outgoing] = []
        self.outbox_bytes = 0
        self.resync = False
        self.busy_since: float | None = None  # monotonic time a send started, or last made progress, unfinished
        self.pending_seen: int | None = None  # the peer's unsent bytes at the last stall check
        self.taken_seen: int | None = None  # and the bytes it had taken by then
        self.ping_since: float | None = None  # monotonic time its ping went (or its bytes last shrank), unanswered
        self.ping_payload = b""
        # Its ping of a round ago is unanswered: what is written now would only deepen a backlog that the ping waits
        # behind. Messages wait in the outbox (conflated into snapshots if it overflows) until the pong.
        self.held = False
        self.ping_written = 0  # bytes written to it up to its ping, the ping included: once taken, the ping has left
        self.pinged_at = now
        self.last_sent = now
        self.closed = False


class HubCore:
    """The hub's state and rules (see the module docstring); `Hub` runs it."""

    def __init__(
        self,
        widgets: Iterable[tuple[str, int, Projector]],
        limits: HubLimits,
        epoch: str,
        clock: Callable[[], float] = wall,
        resolver: Resolver | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.epoch = epoch
        self.clock = clock  # wall time, for the `now` of batches and beats
        self.monotonic = monotonic  # for every interval the rules measure (throttles, idle views, stalls, beats)
        self.resolver = resolver
        self.feeds = {name: Feed(name, aspects, project, limits.patch_ring) for name, aspects, project in widgets}
        self.views = 0  # dynamic feeds open
        self.clients: set[ClientState] = set()
        # Clients grouped by the exact set of widgets they take: a tick builds one message per group.
        self.groups: dict[frozenset[str], set[ClientState]] = {}
        self.stats = HubStats(tick_interval=limits.tick)
        for feed in self.feeds.values():
            self._refresh(feed)

    # -- hooks the driver fills -----------------------------------------------------------------

    def _new_client(self, peer: Peer) -> ClientState:
        """The state of a new client (the driver adds what it needs to run it)."""
        return ClientState(peer, self.monotonic())

    def _wake(self, client: ClientState) -> None:
        """`client`'s outbox has work (or it is resyncing): the driver sends it when the client can take it."""

    # -- widget state ---------------------------------------------------------------------------

    def _refresh(self, feed: Feed) -> bytes | None:
        """Recompute a widget's view; if it changed, bump its seq and return the encoded patch frame."""
        view = feed.project()
        if feed.view is None:
            feed.view = view
            return None
        patch = mergepatch.diff(feed.view, view)
        if patch is None:
            return None
        feed.view = view
        feed.seq += 1
        frame = protocol.widget_frame("patch", feed.name, feed.seq, protocol.encode(patch))
        feed.ring.append((feed.seq, frame))
        self.stats.patches += 1
        return frame

    def snapshot_frame(self, name: str) -> bytes:
        """The widget's snapshot frame at its current seq, encoded once per version."""
        feed = self.feeds[name]
        cached = feed.snapshot
        if cached is not None and cached[0] == feed.seq:
            return cached[1]
        assert feed.view is not None
        frame = protocol.widget_frame("snapshot", name, feed.seq, protocol.encode(feed.view))
        feed.snapshot = (feed.seq, frame)
        self.stats.snapshots_encoded += 1
        return frame

    def view(self, name: str) -> tuple[int, dict[str, Any]]:
        """The widget's current seq and data (for JSON endpoints and tests)."""
        feed = self.feeds[name]
        if feed.pending and not feed.min_interval:
            feed.pending = False
            self._refresh(feed)  # nobody watched it: bring it up to date before it is read
        assert feed.view is not None
        return feed.seq, feed.view

    def refresh(self, dirty: int) -> tuple[dict[str, bytes], float]:
        """Recompute the watched widgets that read the `dirty` aspects (or wait for it); return their patch frames
        by widget, and how soon a throttled one may be recomputed (0: none waits)."""
        frames: dict[str, bytes] = {}
        now = self.monotonic()
        waiting = 0.0
        for feed in self.feeds.values():
            if not (feed.aspects & dirty or feed.pending):
                continue
            if feed.min_interval:
                wait = feed.last_refresh + feed.min_interval - now
                if wait > 0:
                    feed.pending = True
                    waiting = max(waiting, wait)
                    continue
                feed.pending = False
                feed.last_refresh = now
            if not feed.subscribers:
                # Nobody watches: recompute when someone does. Its seq stands still meanwhile, so a client
                # resuming at that seq gets one patch from the old view to the new (merge patches compose).
                feed.pending = True
                continue
            frame = self._refresh(feed)
            if frame is not None:
                frames[feed.name] = frame
        return frames, waiting

    def fan_out(self, frames: dict[str, bytes]) -> None:
        """Send each group of clients one batch of the patches it takes: built once per distinct set of widgets."""
        now = self.clock()
        built: dict[tuple[str, ...], Outgoing] = {}
        deliver = self._deliver
        for group, members in self.groups.items():
            key = tuple(name for name in frames if name in group)
            if not key:
                continue
            message = built.get(key)
            if message is None:
                message = Outgoing(protocol.batch(now, [frames[name] for name in key]))
                built[key] = message
                self.stats.messages += 1
            for client in members:
                if not client.resync:  # a resyncing client gets snapshots at the current seqs anyway
                    deliver(client, message)

    # -- clients --------------------------------------------------------------------------------

    def attach(self, peer: Peer) -> ClientState:
        client = self._new_client(peer)
        self.clients.add(client)
        return client

    def subscribe(
        self, client: ClientState, widgets: Iterable[str], epoch: str | None, resume: dict[str, int]
    ) -> list[protocol.ProtocolError]:
        """Add widgets to a client and send what it lacks: nothing, the missed patches, or a snapshot.

        Returns the problems with keys it could not serve (the others are served).
        """
        frames: list[bytes] = []
        names = []
        problems = []
        for name in widgets:
            try:
                feed = self.feeds.get(name) or self._open(name)
            except protocol.ProtocolError as exc:
                if exc.ref is None:
                    exc.ref = name[:400]  # which key of the list failed: the client can tell (docs/protocol.md 3.3)
                problems.append(exc)
                continue
            if feed.pending:
                feed.pending = False
                self._refresh(feed)  # it was idle; bring it up to date before anyone reads it
            held = resume.get(name) if epoch == self.epoch else None
            frames.extend(self._catch_up(feed, held))
            names.append(name)
        self._regroup(client, client.widgets | frozenset(names))
        if frames and not client.resync:
            self._deliver(client, Outgoing(protocol.batch(self.clock(), frames)))
        return problems

    def _open(self, key: str) -> Feed:
        """Make the feed of a parametrized widget key."""
        if self.resolver is None:
            raise protocol.ProtocolError(protocol.ErrorCode.UNKNOWN_WIDGET, f"unknown widget {key[:80]!r}")
        if self.views >= self.limits.max_views:
            self._drop_idle(force=True)
            if self.views >= self.limits.max_views:
                raise protocol.ProtocolError(protocol.ErrorCode.RATE, "too many views open; try again later")
        aspects, project, min_interval = self.resolver(key)
        feed = Feed(
            key, aspects, project, self.limits.patch_ring, dynamic=True, min_interval=min_interval, now=self.monotonic()
        )
        feed.view = project()
        feed.last_refresh = self.monotonic()
        self.feeds[key] = feed
        self.views += 1
        self.stats.views_opened += 1
        return feed

    def _drop_idle(self, force: bool = False) -> None:
        """Close views nobody has watched for view_ttl (or, when `force`, every view nobody watches)."""
        now = self.monotonic()
        for key in [k for k, f in self.feeds.items() if f.dynamic and f.subscribers == 0 and f.idle_since]:
            feed = self.feeds[key]
            if force or now - (feed.idle_since or now) >= self.limits.view_ttl:
                del self.feeds[key]
                self.views -= 1
                self.stats.views_closed += 1

    def _catch_up(self, feed: Feed, held: int | None) -> list[bytes]:
        if held is not None:
            if held == feed.seq:
                return []
            ring = feed.ring
            if ring and held < feed.seq and ring[0][0] <= held + 1:
                # The ring holds consecutive seqs ending at feed.seq: index the missed ones from the right end
                # (a deque indexes its ends in O(1)) rather than walk up to 256 patches per widget per connect.
                return [ring[-i][1] for i in range(feed.seq - held, 0, -1)]
        return [self.snapshot_frame(feed.name)]

    def unsubscribe(self, client: ClientState, widgets: Iterable[str]) -> None:
        self._regroup(client, client.widgets - frozenset(widgets))

    def _regroup(self, client: ClientState, widgets: frozenset[str]) -> None:
        """Move a client to the group of clients that take exactly `widgets`; keep watcher counts."""
        if client.closed:
            widgets = frozenset()
        old = self.groups.get(client.widgets)
        if old is not None:
            old.discard(client)
            if not old:
                del self.groups[client.widgets]
        for name in widgets - client.widgets:
            feed = self.feeds.get(name)
            if feed is not None:
                feed.subscribers += 1
                feed.idle_since = None
        for name in client.widgets - widgets:
            feed = self.feeds.get(name)
            if feed is not None:
                feed.subscribers -= 1
                if feed.subscribers == 0 and feed.dynamic:
                    feed.idle_since = self.monotonic()
        if widgets and not client.closed:
            group = self.groups.setdefault(widgets, set())
            if group:
                # One frozenset (and one copy of its names) per group, not per client: 10,000 clients of one page
                # held 10,000 equal sets, ~0.9 KiB each with their names.
                widgets = next(iter(group)).widgets
            group.add(client)
        client.widgets = widgets

    def send(self, client: ClientState, message: bytes, keep: bool = False) -> None:
        """Send a control frame (welcome, pong, error, beat, ack) to one client, in order with its batches; a frame
        to `keep` (an ack) is not dropped when a slow client's queue is conflated into snapshots."""
        self._deliver(client, Outgoing(message, keep))

    def _deliver(self, client: ClientState, message: Outgoing) -> None:
        if client.closed:
            return
        if not client.outbox and client.busy_since is None and not client.resync and not client.held:
            peer = client.peer
            if peer.write(message):
                client.last_sent = self.monotonic()
                self.stats.frame_writes += 1
                return
            if peer.ready():
                self._send_inline(client, message)
                return
        if len(client.outbox) >= self.limits.client_queue or client.outbox_bytes >= self.limits.client_queue_bytes:
            # Conflate: what it missed is replaced by one snapshot per widget when it catches up. Acks stay: a
            # command's only answer cannot be rebuilt from a snapshot (bounded by the command rate and the queue).
            kept = [m for m in client.outbox if m.keep]
            if message.keep:
                kept.append(message)
            client.outbox.clear()
            client.outbox.extend(kept[-self.limits.client_queue :])
            client.outbox_bytes = sum(len(m) for m in client.outbox)
            client.resync = True
            self.stats.resyncs += 1
        else:
            client.outbox.append(message)
            client.outbox_bytes += len(message)
            self.stats.queued_sends += 1
        self._wake(client)

    def _send_inline(self, client: ClientState, message: Outgoing) -> None:
        # The peer said it has room, so this coroutine finishes without suspending; drive it here rather
        # than waking a task per client per tick. Should it suspend after all, hand it to a task.
        coro = client.peer.send(message.text)
        try:
            coro.send(None)
        except StopIteration:
            client.last_sent = self.monotonic()
            self.stats.inline_sends += 1
            return
        except Exception as exc:
            log.debug("send failed, dropping client: %r", exc)
            client.closed = True
            self._wake(client)  # its writer, if it has one, ends
            return
        coro.close()
        client.outbox.insert(0, message)
        client.outbox_bytes += len(message)
        self._wake(client)

    def _resync_message(self, client: ClientState) -> Outgoing:
        frames = [self.snapshot_frame(name) for name in sorted(client.widgets)]
        return Outgoing(protocol.batch(self.clock(), frames))

    # -- the stall rule -------------------------------------------------------------------------

    @staticmethod
    def _progressed(client: ClientState) -> bool:
        """Did a backlog of the client's move since the last check? A send or a ping that waits only for a slow reader
        is not stalled. Bytes held for it (pending) at the last check and taken since count; bytes its kernel takes
        at once, with nothing held, do not: a quiet stream fits in a receive buffer that nobody reads."""
        peer = client.peer
        pending = peer.pending()
        if pending is None:
            return False
        taken = peer.written() - pending
        held, client.pending_seen = client.pending_seen, pending
        seen, client.taken_seen = client.taken_seen, taken
        return bool(held) and seen is not None and taken > seen

    def _stalled(self, client: ClientState, now: float) -> float | None:
        """How long `client` has read nothing, when that is past the stall timeout; else None. Checks its ping
        (answered?) and its clocks (progress restarts them) on the way."""
        if client.ping_since is not None:
            if client.peer.pong() == client.ping_payload:
                client.ping_since = None
                if client.held:
                    client.held = False
                    if client.outbox or client.resync:
                        self._wake(client)
            else:
                client.held = True
        if client.busy_since is None and client.ping_since is None:
            client.pending_seen = client.taken_seen = None
            return None
        if self._progressed(client):
            if client.busy_since is not None:
                client.busy_since = now
            # A ping still behind a backlog that moves waits on a slow link, not on the client. Once the bytes ahead
            # of it have left, it is the client's to read and answer: a kernel that keeps taking a trickle for a
            # program that reads nothing (small receive buffers do, for a while) no longer buys time.
            taken = client.taken_seen
            if client.ping_since is not None and taken is not None and taken < client.ping_written:
                client.ping_since = now
        waited = now - min(t for t in (client.busy_since, client.ping_since) if t is not None)
        return waited if waited > self.limits.stall_timeout else None

    def round(self, now: float, ping: bytes) -> list[tuple[ClientState, float]]:
        """One housekeeping round at monotonic `now`: drop idle views, ping the clients due a ping (`ping` is this
        round's payload), beat the quiet ones; return the clients that read nothing for the stall timeout, with how
        long (the driver closes them)."""
        if self.views:
            self._drop_idle()
        stalled = []
        beat: Outgoing | None = None
        ping_every = self.limits.ping_every
        for client in list(self.clients):
            waited = self._stalled(client, now)
            if waited is not None:
                stalled.append((client, waited))
                continue
            if client.ping_since is None and now - client.pinged_at >= ping_every and client.peer.ping(ping):
                client.ping_since = client.pinged_at = now
                client.ping_payload = ping
                client.ping_written = client.peer.written()  # what has to leave before the ping has: _stalled
                self.stats.pings += 1
            if client.widgets and now - client.last_sent >= self.limits.beat:
                if beat is None:
                    beat = Outgoing(protocol.beat(self.clock()))
                self._deliver(client, beat)
        return stalled
