"""Per-function and per-channel numbers: runs, failures, retries, runtime and wait-time sketches by minute, hour, day.

Pure layer. The job fold calls `ran` when an attempt ends (completed, failed or
retried: its runtime) and `waited` when one starts (its wait since it was
queued or came due). Each counts into one `Stat` per function and one per
channel, in the minute jobpulse received the event, like the series: one
sketch add each, the hot path's whole cost. When a stat's minute closes
(`roll`, lazily: on its next event or when a projection reads it), the minute
is summarised for the minute chart, merged into its hour and day (also
summarised when they close) and into the rolling window the Functions table
shows; a minute leaving the window is subtracted back out, exactly.

Bounded: at most Limits.max_functions functions and max_channel_series channels
have their own stat, the rest count into OTHER; minute, hour and day
summaries are kept for Limits.fn_minutes, fn_hours and fn_days. The store
keeps every minute's and hour's sketches in Redis (server/streams/store.py) for
the retention in settings; a restore brings back the open minute, hour and day
and the summaries (`restore`).
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Mapping
from math import ceil, log
from typing import TYPE_CHECKING

from server.streams.core import sketch
from server.streams.core.aspects import STATS
from server.streams.core.events import MAX_TIME
from server.streams.core.sketch import INV_LOG_GAMMA, MIN_VALUE, ZERO, Sketch

if TYPE_CHECKING:
    from server.streams.core.events import StatCell
    from server.streams.core.state import State

OTHER = "(other)"  # the stat the functions and channels past the caps count into
FN, CHANNEL = "fn", "channel"
HOUR, DAY = 60, 1440  # minutes
RELATED_KEPT = 100  # a function's channels, or a channel's functions, kept by name
COMPLETED, FAILED, RETRIED = 0, 1, 2  # a cell's count columns

# A summary of one slot (minute, hour or day): completed, failed, retried, then runtime p50, p90, p95, p99, max,
# then wait p50, p90, p95, p99, max (None where no value was measured).
Summary = tuple[int, int, int, float | None, float | None, float | None, float | None, float | None,
                float | None, float | None, float | None, float | None, float | None]  # fmt: skip


class Cell:
    """One stat's numbers over one slot: counts, and the runtime and wait sketches with their exact maxima."""

    __slots__ = ("counts", "rt", "rt_max", "wt", "wt_max")

    def __init__(self) -> None:
        self.counts = [0, 0, 0]  # completed, failed, retried (COMPLETED, FAILED, RETRIED)
        self.rt: Sketch = {}
        self.wt: Sketch = {}
        self.rt_max = 0.0
        self.wt_max = 0.0

    def merge(self, other: Cell) -> None:
        mine, theirs = self.counts, other.counts
        mine[0] += theirs[0]
        mine[1] += theirs[1]
        mine[2] += theirs[2]
        sketch.merge(self.rt, other.rt)
        sketch.merge(self.wt, other.wt)
        self.rt_max = max(self.rt_max, other.rt_max)
        self.wt_max = max(self.wt_max, other.wt_max)

    def subtract(self, other: Cell) -> None:
        """Take `other` (merged in before) back out. The maxima stay: the window recomputes its own."""
        mine, theirs = self.counts, other.counts
        mine[0] -= theirs[0]
        mine[1] -= theirs[1]
        mine[2] -= theirs[2]
        sketch.subtract(self.rt, other.rt)
        sketch.subtract(self.wt, other.wt)

    @property
    def empty(self) -> bool:
        return not (any(self.counts) or self.rt or self.wt)

    def copy(self) -> Cell:
        out = Cell()
        out.merge(self)
        return out


def summary(cells: list[Cell], rt_max: float | None = None, wt_max: float | None = None) -> Summary:
    """The counts and percentiles of `cells` merged (their sketches are read in place, not copied)."""
    rt = sketch.quantiles([c.rt for c in cells])
    wt = sketch.quantiles([c.wt for c in cells])
    if rt_max is None:
        rt_max = max((c.rt_max for c in cells if c.rt), default=0.0)
    if wt_max is None:
        wt_max = max((c.wt_max for c in cells if c.wt), default=0.0)
    counts = [sum(c.counts[COMPLETED] for c in cells), sum(c.counts[FAILED] for c in cells),
              sum(c.counts[RETRIED] for c in cells)]  # fmt: skip
    return _summary(counts, rt, wt, rt_max, wt_max)


def _summary(
    counts: list[int], rt: tuple[float, ...] | None, wt: tuple[float, ...] | None, rt_max: float, wt_max: float
) -> Summary:
    none4 = (None, None, None, None)
    # A bucket's representative may lie above the largest value in it: no percentile reads above the maximum.
    if rt:
        rt = tuple(min(v, rt_max) for v in rt)
    if wt:
        wt = tuple(min(v, wt_max) for v in wt)
    return (
        counts[COMPLETED],
        counts[FAILED],
        counts[RETRIED],
        *(rt or none4),
        rt_max if rt else None,
        *(wt or none4),
        wt_max if wt else None,
    )


class Stat:
    """One function's or one channel's numbers."""

    __slots__ = (
        "day",
        "day_cell",
        "days",
        "hour",
        "hour_cell",
        "hours",
        "kind",
        "last_hour",
        "minute",
        "minute_cell",
        "minutes",
        "name",
        "related",
        "row",
        "total",
        "version",
        "window",
        "window_cells",
        "window_read",
    )

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.minute = -1
        self.minute_cell = Cell()  # the open minute
        self.hour = -1
        self.hour_cell = Cell()  # the open hour, without the open minute
        self.day = -1
        self.day_cell = Cell()  # the open day (UTC), without the open minute
        self.window = Cell()  # the closed minutes of the rolling window, merged
        self.window_read: WindowRead | None = None  # its sorted counts and maxima, made when first read
        self.window_cells: deque[tuple[int, Cell]] = deque()  # those minutes, oldest first
        self.minutes: dict[int, Summary] = {}  # closed minutes' summaries, oldest first
        self.hours: dict[int, Summary] = {}
        self.days: dict[int, Summary] = {}
        # A function's channels, or a channel's functions (the Functions table filters by channel): an ordered
        # set, capped.
        self.related: dict[str, None] = {}
        self.version = 0  # moves on every change: the store writes a stat whose version moved since it last did
        self.total = Cell()  # every closed minute since this process started (/metrics' histograms: cumulative)
        self.row: tuple[int, object] = (-1, None)  # (version, the table row of it): projections' memo
        self.last_hour: tuple[int, Cell] | None = None  # the hour closed last, whole (the store writes it once more)


def _stat(state: State, kind: str, name: str) -> Stat:
    stats = state.fn_stats if kind == FN else state.channel_stats
    stat = stats.get(name)
    if stat is not None:
        return stat
    limits = state.limits
    cap = limits.max_functions if kind == FN else limits.max_channel_series
    if len(stats) >= cap:
        name = OTHER
        stat = stats.get(OTHER)
        if stat is not None:
            return stat
    stat = stats[name] = Stat(kind, name)
    return stat


def _open(state: State, stat: Stat, minute: int) -> Cell:
    """The cell of `minute`, rolling the stat's slots forward first when the minute moved on."""
    if minute != stat.minute:
        if minute < stat.minute:
            # An earlier minute than the open one: only a restore followed by a replay's receive time (the store
            # keeps counted_until) or a clock stepped back can do this. Count it in the open minute.
            return stat.minute_cell
        roll(state, stat, minute)
    return stat.minute_cell


def roll(state: State, stat: Stat, minute: int) -> None:
    """Close the stat's open minute (and hour, and day) if `minute` is later: summarise, merge, slide the window."""
    if minute <= stat.minute:
        return
    limits = state.limits
    closed, cell = stat.minute, stat.minute_cell
    if closed >= 0 and not cell.empty:
        stat.minutes[closed] = summary([cell])
        _trim(stat.minutes, minute - limits.fn_minutes)
        if closed // HOUR == stat.hour:
            stat.hour_cell.merge(cell)
        if closed // DAY == stat.day:
            stat.day_cell.merge(cell)
        stat.window_cells.append((closed, cell))
        stat.window.merge(cell)
        stat.total.merge(cell)
    hour, day = minute // HOUR, minute // DAY
    if hour != stat.hour:
        if stat.hour >= 0 and not stat.hour_cell.empty:
            stat.hours[stat.hour] = summary([stat.hour_cell])
            _trim(stat.hours, hour - limits.fn_hours)
            stat.last_hour = (stat.hour, stat.hour_cell)
        stat.hour, stat.hour_cell = hour, Cell()
    if day != stat.day:
        if stat.day >= 0 and not stat.day_cell.empty:
            stat.days[stat.day] = summary([stat.day_cell])
            _trim(stat.days, day - limits.fn_days)
        stat.day, stat.day_cell = day, Cell()
    oldest = minute - limits.fn_window + 1
    cells = stat.window_cells
    if cells and cells[0][0] < oldest:
        while cells and cells[0][0] < oldest:
            stat.window.subtract(cells.popleft()[1])
        if not cells:
            stat.window = Cell()  # nothing left: drop the rounding of a long run of subtractions
    stat.minute, stat.minute_cell = minute, Cell()
    stat.window_read = None
    stat.version += 1


def _trim(slots: dict[int, Summary], oldest: int) -> None:
    while slots:
        first = next(iter(slots))
        if first > oldest:
            return
        del slots[first]


class Pending:
    """What the job fold measured for one (function, channel) since the last drain: the hot path only appends."""

    __slots__ = ("counts", "rt", "wt")

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        # Arrays, not lists: the collector does not track them, so a second's values (up to some 100,000 at full
        # rate) cost a full collection nothing; a list of them it walks element by element.
        self.rt = array("d")
        self.wt = array("d")


def ran(state: State, fn: str, channel: str, column: int, runtime: float | None) -> None:
    """An attempt ended after `runtime` seconds (None: not known); `column` is COMPLETED, FAILED or RETRIED.

    The hot path: it only notes the numbers; `drain` sketches them a second later, all at once (a bucket index
    computed once for the function and the channel, in one loop), and before the minute rolls.
    """
    key = (fn, channel)
    pending = state.fn_pending.get(key)
    if pending is None:
        pending = state.fn_pending[key] = Pending()
    pending.counts[column] += 1
    if runtime is not None:
        pending.rt.append(runtime)


def waited(state: State, fn: str, channel: str, wait: float) -> None:
    """An attempt started `wait` seconds after it was queued or came due."""
    key = (fn, channel)
    pending = state.fn_pending.get(key)
    if pending is None:
        pending = state.fn_pending[key] = Pending()
    pending.wt.append(wait)


def drain(state: State) -> int:
    """Count what the fold noted since the last drain into the functions' and channels' open minutes.

    Called by the clock tick and before the minute rolls, so everything pending belongs to `state.minute`. The
    values' loop is the cost of this module at full rate (two sketch adds a value): its names are all local.
    """
    pending_all = state.fn_pending
    if not pending_all:
        return 0
    state.fn_pending = {}
    minute = state.minute
    fn_stats, channel_stats = state.fn_stats, state.channel_stats
    for (fn, channel), pending in pending_all.items():
        fstat = fn_stats.get(fn) or _stat(state, FN, fn)
        cstat = channel_stats.get(channel) or _stat(state, CHANNEL, channel)
        if fstat.minute != minute:
            _open(state, fstat, minute)
        if cstat.minute != minute:
            _open(state, cstat, minute)
        fcell, ccell = fstat.minute_cell, cstat.minute_cell
        a, b, c = pending.counts
        for counts in (fcell.counts, ccell.counts):
            counts[0] += a
            counts[1] += b
            counts[2] += c
        if pending.rt:
            top = _sketch(pending.rt, fcell.rt, ccell.rt)
            fcell.rt_max = max(fcell.rt_max, top)
            ccell.rt_max = max(ccell.rt_max, top)
        if pending.wt:
            top = _sketch(pending.wt, fcell.wt, ccell.wt)
            fcell.wt_max = max(fcell.wt_max, top)
            ccell.wt_max = max(ccell.wt_max, top)
        related = fstat.related
        if channel not in related and len(related) < RELATED_KEPT:
            related[channel] = None
        related = cstat.related
        if fn not in related and len(related) < RELATED_KEPT:
            related[fn] = None
        fstat.version += 1
        cstat.version += 1
    return STATS


def _sketch(values: array[float], fsk: Sketch, csk: Sketch) -> float:
    """Add `values` to both sketches (the function's and the channel's); return their largest. The loop of this
    module at full rate: its names are all local."""
    _log, _ceil, k, low, zero = log, ceil, INV_LOG_GAMMA, MIN_VALUE, ZERO
    fget, cget = fsk.get, csk.get
    for v in values:
        i = _ceil(_log(v) * k) if v > low else zero
        fsk[i] = fget(i, 0) + 1
        csk[i] = cget(i, 0) + 1
    return max(values)


def roll_all(state: State, minute: int) -> None:
    """The minute is rolling to `minute`: drain, then close every stat's minute (idle ones' windows slide too)."""
    drain(state)
    for stats in (state.fn_stats, state.channel_stats):
        for stat in stats.values():
            roll(state, stat, minute)


def measured(value: float) -> float | None:
    """A runtime or wait computed from two source times, if it is one: negative (the two clocks disagree) or
    beyond MAX_TIME is not a measurement (the caller counts it in health.unmeasured)."""
    return value if 0.0 <= value <= MAX_TIME else None


class WindowRead:
    """The closed minutes of a stat's window as `window_summary` reads them: each sketch's sorted counts, and the
    maxima (a maximum cannot be subtracted out of the merged cell: it is its minutes'). Made once a minute."""

    __slots__ = ("rt", "rt_max", "wt", "wt_max")

    def __init__(self, stat: Stat) -> None:
        self.rt = sketch.sorted_counts(stat.window.rt)
        self.wt = sketch.sorted_counts(stat.window.wt)
        cells = [c for _, c in stat.window_cells]
        self.rt_max = max((c.rt_max for c in cells if c.rt), default=0.0)
        self.wt_max = max((c.wt_max for c in cells if c.wt), default=0.0)


def window_summary(stat: Stat) -> Summary:
    """The rolling window's numbers: its closed minutes and the open one (about 80 µs: the Functions table reads
    every stat that counted something since the last tick)."""
    read = stat.window_read
    if read is None:
        read = stat.window_read = WindowRead(stat)
    open_cell = stat.minute_cell
    rt = sketch.merged_quantiles(*read.rt, open_cell.rt)
    wt = sketch.merged_quantiles(*read.wt, open_cell.wt)
    rt_max = max(read.rt_max, open_cell.rt_max if open_cell.rt else 0.0)
    wt_max = max(read.wt_max, open_cell.wt_max if open_cell.wt else 0.0)
    counts = [a + b for a, b in zip(stat.window.counts, open_cell.counts, strict=True)]
    return _summary(counts, rt, wt, rt_max, wt_max)


def open_slot(stat: Stat, minutes: int) -> tuple[int, Summary]:
    """The open hour (`minutes` HOUR) or day (DAY) and its numbers, with the open minute."""
    slot, cell = (stat.hour, stat.hour_cell) if minutes == HOUR else (stat.day, stat.day_cell)
    cells = [cell]
    if stat.minute // minutes == slot:
        cells.append(stat.minute_cell)
    return slot, summary(cells)


def stored_cells(stat: Stat) -> list[tuple[str, int, Cell]]:
    """What the store writes for the stat now, as (resolution, slot, cell): its open minute and the minute closed
    last, its open hour with the open minute in it, and the hour closed last. Absolute values: writing them again
    is harmless, and several processes folding the same source write the same."""
    out: list[tuple[str, int, Cell]] = []
    if stat.minute >= 0 and not stat.minute_cell.empty:
        out.append(("m", stat.minute, stat.minute_cell))
    if stat.window_cells:
        slot, cell = stat.window_cells[-1]
        out.append(("m", slot, cell))
    hour = stat.hour_cell.copy()
    if stat.minute // HOUR == stat.hour:
        hour.merge(stat.minute_cell)
    if stat.hour >= 0 and not hour.empty:
        out.append(("h", stat.hour, hour))
    if stat.last_hour is not None:
        out.append(("h", *stat.last_hour))
    return out


def restore(
    state: State,
    cells: tuple[StatCell, ...],
    minute_now: int,
    related: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """Bring back the stats the store kept: summaries of closed minutes and hours, and the open minute, hour and day.

    A stored hour includes the minutes stored within it, the open one too (see `stored_cells`); the open minute
    is taken back out of the open hour and day so that closing it later counts it once.
    """
    by_stat: dict[tuple[str, str], list[StatCell]] = {}
    for c in cells:
        by_stat.setdefault((c.kind, c.name), []).append(c)
    limits = state.limits
    hour_now, day_now = minute_now // HOUR, minute_now // DAY
    for (kind, name), mine in by_stat.items():
        stats = state.fn_stats if kind == FN else state.channel_stats
        cap = limits.max_functions if kind == FN else limits.max_channel_series
        if name in stats or len(stats) >= cap:
            continue  # counting already (the store was down at start): its live numbers stand
        stat = stats[name] = Stat(kind, name)
        stat.related = dict.fromkeys((related or {}).get(f"{kind}:{name}", ())[:RELATED_KEPT])
        minutes = sorted((c for c in mine if c.res == "m"), key=lambda c: c.slot)
        hours = sorted((c for c in mine if c.res == "h"), key=lambda c: c.slot)
        days: dict[int, Cell] = {}
        for c in hours:
            cell = to_cell(c)
            days.setdefault(c.slot // 24, Cell()).merge(cell)
            if c.slot == hour_now:
                stat.hour, stat.hour_cell = c.slot, cell
            elif c.slot > hour_now - limits.fn_hours:
                stat.hours[c.slot] = summary([cell])
        for day, cell in days.items():
            if day == day_now:
                stat.day, stat.day_cell = day, cell
            elif day > day_now - limits.fn_days:
                stat.days[day] = summary([cell])
        oldest_window = minute_now - limits.fn_window + 1
        for c in minutes:
            cell = to_cell(c)
            if c.slot == minute_now:
                stat.minute, stat.minute_cell = c.slot, cell
                if stat.hour == c.slot // HOUR:
                    stat.hour_cell.subtract(cell)
                if stat.day == c.slot // DAY:
                    stat.day_cell.subtract(cell)
                continue
            if c.slot > minute_now - limits.fn_minutes:
                stat.minutes[c.slot] = summary([cell])
            if c.slot >= oldest_window:
                stat.window_cells.append((c.slot, cell))
                stat.window.merge(cell)
                stat.window_read = None
        if stat.minute < 0:
            stat.minute = minute_now
        if stat.hour < 0:
            stat.hour = hour_now
        if stat.day < 0:
            stat.day = day_now
        stat.version += 1


def to_cell(c: StatCell) -> Cell:
    """A store cell (checked by the store as it decoded it) as a live one."""
    cell = Cell()
    cell.counts = [c.completed, c.failed, c.retried]
    cell.rt, cell.wt = dict(c.rt), dict(c.wt)  # the cell grows; the store's record stays as it was read
    cell.rt_max, cell.wt_max = c.rt_max, c.wt_max
    return cell
