"""The series: per-minute and per-hour counts and gauges, and each channel's per-minute counts.

Pure layer. `advance` moves the fold's clock and rolls the minute; `count`
counts one job event in the minute jobpulse received it (the fleet's, the
hour's, its channel's, and the rolling 24 h sums). The buckets themselves live
in the state (`State.series`, `hours`, `channel_series`, `sums`).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING

from server.streams.core import functions
from server.streams.core.aspects import COUNTERS, GROUPS, SERIES, STATS

if TYPE_CHECKING:
    from server.streams.core.state import State

# Indexes into a series bucket: [published, completed, failed, retried, pending, running, scheduled,
# longest running (s)]. The first four count events; the rest are gauges sampled in that minute.
PUBLISHED, COMPLETED, FAILED, RETRIED, PENDING, RUNNING, SCHEDULED, LONGEST = range(8)
BUCKET_WIDTH = 8
COUNTS = (PUBLISHED, COMPLETED, FAILED, RETRIED)
GAUGES = (PENDING, RUNNING, SCHEDULED, LONGEST)
CHANNEL_WIDTH = 4  # a channel's minute: [published, completed, failed, retried]
DAY_MINUTES = 1440


class MinuteRing:
    """Fixed-size per-minute counters in flat arrays: a year of churn costs no more memory than a day."""

    __slots__ = ("size", "stamps", "values", "width")

    def __init__(self, width: int, size: int) -> None:
        self.width = width
        self.size = size
        self.stamps = array("q", [-1]) * size
        self.values = array("q", [0]) * (width * size)

    def add(self, minute: int, column: int, n: int = 1) -> None:
        slot = minute % self.size
        base = slot * self.width
        if self.stamps[slot] != minute:
            if self.stamps[slot] > minute:
                return  # older than what the ring still holds
            self.stamps[slot] = minute
            for i in range(self.width):
                self.values[base + i] = 0
        self.values[base + column] += n

    def get(self, minute: int) -> tuple[int, ...] | None:
        slot = minute % self.size
        if self.stamps[slot] != minute:
            return None
        base = slot * self.width
        return tuple(self.values[base : base + self.width])

    def sum(self, first: int, last: int, column: int) -> int:
        """The column summed over the minutes first..last that the ring holds."""
        total = 0
        for minute in range(max(first, last - self.size + 1), last + 1):
            slot = minute % self.size
            if self.stamps[slot] == minute:
                total += self.values[slot * self.width + column]
        return total

    def items(self, first: int, last: int) -> Iterator[tuple[int, tuple[int, ...]]]:
        for minute in range(max(first, last - self.size + 1), last + 1):
            values = self.get(minute)
            if values is not None:
                yield minute, values


def advance(state: State, at: float) -> int:
    """Move the clock to `at` if it is later; roll the series window when the minute changes."""
    if at <= state.now:
        return 0
    state.now = at
    minute = int(at // 60)
    if minute != state.minute:
        _roll(state, minute)
        return SERIES | COUNTERS | STATS | GROUPS  # failure groups: their trends slide, "new" ones age
    return 0


def _roll(state: State, minute: int) -> None:
    """Start a new current minute: drop buckets past retention and recompute the rolling sums."""
    functions.roll_all(state, minute)  # the functions' numbers pending belong to the minute that ends
    state.minute = minute
    series = state.series
    oldest = minute - state.limits.series_minutes + 1
    for old in [m for m in series if m < oldest]:
        del series[old]
    oldest_hour = minute // 60 - state.limits.hours_retention + 1
    if state.hours and min(state.hours) < oldest_hour:
        for old in [h for h in state.hours if h < oldest_hour]:
            del state.hours[old]
    recompute_sums(state)


def hour_bucket(state: State, hour: int) -> list[int]:
    bucket = state.hours.get(hour)
    if bucket is None:
        bucket = state.hours[hour] = [0] * BUCKET_WIDTH
    state.dirty_hours.add(hour)
    return bucket


def recompute_sums(state: State) -> None:
    day, before = [0] * BUCKET_WIDTH, [0] * BUCKET_WIDTH
    minute = state.minute
    state.watched_before = False
    for m, bucket in state.series.items():
        age = minute - m
        if 0 <= age < DAY_MINUTES:
            target = day
        elif DAY_MINUTES <= age < 2 * DAY_MINUTES:
            target = before
            state.watched_before = True
        else:
            continue
        for i in range(PENDING):
            target[i] += bucket[i]
    state.sums = (day, before)


def minute_bucket(state: State, minute: int) -> list[int]:
    """The series bucket of `minute`, created (as watched, gauges = now) if missing."""
    bucket = state.series.get(minute)
    if bucket is None:
        bucket = [0] * BUCKET_WIDTH
        bucket[PENDING : PENDING + 3] = state.totals
        state.series[minute] = bucket
        if DAY_MINUTES <= state.minute - minute < 2 * DAY_MINUTES:
            state.watched_before = True
    state.dirty_minutes.add(minute)
    return bucket


def count(state: State, column: int, at: float, channel: str) -> None:
    if at <= state.counted_until:
        return  # a replayed event the restored series already counted
    minute = int(at // 60)
    limits = state.limits
    current = state.minute
    if minute > current - limits.series_minutes:  # older than the retention: nowhere to count it
        minute_bucket(state, minute)[column] += 1
    hour = minute // 60
    if hour > current // 60 - limits.hours_retention:
        hour_bucket(state, hour)[column] += 1
    ring = state.channel_series.get(channel)
    if ring is None and len(state.channel_series) < limits.max_channel_series:
        ring = state.channel_series[channel] = MinuteRing(CHANNEL_WIDTH, limits.channel_minutes)
    if ring is not None:
        ring.add(minute, column)
        state.dirty_channel_minutes.add((channel, minute))
    age = current - minute
    if 0 <= age < DAY_MINUTES:
        state.sums[0][column] += 1
    elif DAY_MINUTES <= age < 2 * DAY_MINUTES:
        state.sums[1][column] += 1
