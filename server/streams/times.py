"""Times as the job systems write them (datetimes, ISO 8601 text, numbers) as the epoch seconds the core uses.

Shell layer: the connectors convert at the edge, so the pure translators never parse a date.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def epoch(value: Any) -> float | None:
    """A datetime, an ISO 8601 time or a number as epoch seconds; None when absent or unreadable."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None
