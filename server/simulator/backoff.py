"""Retry pacing for Redis errors: exponential backoff with jitter, and a retry-until-done helper.

Every loop of the simulator survives a Redis outage the same way: log the error,
wait a growing, jittered delay, try again. Nothing here knows about jobs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

T = TypeVar("T")

# redis-py raises its own errors for most failures, but a socket can still surface a bare OSError.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


class Backoff:
    """Delays that double from `first` up to `cap`, each with ±50 % jitter, until `reset()`."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._next = first
        # Jitter is not part of the workload, so it must not draw from the seeded generators.
        self._rng = random.Random()

    def next(self) -> float:
        """The delay to wait now; the following one will be longer."""
        delay = self._next * self._rng.uniform(0.5, 1.5)
        self._next = min(self._cap, self._next * 2)
        return delay

    def reset(self) -> None:
        """Start again from the shortest delay (after a success)."""
        self._next = self._first


async def retry_forever(op: Callable[[], Awaitable[T]], what: str, logger: logging.Logger) -> T:
    """Run `op` until it succeeds, logging each Redis error and backing off between tries.

    Only Redis and socket errors are retried; anything else is a bug and propagates.
    The caller bounds the total time by cancelling.
    """
    backoff = Backoff()
    while True:
        try:
            return await op()
        except REDIS_ERRORS as exc:
            delay = backoff.next()
            logger.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
