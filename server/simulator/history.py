"""Synthetic history for the demo: the hours before it started, so the 24 h and 14 d views have something to show.

Written once into jobpulse's own store (`P:jp:hours`, the hourly buckets it
keeps for those views), only where it holds no hour yet, with `synthetic_until`
in `P:jp:meta` saying up to when the history is made up: the pages label it as
synthetic demo history (docs/protocol.md 3.8). A day's shape (quiet nights,
busy afternoons), a weekly dip and seeded noise, at about the fleet's rate.
"""

from __future__ import annotations

import json
import math
import random

import redis.asyncio as aredis

from server.streams.core.series import BUCKET_WIDTH, COMPLETED, FAILED, LONGEST, PENDING, PUBLISHED, RETRIED, RUNNING

DAYS = 28  # two windows of the 14 d view: its comparison with the fortnight before is made up too, not a cliff


def hour_bucket(hour: int, rate: float, rng: random.Random) -> list[int]:
    """One synthetic hour (epoch hour `hour`) of a fleet publishing about `rate` jobs/s."""
    of_day = hour % 24
    # Quietest around 03:00 UTC, busiest around 15:00; weekends (days 2 and 3 of the epoch week) at two thirds.
    daily = 0.55 + 0.45 * math.sin((of_day - 9) / 24 * 2 * math.pi)
    weekly = 0.67 if (hour // 24) % 7 in (2, 3) else 1.0
    published = max(0, round(rate * 3600 * daily * weekly * rng.uniform(0.9, 1.1)))
    failed = round(published * rng.uniform(0.008, 0.02))
    bucket = [0] * BUCKET_WIDTH
    bucket[PUBLISHED] = published
    bucket[COMPLETED] = max(0, published - failed - round(published * 0.01))
    bucket[FAILED] = failed
    bucket[RETRIED] = round(published * rng.uniform(0.01, 0.03))
    bucket[PENDING] = round(rate * daily * rng.uniform(2, 6))
    bucket[RUNNING] = round(rate * daily * rng.uniform(1, 2))
    bucket[LONGEST] = round(rng.uniform(20, 140))
    return bucket


async def backfill(redis_url: str, prefix: str, now: float, rate: float, seed: int | None = None) -> int:
    """Write DAYS days of synthetic hours before the current one, unless jobpulse already holds hours under
    `prefix`; return how many were written."""
    client = aredis.Redis.from_url(redis_url)
    try:
        hours_key, meta_key = f"{prefix}:jp:hours", f"{prefix}:jp:meta"
        if await client.hlen(hours_key):
            return 0
        rng = random.Random(seed)
        current = int(now // 3600)
        mapping = {str(h): json.dumps(hour_bucket(h, rate, rng)) for h in range(current - DAYS * 24, current)}
        pipe = client.pipeline(transaction=True)
        pipe.hset(hours_key, mapping=mapping)  # type: ignore[arg-type]  # redis-py types Mapping invariantly
        pipe.hset(meta_key, "synthetic_until", repr(float(current * 3600)))
        await pipe.execute()
        return len(mapping)
    finally:
        await client.aclose()
