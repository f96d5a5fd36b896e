"""times.epoch: the connectors' one conversion of the times job systems write into epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from server.streams.sources.times import epoch

T = 1_764_345_700.25


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime.fromtimestamp(T, UTC), T),  # psycopg's timestamptz
        (datetime.fromtimestamp(T, UTC).isoformat(), T),  # django-mojo's JSON details, Celery's eta/expires
        (datetime.fromtimestamp(T, timezone(timedelta(hours=2))).isoformat(), T),  # any offset
        ("2025-11-28T16:01:40.250000Z", T),
        (T, T),
        (1_764_345_700, 1_764_345_700.0),
        (None, None),
        ("", None),
        ("next tuesday", None),
        (True, None),  # a bool is not a time, though Python counts it a number
        ([T], None),
    ],
)
def test_epoch(value: object, expected: float | None) -> None:
    assert epoch(value) == expected
