"""jobpulse's own latency, as the Platform Status page shows it: recent samples in a bounded ring, and percentiles.

Shell layer, no I/O. Two rings are kept: how long jobpulse took to answer its
HTTP requests (from the request's arrival at the outermost ASGI layer to the
last byte of its body handed to the server), and how long a change took to
reach the websockets (from the moment the fold marked a widget changed to the
end of the flush that wrote its patch to every socket that could take it, the
tick's coalescing included). Percentiles are over the samples of the last
`window` seconds, at most `cap` of them (the newest).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WINDOW_S = 300.0  # the KPI covers the last five minutes


class LatencyRing:
    """The newest `cap` (monotonic time, seconds) samples."""

    __slots__ = ("samples",)

    def __init__(self, cap: int) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=max(1, cap))

    def add(self, seconds: float, at: float | None = None) -> None:
        self.samples.append((time.monotonic() if at is None else at, seconds))

    def summary(self, now: float | None = None, window: float = WINDOW_S) -> dict[str, float | int]:
        """`n` samples of the last `window` s and their p50, p95, p99 in ms (left out when there are none)."""
        since = (time.monotonic() if now is None else now) - window
        values = sorted(s for at, s in self.samples if at >= since)
        if not values:
            return {"n": 0}
        return {"n": len(values), **{f"p{q}": round(1000 * _rank(values, q), 2) for q in (50, 95, 99)}}


def _rank(values: list[float], q: int) -> float:
    """The nearest-rank percentile of sorted `values`."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


async def timed_http(app: Callable[[Scope, Receive, Send], Awaitable[None]], ring: LatencyRing, scope: Scope,
                     receive: Receive, send: Send) -> None:  # fmt: skip
    """Run an HTTP request through `app`, adding its time to `ring` once its last body chunk is handed over."""
    started = time.monotonic()

    async def timed_send(message: Message) -> None:
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            now = time.monotonic()
            ring.add(now - started, now)

    await app(scope, receive, timed_send)
