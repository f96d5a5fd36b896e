"""Stay subscribed to a source's Redis: connect, follow, notice the loss, back off, reconnect.

Shell layer. Every connector (native, celery) needs the same loop around a
`Subscriber`: report connected/disconnected to the fold as `SourceStatus`
events, run the connector's own follow-up work (reconcile, replay, polls)
while the subscription lives, and after a loss wait a jittered, growing
backoff (capped by `JOBPULSE_SOURCE_BACKOFF_MAX_S`) so a returning Redis is
seen within about that cap and several processes do not reconnect in step.
A stall (a connection that hangs rather than closes) is noticed by the
subscriber's PING deadline, `JOBPULSE_SOURCE_TIMEOUT_S` (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from server.streams.sources.subscriber import OnMessage, Subscriber, SubscriberError
from server.tasks import cancel_and_wait

log = logging.getLogger("jobpulse.source")

BACKOFF_FIRST = 0.1


async def stay_subscribed(
    url: str,
    *,
    channels: Sequence[str] = (),
    patterns: Sequence[str] = (),
    on_message: OnMessage,
    on_chunk_end: Callable[[], None],
    on_status: Callable[[bool, str], None],
    follow: Callable[[bool], Coroutine[Any, Any, None]],
    client_name: str,
    ping_s: float,
    timeout_s: float,
    backoff_max_s: float,
) -> None:
    """Run until cancelled. `follow(first)` runs while each subscription lives and is cancelled when it ends."""
    backoff = BACKOFF_FIRST
    first = True
    what = ", ".join([*channels, *patterns])
    while True:
        try:
            subscriber = await Subscriber.connect(
                url,
                channels,
                patterns,
                on_message=on_message,
                on_chunk_end=on_chunk_end,
                connect_timeout=max(timeout_s, 1.0),
                ping_interval=ping_s,
                ping_timeout=timeout_s,
                client_name=client_name,
            )
        except SubscriberError as exc:
            on_status(False, str(exc))
            # Full jitter: processes that lost Redis together spread their reconnects out.
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, backoff_max_s)
            continue
        backoff = BACKOFF_FIRST
        on_status(True, "")
        log.info("subscribed to %s", what)
        follower = asyncio.create_task(follow(first), name=f"{client_name}-follow")
        first = False
        try:
            reason = await subscriber.wait_closed()
        finally:
            await cancel_and_wait([follower])
            subscriber.close()
        on_status(False, f"lost the subscription: {reason}")
        log.warning("lost the subscription to %s: %s", what, reason)
