"""Channels: each channel's latest depth as its source reports it, and the totals over all of them.

Pure layer. A depth report (or a reconcile) sets each channel it names unless
the report is older than what the channel shows; the totals (pending, running,
scheduled) are the sums, sampled into the current minute's gauges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.streams.core import series
from server.streams.core.aspects import CHANNELS, COUNTERS
from server.streams.core.series import PENDING

if TYPE_CHECKING:
    from server.streams.core.events import ChannelDepth, Depth
    from server.streams.core.state import State


class Channel:
    """One channel (queue): its latest authoritative depth."""

    __slots__ = ("inflight", "name", "oldest", "paused", "queued", "scheduled", "ts")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queued = 0
        self.inflight = 0
        self.scheduled = 0
        self.oldest: float | None = None
        self.paused = False
        self.ts: float | None = None


def fold_depth(state: State, msg: Depth, at: float, replay: bool) -> int:
    changed = 0
    for name, depth in msg.channels.items():
        changed |= set_depth(state, name, depth, msg.ts if depth.ts is None else depth.ts)
    if changed & CHANNELS:
        changed |= retotal(state, at)
    return changed


def set_depth(state: State, name: str, depth: ChannelDepth, ts: float) -> int:
    channel = state.channels.get(name)
    if channel is None:
        if len(state.channels) >= state.limits.max_channels:
            return 0
        channel = Channel(name)
        state.channels[name] = channel
    elif channel.ts is not None and ts < channel.ts:
        return 0
    channel.ts = ts
    if (channel.queued, channel.inflight, channel.scheduled, channel.oldest, channel.paused) == (
        depth.queued,
        depth.inflight,
        depth.scheduled,
        depth.oldest,
        depth.paused,
    ):
        return 0
    channel.queued = depth.queued
    channel.inflight = depth.inflight
    channel.scheduled = depth.scheduled
    channel.oldest = depth.oldest
    channel.paused = depth.paused
    return CHANNELS


def retotal(state: State, at: float) -> int:
    totals = [0, 0, 0]
    for channel in state.channels.values():
        totals[0] += channel.queued
        totals[1] += channel.inflight
        totals[2] += channel.scheduled
    if totals == state.totals:
        return 0
    state.totals = totals
    if state.health.any_connected:
        series.minute_bucket(state, int(at // 60))[PENDING : PENDING + 3] = totals
    return COUNTERS
