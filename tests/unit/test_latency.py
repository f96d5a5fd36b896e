"""jobpulse's own latency: the bounded ring, its percentiles, and the HTTP timing around the app."""

from __future__ import annotations

import asyncio

from server.latency import LatencyRing, timed_http


def test_percentiles_are_nearest_rank_over_the_window_and_the_ring_is_bounded():
    ring = LatencyRing(cap=100)
    for i in range(1, 201):  # 1..200 ms; only the newest 100 are kept
        ring.add(i / 1000, at=1000.0 + i)
    assert len(ring.samples) == 100
    assert ring.summary(now=1200.0, window=1_000) == {"n": 100, "p50": 150.0, "p95": 195.0, "p99": 199.0}
    assert ring.summary(now=1200.0, window=9.5) == {"n": 10, "p50": 195.0, "p95": 200.0, "p99": 200.0}
    assert ring.summary(now=5000.0) == {"n": 0}  # nothing in the last five minutes


def test_an_http_answer_is_timed_once_its_last_body_chunk_is_handed_over():
    ring = LatencyRing(cap=10)
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"b"})

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    asyncio.run(timed_http(app, ring, {"type": "http"}, receive, send))
    assert len(sent) == 3 and len(ring.samples) == 1
    assert 0.015 < ring.samples[0][1] < 5.0
