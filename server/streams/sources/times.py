"""Times as the job systems write them (datetimes, ISO 8601 text, numbers) as the epoch seconds the core uses.

Shell layer: the connectors convert at the edge, so the pure translators never parse a date.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.streams.core.events import seconds


def epoch(value: Any) -> float | None:
    """A datetime, an ISO 8601 time or a number as epoch seconds; None when absent, unreadable or outside the
    range of times (0 to 10^11, docs/protocol.md 1.1)."""
    try:
        if isinstance(value, datetime):
            return seconds(value.timestamp())
        if isinstance(value, int | float) and not isinstance(value, bool):
            return seconds(value)
        if isinstance(value, str) and value:
            return seconds(datetime.fromisoformat(value).timestamp())
    except (ValueError, OverflowError, OSError):
        return None
    return None
