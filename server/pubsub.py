"""A Redis pub/sub channel followed for as long as the process lives: resubscribed after a Redis error.

Shell layer. The audit feed and the sessions-ended notices both need one: every jobpulse process hears what the
others publish, and comes back on its own after an outage (with jittered backoff, so a restarted Redis is not
met by every process at once).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import redis.asyncio as aredis

log = logging.getLogger("jobpulse.pubsub")
BACKOFF_MAX_S = 5.0


async def follow(
    client: aredis.Redis,
    channel: str,
    on_message: Callable[[bytes], None],
    on_subscribed: Callable[[], None] | None = None,
    what: str = "",
) -> None:
    """Call `on_message` with each message's data on `channel` until cancelled; `on_subscribed` after each
    (re)subscription, since what was published while the subscription was down is lost."""
    backoff = 0.1
    while True:
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                if on_subscribed is not None:
                    on_subscribed()
                backoff = 0.1
                async for message in pubsub.listen():
                    data = message.get("data")
                    if message.get("type") == "message" and isinstance(data, bytes):
                        on_message(data)
        except (aredis.RedisError, OSError) as exc:
            log.warning("%s subscription lost (%s); again in %.1f s", what or channel, exc, backoff)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX_S)
