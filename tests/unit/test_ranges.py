"""Numbers from the Celery and django-mojo edges keep docs/protocol.md 1.1's ranges, as the native schema does:
counts within 0..2^53-1, times within 0..10^11 s; outside, the event or document is rejected (or, for django-mojo's
hour counters, read as none), never folded."""

from __future__ import annotations

import json
import math

import pytest

from server.streams.core.events import MAX_COUNT, MAX_TIME, count, seconds
from server.streams.sources.celery.events import Translator
from server.streams.sources.mojo.connector import _counter, parse_beat
from server.streams.sources.times import epoch

HUGE = int("9" * 4300)
T0 = 1_795_882_924.0


@pytest.mark.parametrize("value", [0, 7, MAX_COUNT, "12"])
def test_counts_in_range(value: object) -> None:
    assert count(value) == int(value)  # type: ignore[call-overload]


@pytest.mark.parametrize("value", [-1, MAX_COUNT + 1, HUGE, "9" * 4300, "x", 1.5, None, True])
def test_counts_out_of_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"out of range|not an integer"):
        count(value)


@pytest.mark.parametrize("value", [0, T0, MAX_TIME, 3])
def test_times_in_range(value: float) -> None:
    assert seconds(value) == float(value)


@pytest.mark.parametrize("value", [-0.5, MAX_TIME * 2, 1e300, math.inf, math.nan, HUGE, "1", None])
def test_times_out_of_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"out of range|not a number"):
        seconds(value)


@pytest.mark.parametrize("value", [1e300, -5.0, HUGE, "9999-12-31T23:59:59+00:00", math.nan])
def test_epoch_of_a_time_out_of_range_is_none(value: object) -> None:
    assert epoch(value) is None


BEAT = {"type": "worker-heartbeat", "hostname": "w1@h", "pid": 7, "clock": 1, "freq": 2.0, "active": 0,
        "processed": 0, "timestamp": T0}  # fmt: skip
TASK = {"type": "task-received", "uuid": "t1", "hostname": "w1@h", "pid": 7, "clock": 2, "timestamp": T0,
        "name": "x.y", "retries": 0}  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [
        {**BEAT, "processed": HUGE}, {**BEAT, "pid": HUGE}, {**BEAT, "timestamp": 1e300}, {**BEAT, "freq": math.inf},
        {**BEAT, "active": -3}, {**TASK, "clock": HUGE}, {**TASK, "retries": MAX_COUNT + 1},
        {**TASK, "timestamp": -1.0}, {**TASK, "eta": 1e300}, {**TASK, "type": "task-succeeded", "runtime": 1e300},
    ],
)  # fmt: skip
def test_a_celery_event_with_a_number_out_of_range_is_rejected(event: dict[str, object]) -> None:
    translator = Translator()
    with pytest.raises(ValueError, match=r"out of range|not an integer|not a number"):
        translator.translate(event)


def test_a_celery_event_in_range_still_translates() -> None:
    assert Translator().translate(BEAT) and Translator().translate(TASK)


def test_a_django_mojo_beat_with_a_count_out_of_range_is_an_error() -> None:
    doc = {"last_heartbeat": "2026-12-06T12:00:00+00:00", "channels": ["default"], "jobs_processed": HUGE}
    assert parse_beat(json.dumps(doc)).error
    assert parse_beat(json.dumps({**doc, "last_heartbeat": 1e300, "jobs_processed": 3})).error
    assert not parse_beat(json.dumps({**doc, "jobs_processed": 3})).error


def test_django_mojo_hour_counters_out_of_range_read_as_none() -> None:
    assert [_counter(v) for v in (b"12", None, b"9" * 4300, b"-4", b"x")] == [12, 0, 0, 0, 0]
