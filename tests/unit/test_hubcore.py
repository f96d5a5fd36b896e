"""The hub's rules without asyncio (server/streams/hubcore.py): no event loop, an injected clock, explicit states."""

from __future__ import annotations

import json
from typing import Any

from server import protocol
from server.streams.hubcore import ClientState, HubCore, HubLimits, Outgoing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """A peer that takes nothing now (every message waits in the outbox) and answers pings only when told."""

    def __init__(self) -> None:
        self.pinged: list[bytes] = []
        self.answered: bytes | None = None

    def ready(self) -> bool:
        return False

    def write(self, message: Outgoing) -> bool:
        return False

    async def send(self, message: str) -> None:  # pragma: no cover - never ready, never sent to inline
        raise AssertionError("the core must not send to a peer that is not ready")

    async def close(self, code: int, reason: str) -> None:  # pragma: no cover - the driver closes
        raise AssertionError("the core never closes")

    def abort(self) -> None:  # pragma: no cover
        raise AssertionError("the core never aborts")

    def pending(self) -> int | None:
        return None

    def written(self) -> int:
        return 0

    def ping(self, payload: bytes) -> bool:
        self.pinged.append(payload)
        return True

    def pong(self) -> bytes | None:
        return self.answered


class Core(HubCore):
    """The core with its one hook filled: it notes which clients it woke, as the driver would start their writers."""

    woken: list[ClientState]

    def _wake(self, client: ClientState) -> None:
        self.woken.append(client)


def core(view: dict[str, Any], clock: Clock, **limits: Any) -> Core:
    hub = Core([("w", 1, lambda: dict(view))], HubLimits(**limits), epoch="ep", clock=lambda: 0.0, monotonic=clock)
    hub.woken = []
    return hub


def frames_of(message: bytes) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = json.loads(message)["frames"]
    return frames


def test_a_tick_patches_each_group_once_and_queues_for_a_busy_client() -> None:
    clock = Clock()
    view = {"n": 1}
    hub = core(view, clock)
    client = hub.attach(Peer())
    assert hub.subscribe(client, ["w"], None, {}) == []
    assert [f["type"] for f in frames_of(client.outbox[0].payload)] == ["snapshot"]
    view["n"] = 2
    frames, waiting = hub.refresh(1)
    assert waiting == 0 and list(frames) == ["w"]
    hub.fan_out(frames)
    patch = frames_of(client.outbox[-1].payload)[0]
    assert (patch["type"], patch["seq"], patch["data"]) == ("patch", 1, {"n": 2})
    assert hub.woken and hub.woken[-1] is client


def test_an_overflowing_outbox_is_conflated_into_a_resync_keeping_acks() -> None:
    clock = Clock()
    view = {"n": 0}
    hub = core(view, clock, client_queue=4)
    client = hub.attach(Peer())
    hub.subscribe(client, ["w"], None, {})
    hub.send(client, protocol.ack({"id": "c1", "ok": True}), keep=True)
    for n in range(1, 10):
        view["n"] = n
        hub.fan_out(hub.refresh(1)[0])
    assert client.resync and hub.stats.resyncs >= 1
    assert [m.keep for m in client.outbox] == [True]  # the ack stayed; the patches went
    snapshot = frames_of(hub._resync_message(client).payload)[0]
    assert (snapshot["type"], snapshot["data"]) == ("snapshot", {"n": 9})


def test_resume_is_served_from_the_patch_ring_or_by_a_snapshot() -> None:
    clock = Clock()
    view = {"n": 0}
    hub = core(view, clock, patch_ring=3)
    watcher = hub.attach(Peer())
    hub.subscribe(watcher, ["w"], None, {})
    for n in range(1, 6):
        view["n"] = n
        hub.fan_out(hub.refresh(1)[0])
    near = hub.attach(Peer())
    hub.subscribe(near, ["w"], "ep", {"w": 3})
    assert [(f["type"], f["seq"]) for f in frames_of(near.outbox[0].payload)] == [("patch", 4), ("patch", 5)]
    far = hub.attach(Peer())
    hub.subscribe(far, ["w"], "ep", {"w": 1})  # seq 2 has left the ring of 3
    assert [(f["type"], f["seq"]) for f in frames_of(far.outbox[0].payload)] == [("snapshot", 5)]


def test_a_client_that_answers_no_ping_is_stalled_after_the_timeout_of_the_injected_clock() -> None:
    clock = Clock()
    hub = core({"n": 0}, clock, stall_timeout=8.0, beat=2.0)
    peer = Peer()
    client = hub.attach(peer)
    hub.subscribe(client, ["w"], None, {})
    clock.now += hub.limits.ping_every
    assert hub.round(clock.now, b"p1") == [] and peer.pinged == [b"p1"]
    clock.now += 8.0
    assert hub.round(clock.now, b"p2") == []  # exactly the timeout: not yet
    clock.now += 0.5
    stalled = hub.round(clock.now, b"p3")
    assert [(c, round(w, 1)) for c, w in stalled] == [(client, 8.5)]
    # One that answers is held only while the ping is out, and never stalled.
    other_peer = Peer()
    other = hub.attach(other_peer)
    clock.now += hub.limits.ping_every
    hub.round(clock.now, b"p4")
    other_peer.answered = b"p4"
    clock.now += 20.0
    assert other not in [c for c, _ in hub.round(clock.now, b"p5")]
    assert not other.held


def test_idle_views_are_dropped_by_the_injected_clock() -> None:
    clock = Clock()
    hub = core({"n": 0}, clock, view_ttl=60.0)
    hub.resolver = lambda key: (1, lambda: {"key": key}, 0.0)
    client = hub.attach(Peer())
    assert hub.subscribe(client, ["x?a=1"], None, {}) == []
    hub.unsubscribe(client, ["x?a=1"])
    clock.now += 59.0
    hub.round(clock.now, b"p")
    assert "x?a=1" in hub.feeds
    clock.now += 2.0
    hub.round(clock.now, b"p")
    assert "x?a=1" not in hub.feeds and hub.views == 0
