"""The wall clock jobpulse stamps its own times with: epoch seconds, to the millisecond.

Receive times (a runner's `hb`, `last_event`) and a batch's `now` travel in
nearly every websocket message; digits below a millisecond mean nothing on a
page and, being random, are the part of a message compression cannot shrink.
"""

from __future__ import annotations

import time


def wall() -> float:
    """Now, as epoch seconds rounded to the millisecond."""
    return round(time.time(), 3)
