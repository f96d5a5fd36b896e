"""Cancelling tasks so that they really end, on the Python 3.11 this project runs on.

On 3.11 `asyncio.wait_for` drops a cancellation that arrives as the awaited
operation finishes (CPython gh-86296, fixed in 3.12), and redis-py wraps socket
writes in it, so one `task.cancel()` can be lost: `cancel_and_wait` repeats it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_EVERY = 0.05


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel `tasks` and return once all are done, cancelling again any that swallowed a cancellation.

    The work runs shielded: if the caller is cancelled meanwhile, the tasks are still seen to the end.
    """
    pending = {task for task in tasks if task is not None and not task.done()}
    if pending:
        await asyncio.shield(_cancel_until_done(pending))


async def _cancel_until_done(pending: set[asyncio.Task[Any]]) -> None:
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY)
