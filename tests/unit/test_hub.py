"""The hub's policies, with in-memory peers: seqs, encode-once fan-out, resume, conflation, stalls, beats."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from typing import Any

from server.streams.core import aspects, widgets
from server.streams.core.aspects import ALL
from server.streams.core.events import SourceStatus, Tick
from server.streams.core.reducer import fold, initial_state
from server.streams.hub import Hub
from server.streams.hubcore import HubLimits, Outgoing
from tests.unit.factories import beat, depth, job

T0 = 1_800_000_000.0

# Deadlines here are functional, each with three times its goal as margin (the goal follows from the hub's rules
# at the test's short settings; a loaded machine can stretch any wait, so no test holds a figure to its goal).
STALL_TIMEOUT_S = 0.3  # the rigs' stall_timeout
STALL_BEAT_S = 0.1  # their beat: the housekeeping that closes stalled clients runs every beat / 2
STALL_CLOSED_GOAL_S = STALL_TIMEOUT_S + STALL_BEAT_S / 2  # a socket that takes nothing is closed by then
STALL_CLOSED_BOUND_S = 3 * STALL_CLOSED_GOAL_S


async def until(condition: Any, within: float, what: str) -> None:
    """Poll `condition()` every 5 ms until it holds; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"{what}: not within {within:.2f} s"
        await asyncio.sleep(0.005)


class MemoryPeer:
    """A peer that keeps what it is sent; it can be made slow (not ready), stalled (sends never finish) or deaf
    (takes every write, as a kernel buffer does, but its program reads nothing: pings go unanswered)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.is_ready = True
        self.stalled = False
        self.deaf = False
        self.pings: list[bytes] = []
        self.last_pong: bytes | None = None
        self.closed_with: int | None = None
        self.aborted = False
        self.unsent: int | None = None  # bytes written and not yet taken, when the test tells
        self.written_bytes = 0

    def ready(self) -> bool:
        return self.is_ready and not self.stalled

    def write(self, message: Outgoing) -> bool:
        return False  # exercise the send path; RawPeer below takes frames

    async def send(self, message: str) -> None:
        self.written_bytes += len(message)
        if self.unsent is not None:
            self.unsent += len(message)  # held, like the rest, until the test lets bytes go
        if self.stalled:
            await asyncio.Event().wait()
        self.messages.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code

    def abort(self) -> None:
        self.aborted = True

    def pending(self) -> int | None:
        return self.unsent

    def written(self) -> int:
        return self.written_bytes

    def ping(self, payload: bytes) -> bool:
        self.pings.append(payload)
        if not (self.deaf or self.stalled):
            self.last_pong = payload  # a reading client answers at once
        return True

    def pong(self) -> bytes | None:
        return self.last_pong

    def frames(self) -> list[dict[str, Any]]:
        out = []
        for message in self.messages:
            body = json.loads(message)
            if body["type"] == "batch":
                out.extend(body["frames"])
        return out


class RawPeer(MemoryPeer):
    """A peer that takes pre-built frames, as uvicorn's websockets-sansio sockets do."""

    def __init__(self) -> None:
        super().__init__()
        self.frames_written: list[bytes] = []

    def write(self, message: Outgoing) -> bool:
        if not self.ready():
            return False
        frame = message.frame
        self.frames_written.append(frame)
        self.messages.append(_unframe(frame))
        self.written_bytes += len(frame)
        return True


def _unframe(frame: bytes) -> str:
    assert frame[0] == 0x81
    n = frame[1]
    start = 2 if n < 126 else (4 if n == 126 else 10)
    return frame[start:].decode()


class Rig:
    """A state, a hub with the real widget projections, and helpers to fold and flush."""

    def __init__(self, **limits: Any) -> None:
        self.state = initial_state()
        fold(self.state, SourceStatus(connected=True, at=T0), T0)
        fold(self.state, Tick(now=T0), T0)
        vl = widgets.ViewLimits()
        state = self.state
        self.hub = Hub(
            [(w.name, w.aspects, functools.partial(w.project, state, vl)) for w in widgets.WIDGETS],
            HubLimits(**{"tick": 0.01, "beat": 0.2, **limits}),
            epoch="ep1",
            clock=lambda: T0,
        )

    def fold(self, *events: Any, at: float = T0) -> None:
        changed = 0
        for event in events:
            changed |= fold(self.state, event, at)
        self.hub.mark(changed & ALL)

    def client(self, names: list[str], epoch: str | None = None, resume: dict[str, int] | None = None, raw=False):
        peer = RawPeer() if raw else MemoryPeer()
        client = self.hub.attach(peer)
        self.hub.subscribe(client, names, epoch, resume or {})
        return peer, client


async def test_patches_carry_strictly_increasing_seqs_per_widget():
    """Each widget's frames reach a client with seq growing by exactly one."""
    rig = Rig()
    peer, _ = rig.client(["live_jobs", "counters"])
    for i in range(20):
        rig.fold(job("queued", f"j{i}", ts=T0 + i), depth(ts=T0 + i, email=(i, 0, 0)))
        rig.hub.flush()
    seqs: dict[str, list[int]] = {}
    for frame in peer.frames():
        seqs.setdefault(frame["w"], []).append(frame["seq"])
    for name, values in seqs.items():
        assert values == list(range(values[0], values[0] + len(values))), name
        assert len(values) > 5


async def test_clients_with_the_same_widgets_get_the_same_bytes():
    """A tick's message is built once per subscription set and shared by every client holding that set."""
    rig = Rig()
    peers = [rig.client(["counters", "live_jobs"])[0] for _ in range(50)]
    other = rig.client(["counters"])[0]
    built = rig.hub.stats.messages
    rig.fold(job("queued", "j1", ts=T0), depth(ts=T0, email=(1, 0, 0)))
    rig.hub.flush()
    assert rig.hub.stats.messages - built == 2
    last = [p.messages[-1] for p in peers]
    assert all(m is last[0] for m in last)
    assert json.loads(other.messages[-1])["frames"][0]["w"] == "counters"


async def test_frames_are_built_once_and_written_to_every_raw_socket():
    """Where sockets take pre-built frames, every client of a subscription set gets the very same frame bytes."""
    rig = Rig()
    peers = [rig.client(["counters", "live_jobs"], raw=True)[0] for _ in range(20)]
    slow = rig.client(["counters", "live_jobs"], raw=True)[0]
    slow.is_ready = False
    written = len(slow.frames_written)  # its snapshot
    rig.fold(job("queued", "j1", ts=T0), depth(ts=T0, email=(1, 0, 0)))
    rig.hub.flush()
    last = [p.frames_written[-1] for p in peers]
    assert all(frame is last[0] for frame in last)
    assert json.loads(peers[0].messages[-1])["frames"][0]["w"] == "counters"
    assert rig.hub.stats.frame_writes >= 20
    assert len(slow.frames_written) == written  # not ready: queued for its writer, not written


async def test_snapshots_are_encoded_once_per_widget_version():
    """A thousand subscribers of the same widget version cost one snapshot encode."""
    rig = Rig()
    before = rig.hub.stats.snapshots_encoded
    for _ in range(1000):
        rig.client(["counters", "runners"])
    assert rig.hub.stats.snapshots_encoded - before == 2


async def test_resume_sends_missed_patches_or_a_snapshot():
    """A client that reconnects with its epoch and seqs gets only what it missed; a stranger gets snapshots."""
    rig = Rig(patch_ring=5)
    first, _ = rig.client(["counters"])
    seq0 = first.frames()[-1]["seq"]
    for i in range(3):
        rig.fold(depth(ts=T0 + i, email=(i + 1, 0, 0)))
        rig.hub.flush()
    resumed, _ = rig.client(["counters"], epoch="ep1", resume={"counters": seq0})
    assert [(f["type"], f["seq"]) for f in resumed.frames()] == [("patch", seq0 + 1), ("patch", seq0 + 2),
                                                                  ("patch", seq0 + 3)]  # fmt: skip
    current, _ = rig.client(["counters"], epoch="ep1", resume={"counters": seq0 + 3})
    assert current.messages == []
    stranger, _ = rig.client(["counters"], epoch="other", resume={"counters": seq0})
    assert [f["type"] for f in stranger.frames()] == ["snapshot"]
    for i in range(10):
        rig.fold(depth(ts=T0 + 10 + i, email=(50 + i, 0, 0)))
        rig.hub.flush()
    too_old, _ = rig.client(["counters"], epoch="ep1", resume={"counters": seq0})
    assert [f["type"] for f in too_old.frames()] == ["snapshot"]


async def test_a_slow_client_gets_one_snapshot_instead_of_a_backlog():
    """When a client's outbox overflows, its backlog is dropped and it later receives one snapshot per widget."""
    rig = Rig(client_queue=4)
    slow, client = rig.client(["counters", "live_jobs"])
    slow.is_ready = False
    healthy, _ = rig.client(["counters", "live_jobs"])
    for i in range(30):
        rig.fold(job("queued", f"j{i}", ts=T0 + i), depth(ts=T0 + i, email=(i + 1, 0, 0)))
        rig.hub.flush()
    assert client.resync and len(client.outbox) <= 4
    slow.is_ready = True
    client.wake.set()
    for _ in range(50):
        await asyncio.sleep(0)
    last = json.loads(slow.messages[-1])["frames"]
    assert sorted(f["type"] for f in last) == ["snapshot", "snapshot"]
    assert {f["w"]: f["data"] for f in last} == {"counters": rig.hub.view("counters")[1],
                                                "live_jobs": rig.hub.view("live_jobs")[1]}  # fmt: skip
    assert len(healthy.frames()) > 40
    rig.fold(depth(ts=T0 + 99, email=(999, 0, 0)))
    rig.hub.flush()
    patch = json.loads(slow.messages[-1])["frames"][0]
    assert patch["type"] == "patch" and patch["seq"] == rig.hub.view("counters")[0]


async def test_a_slow_clients_acks_survive_conflation():
    """Every command gets exactly one ack: when a slow client's backlog is replaced by snapshots, its acks (which no
    snapshot can rebuild) are still delivered, in order, before the snapshots' successors; its pongs may go."""
    from server import protocol

    rig = Rig(client_queue=4)
    slow, client = rig.client(["counters", "live_jobs"])
    slow.is_ready = False
    for i in range(30):
        rig.fold(job("queued", f"j{i}", ts=T0 + i), depth(ts=T0 + i, email=(i + 1, 0, 0)))
        rig.hub.flush()
        if i % 10 == 0:
            rig.hub.send(client, protocol.ack({"id": f"c{i}", "ok": True}), keep=True)
            rig.hub.send(client, protocol.pong(i, T0))
    assert client.resync
    slow.is_ready = True
    client.wake.set()
    for _ in range(50):
        await asyncio.sleep(0)
    bodies = [json.loads(m) for m in slow.messages]
    assert [b["id"] for b in bodies if b["type"] == "ack"] == ["c0", "c10", "c20"]
    last = [b for b in bodies if b["type"] == "batch"][-1]["frames"]
    assert {f["w"]: f["data"] for f in last} == {"counters": rig.hub.view("counters")[1],
                                                "live_jobs": rig.hub.view("live_jobs")[1]}  # fmt: skip


async def test_a_stalled_client_is_cut_off_and_others_are_not_held_up():
    """A client whose sends never finish is closed after stall_timeout; healthy clients keep getting patches."""
    rig = Rig(stall_timeout=STALL_TIMEOUT_S, beat=STALL_BEAT_S)
    rig.hub.start()
    try:
        stuck, stuck_client = rig.client(["counters"])
        stuck.stalled = True
        healthy, _ = rig.client(["counters"])
        rig.fold(depth(ts=T0, email=(1, 0, 0)))
        await asyncio.sleep(0.05)
        rig.fold(depth(ts=T0 + 1, email=(2, 0, 0)))
        await until(lambda: stuck.aborted, STALL_CLOSED_BOUND_S, "the stalled client closed")
        assert stuck_client not in rig.hub.clients
        assert rig.hub.stats.stalled_closed == 1
        assert json.loads(healthy.messages[-1])["type"] in ("batch", "beat")
        assert rig.hub.view("counters")[1]["pending"]["v"] == 2
    finally:
        await rig.hub.stop()


async def test_a_slow_reader_is_not_cut_off_while_its_socket_takes_bytes():
    """A send that waits is progress as long as the transport's buffer shrinks: only a socket that takes nothing
    for stall_timeout is closed (docs/protocol.md 3.5), so a slow reader stays and gets snapshots."""
    rig = Rig(stall_timeout=STALL_TIMEOUT_S, beat=STALL_BEAT_S, client_queue=2)
    rig.hub.start()
    try:
        slow, slow_client = rig.client(["counters"])
        stuck, stuck_client = rig.client(["counters"])
        for peer in (slow, stuck):
            peer.stalled = True
            peer.unsent = 60_000
        for i in range(5):
            rig.fold(depth(ts=T0 + i, email=(i, 0, 0)))
            rig.hub.flush()
        # The slow socket takes 1,000 bytes every 0.1 s (a third of the stall timeout), for at least the bound in
        # which the stuck one must be closed: 1.2 s, four stall timeouts.
        for _ in range(math.ceil(STALL_CLOSED_BOUND_S / 0.1) + 1):
            await asyncio.sleep(0.1)
            assert slow.unsent is not None
            slow.unsent -= 1_000
        assert stuck.aborted and stuck_client not in rig.hub.clients
        assert not slow.aborted and slow_client in rig.hub.clients
        assert rig.hub.stats.stalled_closed == 1
        assert slow_client.resync  # its backlog was dropped: a snapshot goes once its send completes
    finally:
        await rig.hub.stop()


async def test_a_client_that_reads_nothing_of_a_quiet_stream_is_closed_in_time():
    """Its socket takes every write (a kernel buffer holds a quiet stream's bytes for minutes), so no send ever waits:
    the unanswered ping closes it within the stall bound. Readers that answer stay, however long."""
    rig = Rig(stall_timeout=STALL_TIMEOUT_S, beat=STALL_BEAT_S)
    limits = rig.hub.limits
    rig.hub.start()
    loop = asyncio.get_running_loop()
    try:
        deaf, deaf_client = rig.client(["counters"])
        reader, reader_client = rig.client(["counters"])
        deaf.deaf = True
        stopped = loop.time()
        for i in range(3):
            rig.fold(depth(ts=T0 + i, email=(i, 0, 0)))
            await asyncio.sleep(0.02)
        await until(lambda: deaf.closed_with is not None, 3 * limits.stall_bound, "the deaf client closed")
        took = loop.time() - stopped
        assert deaf.closed_with == 4408 and deaf_client not in rig.hub.clients
        assert took >= STALL_TIMEOUT_S, took  # never before it had the whole stall timeout to answer
        assert rig.hub.stats.stalled_closed == 1 and deaf.pings
        # The reader was asked as often, answered, and stays; so does a deaf client that starts reading in time.
        late, late_client = rig.client(["counters"])
        late.deaf = True
        await asyncio.sleep(STALL_TIMEOUT_S / 2)
        late.deaf = False
        late.last_pong = late.pings[-1] if late.pings else None
        await asyncio.sleep(limits.stall_bound)
        assert len(reader.pings) >= 3 and reader_client in rig.hub.clients and late_client in rig.hub.clients
        assert rig.hub.stats.stalled_closed == 1
    finally:
        await rig.hub.stop()


async def test_a_slow_reader_whose_pong_waits_behind_its_backlog_stays():
    """A ping waits behind everything queued before it: while those bytes leave (the kernel's queue shrinks), the
    client reads, slowly, and stays; once they stop leaving, the unanswered ping closes it."""
    rig = Rig(stall_timeout=STALL_TIMEOUT_S, beat=STALL_BEAT_S)
    limits = rig.hub.limits
    rig.hub.start()
    try:
        slow, slow_client = rig.client(["counters"])
        slow.deaf = True  # no pong until it has read its backlog
        slow.unsent = 200_000
        for _ in range(math.ceil(3 * limits.stall_bound / 0.05)):
            await asyncio.sleep(0.05)
            assert slow.unsent is not None
            slow.unsent -= 500
        assert slow_client in rig.hub.clients and not slow.aborted and slow.closed_with is None
        await until(lambda: slow_client not in rig.hub.clients, 3 * limits.stall_bound, "closed once it stopped")
        assert slow.closed_with == 4408
    finally:
        await rig.hub.stop()


async def test_a_trickle_into_a_kernel_buffer_does_not_keep_a_deaf_client():
    """Small receive buffers keep taking a trickle for a while after their program stopped reading. Once the bytes
    that were ahead of its ping have left, that trickle no longer counts: only the pong does."""
    rig = Rig(stall_timeout=STALL_TIMEOUT_S, beat=STALL_BEAT_S)
    limits = rig.hub.limits
    rig.hub.start()
    loop = asyncio.get_running_loop()
    try:
        deaf, deaf_client = rig.client(["counters"])
        deaf.deaf = True
        deaf.unsent = 500
        stopped = loop.time()
        while deaf_client in rig.hub.clients and loop.time() < stopped + 3 * limits.stall_bound:
            await asyncio.sleep(0.02)
            assert deaf.unsent is not None
            deaf.written_bytes += 100  # the stream goes on: 5 KB/s written
            deaf.unsent += 100 - 80  # and its kernel takes 4 KB/s of it, never read
        took = loop.time() - stopped
        assert deaf_client not in rig.hub.clients and deaf.closed_with == 4408, took
    finally:
        await rig.hub.stop()


async def test_changes_are_coalesced_on_the_tick_and_idle_ones_go_at_once():
    """A lone change is flushed at once; a burst within one tick goes out as one batch."""
    tick = 0.6  # long: "at once" (a loop turn) and "on the next tick" stay far apart on a loaded machine too
    rig = Rig(tick=tick, beat=60.0)
    rig.hub.start()
    try:
        peer, _ = rig.client(["counters"])
        await asyncio.sleep(tick + 0.1)  # a quiet spell of more than a tick
        start = len(peer.messages)
        loop = asyncio.get_running_loop()
        rig.fold(depth(ts=T0 + 1, email=(1, 0, 0)))
        # Leading edge: no wait for the tick. The goal is a loop turn; a third of the tick is the bound.
        await until(lambda: len(peer.messages) > start, tick / 3, "the lone change flushed before the tick")
        first = loop.time()
        for i in range(20):
            rig.fold(depth(ts=T0 + 2 + i, email=(10 + i, 0, 0)))
            await asyncio.sleep(0.001)
        span = loop.time() - first  # ~30 ms; longer when other work holds the machine
        await until(lambda: rig.hub.view("counters")[1]["pending"]["v"] == 29, 3 * tick, "the burst flushed")
        await until(lambda: json.loads(peer.messages[-1])["frames"][0]["data"]["pending"]["v"] == 29, 3 * tick,
                    "the burst delivered")  # fmt: skip
        batches = [m for m in peer.messages[start:] if json.loads(m)["type"] == "batch"]
        # The lone change's batch, then at most one batch per tick the burst lasted, and the last one after it:
        # two when the burst fits in a tick, as it does unless the machine holds this process back.
        assert 2 <= len(batches) <= 2 + int(span / tick), (len(batches), span)
        assert rig.hub.view("counters")[1]["pending"]["v"] == 29
    finally:
        await rig.hub.stop()


async def test_a_resume_at_the_rings_oldest_edge_gets_every_patch_it_holds():
    """The ring is indexed from its newest end: a client one seq behind its oldest patch gets the whole ring."""
    rig = Rig(patch_ring=5)
    rig.client(["counters"])
    for i in range(12):
        rig.fold(depth(ts=T0 + i, email=(i + 1, 0, 0)))
        rig.hub.flush()
    seq = rig.hub.view("counters")[0]
    edge, _ = rig.client(["counters"], epoch="ep1", resume={"counters": seq - 5})
    assert [(f["type"], f["seq"]) for f in edge.frames()] == [("patch", seq - 4 + i) for i in range(5)]
    beyond, _ = rig.client(["counters"], epoch="ep1", resume={"counters": seq - 6})
    assert [f["type"] for f in beyond.frames()] == ["snapshot"]
    ahead, _ = rig.client(["counters"], epoch="ep1", resume={"counters": seq + 3})
    assert [f["type"] for f in ahead.frames()] == ["snapshot"]


async def test_the_tick_stretches_while_the_loop_is_saturated_and_comes_back():
    """A loop with more work than time (here a task that spins) gets fewer flushes: the tick doubles up to
    tick_max, so fewer socket writes compete with that work; once the loop idles again the tick returns."""
    rig = Rig(tick=0.01, tick_max=0.08)
    rig.hub.start()
    spinning = True

    async def spin() -> None:
        while spinning:
            stop_at = time.perf_counter() + 0.004
            while time.perf_counter() < stop_at:
                pass
            await asyncio.sleep(0)

    folded = 0
    widest = 0.0  # the longest tick seen in the last window

    async def changes(seconds: float) -> int:
        """Keep the hub dirty for `seconds` (a new depth every 2 ms); how many flushes it made meanwhile."""
        nonlocal folded, widest
        before = rig.hub.stats.flushes
        widest = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            folded += 1
            rig.fold(depth(ts=T0 + folded, email=(folded, 0, 0)))
            widest = max(widest, rig.hub.stats.tick_interval)
            await asyncio.sleep(0.002)
        return rig.hub.stats.flushes - before

    try:
        rig.client(["counters"])
        easy = await changes(0.5)
        assert rig.hub.stats.tick_interval == 0.01
        stretched = rig.hub.stats.stretched_flushes  # 0, unless other processes kept this one queued a while
        spinner = asyncio.create_task(spin())
        # Reaching tick_max takes three saturated ticks and three doublings: 0.03 + 0.02 + 0.04 + 0.08 = 0.17 s,
        # the goal; it is checked after 0.8 s of saturation, over three times that.
        await changes(0.3)
        busy = await changes(0.5)
        # It reached tick_max while saturated. Read over the window, not at its last instant: on a VM whose host
        # steals time, one tick may read the loop as idle and halve the tick for a moment (a CI run saw 0.04).
        assert widest == 0.08
        assert rig.hub.stats.stretched_flushes > stretched
        # A ratio against the easy window measured in the same run, not a bare count: the point of the stretch.
        assert busy < easy / 2, (busy, easy)
        spinning = False
        await spinner
        await changes(0.5)  # coming back halves per tick: 0.08 + 0.04 + 0.02 = 0.14 s, the goal; 0.5 s allowed
        assert rig.hub.stats.tick_interval == 0.01
    finally:
        spinning = False
        await rig.hub.stop()


async def test_a_quiet_client_gets_beats():
    """With nothing to send, a subscribed client still hears a beat every beat interval."""
    rig = Rig(beat=0.1)
    rig.hub.start()
    try:
        peer, _ = rig.client(["counters"])
        await asyncio.sleep(0.5)
        assert any(json.loads(m)["type"] == "beat" for m in peer.messages)
    finally:
        await rig.hub.stop()


async def test_a_ticks_patch_is_a_small_fraction_of_the_snapshot():
    """On a busy board, one runner's beat and one job's start cost under 5% of the full snapshot's bytes."""
    rig = Rig()
    events: list[Any] = [beat(f"runner-{i:02d}", ts=T0, concurrency=4) for i in range(20)]
    events += [job("queued", f"job-{i:03d}", ts=T0 + i, channel="email") for i in range(40)]
    events += [job("failed", f"bad-{i}", ts=T0, runner="runner-01", error="ValueError: nope " * 4) for i in range(10)]
    events += [job("scheduled", f"later-{i}", ts=T0, run_at=T0 + 600 + i) for i in range(10)]
    events += [depth(ts=T0, email=(40, 5, 10), reports=(300, 1, 0))]
    rig.fold(*events)
    rig.hub.flush()
    peer, _ = rig.client(["counters", "published", "live_jobs", "failures", "scheduled", "runners", "health"])
    snapshot_bytes = len(peer.messages[-1])
    rig.fold(beat("runner-03", ts=T0 + 2, concurrency=4), job("started", "job-000", ts=T0 + 2, runner="runner-03"),
             at=T0 + 2)  # fmt: skip
    rig.hub.flush()
    patch_bytes = len(peer.messages[-1])
    assert patch_bytes / snapshot_bytes < 0.05, (patch_bytes, snapshot_bytes)


class ViewRig(Rig):
    """A rig whose hub also serves parametrized `pending?channel=<name>` views."""

    def __init__(self, min_interval: float = 0.0, **limits: Any) -> None:
        super().__init__(**limits)
        self.projections = 0
        state = self.state

        def resolve(key: str):
            from server.protocol import ErrorCode, ProtocolError, parse_view_key

            name, params = parse_view_key(key)
            if name != "pending" or set(params) != {"channel"}:
                raise ProtocolError(ErrorCode.UNKNOWN_WIDGET, f"no such view {key}")
            channel = params["channel"]

            def project() -> dict[str, Any]:
                self.projections += 1
                found = state.channels.get(channel)
                return {"queued": found.queued if found else 0}

            return (aspects.CHANNELS | aspects.COUNTERS, project, min_interval)

        self.hub.resolver = resolve


async def test_a_parametrized_view_is_shared_by_its_watchers():
    """Two clients of the same view share one feed and one message; a client of another view gets its own."""
    rig = ViewRig()
    a, _ = rig.client(["pending?channel=email"])
    b, _ = rig.client(["pending?channel=email"])
    c, _ = rig.client(["pending?channel=reports"])
    assert rig.hub.views == 2
    rig.fold(depth(ts=T0, email=(5, 0, 0), reports=(7, 0, 0)))
    rig.hub.flush()
    assert a.messages[-1] is b.messages[-1]
    assert json.loads(a.messages[-1])["frames"][0]["data"] == {"queued": 5}
    assert json.loads(c.messages[-1])["frames"][0]["data"] == {"queued": 7}


async def test_bad_view_keys_are_refused_and_the_rest_served():
    """A subscription with a bad key serves the good keys and reports each bad one."""
    rig = ViewRig()
    _, client = rig.client([])
    problems = rig.hub.subscribe(
        client, ["counters", "pending?channel=a&x=1", "pending?zz=1&channel=a", "nope"], None, {}
    )
    assert [p.code.value for p in problems] == ["unknown_widget"] * 3
    assert [p.ref for p in problems] == ["pending?channel=a&x=1", "pending?zz=1&channel=a", "nope"]  # which failed
    assert client.widgets == frozenset({"counters"})


async def test_views_nobody_watches_are_closed_after_their_ttl():
    """An unwatched view stays for view_ttl (so a reconnect resumes it), then is dropped."""
    rig = ViewRig(view_ttl=0.05)
    _, client = rig.client(["pending?channel=email"])
    rig.hub.unsubscribe(client, ["pending?channel=email"])
    rig.hub._drop_idle()
    assert "pending?channel=email" in rig.hub.feeds
    await asyncio.sleep(0.08)
    rig.hub._drop_idle()
    assert "pending?channel=email" not in rig.hub.feeds
    assert rig.hub.views == 0


async def test_the_number_of_views_is_capped():
    """Past max_views, a new view is refused unless an unwatched one can make room."""
    rig = ViewRig(max_views=2)
    rig.client(["pending?channel=a"])
    _, b = rig.client(["pending?channel=b"])
    _, c = rig.client([])
    problems = rig.hub.subscribe(c, ["pending?channel=c"], None, {})
    assert [p.code.value for p in problems] == ["rate"]
    rig.hub.unsubscribe(b, ["pending?channel=b"])
    assert rig.hub.subscribe(c, ["pending?channel=c"], None, {}) == []


async def test_throttled_views_are_recomputed_at_most_once_per_interval():
    """A view with a minimum interval is recomputed at most that often, and still catches up."""
    interval = 0.2
    rig = ViewRig(min_interval=interval)
    peer, _ = rig.client(["pending?channel=email"])
    rig.hub.start()
    try:
        loop = asyncio.get_running_loop()
        before = rig.projections
        first = loop.time()
        for i in range(10):
            rig.fold(depth(ts=T0 + i, email=(i + 1, 0, 0)))
            await asyncio.sleep(0.02)
        # Caught up: the last change shows within one interval of it (the goal); three intervals is the bound.
        await until(lambda: peer.frames()[-1]["data"] == {"queued": 10}, 3 * interval, "the view caught up")
        span = loop.time() - first  # ~0.2-0.4 s; longer when other work holds the machine
        # Ten changes, yet at most one recompute per interval they spanned (and the first at once): 3 in ~0.4 s.
        assert rig.projections - before <= 1 + int(span / interval), (rig.projections - before, span)
    finally:
        await rig.hub.stop()


async def test_widgets_nobody_watches_are_not_recomputed_and_resume_with_one_patch():
    """A widget without subscribers costs nothing per tick; a client resuming at its seq gets one combined patch."""
    from server.streams.core import mergepatch

    rig = Rig()
    calls = {"n": 0}
    feed = rig.hub.feeds["counters"]
    project = feed.project

    def counting() -> dict[str, Any]:
        calls["n"] += 1
        return project()

    feed.project = counting
    watcher, client = rig.client(["counters"])
    held = watcher.frames()[-1]
    rig.hub.unsubscribe(client, ["counters"])
    calls["n"] = 0
    for i in range(5):
        rig.fold(depth(ts=T0 + i, email=(i + 1, 0, 0)))
        rig.hub.flush()
    assert calls["n"] == 0 and feed.seq == held["seq"]
    back, _ = rig.client(["counters"], epoch="ep1", resume={"counters": held["seq"]})
    frames = back.frames()
    assert [(f["type"], f["seq"]) for f in frames] == [("patch", held["seq"] + 1)]
    assert mergepatch.apply(held["data"], frames[0]["data"]) == rig.hub.view("counters")[1]
    assert rig.hub.view("counters")[1]["pending"]["v"] == 5
