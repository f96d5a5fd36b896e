"""Builders of native-protocol events for the pure-core tests."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from server.streams.core.events import ActiveJob, ChannelDepth, Depth, Heartbeat, JobEvent, RunnerStopped
from server.streams.hubcore import Outgoing

_ids = itertools.count(1)
_seqs: dict[str, itertools.count[int]] = {}


def _seq(src: str) -> int:
    return next(_seqs.setdefault(src, itertools.count(1)))


def job(event: str, job_id: str = "j1", ts: float = 1000.0, attempt: int = 1, **fields: Any) -> JobEvent:
    """A job event; `src` defaults to the runner for runner events and to a producer otherwise."""
    src = fields.pop("src", fields.get("runner") or "producer")
    payload = fields.pop("payload", None)
    return JobEvent(
        v=1,
        id=fields.pop("id", f"e{next(_ids)}"),
        src=src,
        seq=fields.pop("seq", _seq(src)),
        ts=ts,
        event=event,  # type: ignore[arg-type]
        job=job_id,
        channel=fields.pop("channel", "email"),
        fn=fields.pop("fn", "mail.send"),
        attempt=attempt,
        payload=msgspec.Raw() if payload is None else msgspec.Raw(msgspec.json.encode(payload)),
        **fields,
    )


def beat(src: str = "r1", ts: float = 1000.0, **fields: Any) -> Heartbeat:
    active = [ActiveJob(*a) if isinstance(a, tuple) else a for a in fields.pop("active", [])]
    return Heartbeat(
        v=1,
        src=src,
        seq=fields.pop("seq", _seq(src)),
        ts=ts,
        boot=fields.pop("boot", 500.0),
        interval=fields.pop("interval", 2.0),
        host=fields.pop("host", "host-1"),
        region=fields.pop("region", "eu-west"),
        concurrency=fields.pop("concurrency", 4),
        channels=fields.pop("channels", ["email"]),
        active=active,
        **fields,
    )


def stopped(src: str = "r1", ts: float = 1000.0, reason: str = "shutdown") -> RunnerStopped:
    return RunnerStopped(v=1, src=src, seq=_seq(src), ts=ts, reason=reason)


def depth(ts: float = 1000.0, src: str = "broker", **channels: tuple[int, int, int]) -> Depth:
    return Depth(
        v=1,
        src=src,
        seq=_seq(src),
        ts=ts,
        channels={
            name: ChannelDepth(queued=q, inflight=i, scheduled=s, oldest=ts - 5 if q else None)
            for name, (q, i, s) in channels.items()
        },
    )


class Collector:
    """A websocket peer that keeps every frame the hub writes it (the hub's pre-built frames)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def ready(self) -> bool:
        return True

    def write(self, message: Outgoing) -> bool:
        frame = message.frame
        start = 2 if frame[1] < 126 else (4 if frame[1] == 126 else 10)
        self.messages.append(frame[start:])
        return True

    async def send(self, message: str) -> None:
        self.messages.append(message.encode())

    async def close(self, code: int, reason: str) -> None:
        pass

    def abort(self) -> None:
        pass

    def pending(self) -> int | None:
        return 0

    def written(self) -> int:
        return 0

    def ping(self, payload: bytes) -> bool:
        return False

    def pong(self) -> bytes | None:
        return None
