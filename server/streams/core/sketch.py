"""A mergeable quantile sketch: durations counted in logarithmic buckets, with a stated relative error.

Pure layer: standard library only. The sketch is DDSketch's idea (Masson, Rim and
Lee, VLDB 2019) cut down to what jobpulse needs, because the `ddsketch`
package's pure-Python add costs 1-2 µs and jobpulse adds one value for most job
events (issue #19 allows 0.5 µs an event in all). A sketch is a plain dict
`bucket index -> count`; bucket `i` holds the values in (γ^(i-1), γ^i], and its
representative 2·γ^i/(γ+1) is within ALPHA (2%) of every value in it, so any
quantile read back is within 2% of the exact one. Values at or below MIN_VALUE
(0.1 ms) share the bucket ZERO and read back as 0: an absolute error under
0.1 ms. Two sketches merge exactly by adding counts (minutes into hours,
several processes into one), and subtract exactly too (a rolling window).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from math import ceil, log

from server.streams.core.events import MAX_COUNT, MAX_TIME

Sketch = dict[int, int]

ALPHA = 0.02  # the stated relative error of every quantile
GAMMA = (1 + ALPHA) / (1 - ALPHA)
INV_LOG_GAMMA = 1 / log(GAMMA)
MIN_VALUE = 1e-4  # s; at or below it, a value counts in ZERO and reads back as 0
ZERO = ceil(log(MIN_VALUE) * INV_LOG_GAMMA) - 1
MAX_INDEX = ceil(log(MAX_TIME) * INV_LOG_GAMMA)  # the bucket of the longest duration a source may send
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def index(value: float) -> int:
    """The bucket of `value` (seconds, 0..MAX_TIME)."""
    return ceil(log(value) * INV_LOG_GAMMA) if value > MIN_VALUE else ZERO


def add(sketch: Sketch, value: float) -> None:
    """Count `value` (seconds, 0..MAX_TIME: the fold's callers have bounded it)."""
    i = index(value)
    sketch[i] = sketch.get(i, 0) + 1


def value_of(i: int) -> float:
    """The value a bucket reads back as: within ALPHA of every value it holds."""
    if i <= ZERO:
        return 0.0
    return 2 * GAMMA**i / (GAMMA + 1)


def merge(into: Sketch, other: Mapping[int, int]) -> None:
    """Add `other`'s counts into `into`: the sketch of both value sets, exactly."""
    for i, n in other.items():
        into[i] = into.get(i, 0) + n


def subtract(from_: Sketch, other: Mapping[int, int]) -> None:
    """Take `other`'s counts (merged into `from_` earlier) back out; empty buckets go."""
    for i, n in other.items():
        left = from_.get(i, 0) - n
        if left > 0:
            from_[i] = left
        else:
            from_.pop(i, None)


def quantiles(sketches: Iterable[Mapping[int, int]], qs: tuple[float, ...] = QUANTILES) -> tuple[float, ...] | None:
    """The `qs` quantiles of the `sketches` merged, or None when they hold nothing.

    The q quantile is the value of rank floor(q·(n-1)) among the n values sorted (0-based): the lower median for
    q = 0.5. Each one read back is within ALPHA of that value (or under MIN_VALUE when it is).
    """
    merged: dict[int, int] = {}
    for sketch in sketches:
        merge(merged, sketch)
    return merged_quantiles(*sorted_counts(merged), {}, qs)


def sorted_counts(sketch: Mapping[int, int]) -> tuple[list[int], list[int], int]:
    """The sketch's bucket indexes in order, their counts, and the total: what `merged_quantiles` walks."""
    keys = sorted(sketch)
    counts = [sketch[i] for i in keys]
    return keys, counts, sum(counts)


def merged_quantiles(
    keys: list[int], counts: list[int], n: int, extra: Mapping[int, int], qs: tuple[float, ...] = QUANTILES
) -> tuple[float, ...] | None:
    """`quantiles` of a sketch given as `sorted_counts` merged with a small `extra` one, without building the
    merge: one walk over both in index order (the Functions table reads its rolling window, whose sorted counts
    change once a minute, with the open minute, every tick)."""
    total = n + sum(extra.values())
    if not total:
        return None
    extra_keys = sorted(extra)
    want = iter(int(q * (total - 1)) for q in qs)
    rank = next(want)
    out: list[float] = []
    seen = 0
    i = j = 0
    while True:
        if j >= len(extra_keys) or (i < len(keys) and keys[i] <= extra_keys[j]):
            k, c = keys[i], counts[i]
            i += 1
            if j < len(extra_keys) and extra_keys[j] == k:
                c += extra[k]
                j += 1
        else:
            k = extra_keys[j]
            c = extra[k]
            j += 1
        seen += c
        while rank < seen:
            out.append(value_of(k))
            nxt = next(want, None)
            if nxt is None:
                return tuple(out)
            rank = nxt


def flat(sketch: Mapping[int, int]) -> list[int]:
    """The sketch as [index, count, index, count, ...] sorted by index: how the store keeps it."""
    out: list[int] = []
    for i in sorted(sketch):
        out.append(i)
        out.append(sketch[i])
    return out


def unflat(values: list[int]) -> Sketch:
    """A sketch from `flat`'s list, checked: what Redis hands back is untrusted.

    Raises:
        ValueError: an odd length, an index outside ZERO..MAX_INDEX or a count outside 1..MAX_COUNT.
    """
    if len(values) % 2 or len(values) > 2 * (MAX_INDEX - ZERO + 1):
        raise ValueError("sketch: malformed bucket list")
    out: Sketch = {}
    for k in range(0, len(values), 2):
        i, n = values[k], values[k + 1]
        if not ZERO <= i <= MAX_INDEX or not 0 < n <= MAX_COUNT:
            raise ValueError("sketch: bucket out of range")
        out[i] = out.get(i, 0) + n
    return out
