"""The fold: `fold(state, event, at) -> changed aspects`. Every state transition of jobpulse starts here.

Rule 1: every change to `State` happens in the fold, one event at a time:
this module's head and dispatch, and each domain's own module, which owns its
records and the fold of its events: `jobs` (job events, the indexes and status
pools), `runners` (heartbeats, runner.stopped, runner.removed), `channels`
(depth reports), `series` (the clock, the per-minute and per-hour counts) and
`shell` (the clock tick, the sources' links, reconciles, restores).
Rule 2: no I/O, no clock, no randomness. Time comes in: `at` is when the shell
received the event (jobpulse's clock); `Tick` events move the clock on, so
"silent runner" and day windows are testable without sleeping.
Rule 3: redelivered and out-of-date events change nothing (event ids within a
bounded window; per-job (attempt, phase, ts) order; per-runner boot and ts).

The return value is a bit mask of aspects that changed (server/streams/core/aspects.py),
which tells the hub which widget projections to recompute. The intake counters
of `health` (events, duplicates, out-of-order, evictions) are flagged by the
clock tick, at most once a tick, not by every event; a seq gap is counted in
`health.gaps`, which the shell watches to catch up. The state is mutated in
place (it is big and events are many); `fold` is deterministic, so folding the
same events into two fresh states gives equal states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from server.streams.core import channels, groups, jobs, runners, shell
from server.streams.core.aspects import HEALTH
from server.streams.core.events import (
    AuditNoted,
    Depth,
    Event,
    GroupMutes,
    Heartbeat,
    JobEvent,
    LogRecorded,
    NotifyStatus,
    Reconciled,
    Rejected,
    Restored,
    RunnerRemoved,
    RunnerStopped,
    ShellStats,
    SourceStatus,
    SourceWarning,
    Tick,
)
from server.streams.core.series import advance
from server.streams.core.state import Limits, State


def initial_state(limits: Limits | None = None) -> State:
    """A fresh, empty state."""
    return State(limits or Limits())


# The fold of each message a source sends, after the head (`_head`), and of each event the shell makes.
_SOURCE: dict[type, Callable[[State, Any, float, bool], int]] = {
    Heartbeat: runners.fold_heartbeat,
    Depth: channels.fold_depth,
    RunnerStopped: runners.fold_stopped,
    RunnerRemoved: runners.fold_removed,
}
_SHELL: dict[type, Callable[[State, Any], int]] = {
    Tick: shell.tick,
    Rejected: shell.rejected,
    SourceStatus: shell.source_status,
    SourceWarning: shell.source_warning,
    Reconciled: shell.reconciled,
    Restored: shell.restored,
    LogRecorded: shell.logged,
    ShellStats: shell.shell_stats,
    AuditNoted: shell.audit_noted,
    NotifyStatus: shell.notify_status,
    GroupMutes: groups.mutes,
}


def fold(state: State, event: Event, at: float, replay: bool = False) -> int:
    """Fold one event into `state`, received at `at`; return the aspects that changed.

    `replay` marks an event read back from the replay stream: it is folded like any
    other, but does not move its publisher's seq (which would look like a gap).

    Raises:
        TypeError: for an event type this reducer does not know (never silently ignored).
    """
    if type(event) is JobEvent:  # the hot path first
        if jobs.seen(state, event.id):
            state.health.dupes += 1
            return 0  # shown with the next clock tick, like the other counters
        return _head(state, event, at, replay) | jobs.fold_job(state, event, at, replay)
    kind = type(event)
    source = _SOURCE.get(kind)
    if source is not None:
        return _head(state, event, at, replay) | source(state, event, at, replay)
    made = _SHELL.get(kind)
    if made is not None:
        return made(state, event)
    raise TypeError(f"fold: unknown event type {kind.__name__}")


def fold_all(state: State, events: Iterable[tuple[Event, float]]) -> int:
    """Fold events in order; return the union of the changed aspects."""
    changed = 0
    for event, at in events:
        changed |= fold(state, event, at)
    return changed


def _head(state: State, msg: Any, at: float, replay: bool) -> int:
    """What every message of a source does first: count it, move the clock, note its publisher's seq."""
    health = state.health
    health.events += 1
    health.last_event = at
    return advance(state, at) | track_seq(state, msg.src, msg.seq, replay)


def track_seq(state: State, src: str, seq: int, replay: bool) -> int:
    """Note `src`'s seq; a jump forward is a gap (messages lost): counted in `health.gaps`, which the shell
    watches to reconcile and replay."""
    if replay:
        return 0
    sources = state.sources
    last = sources.get(src)
    sources[src] = seq
    if last is None:
        if len(sources) > state.limits.max_sources:
            sources.popitem(last=False)
        return 0
    if seq > last + 1:
        state.health.gaps += 1
        state.health.missed += seq - last - 1
        return HEALTH
    # seq <= last: the publisher restarted (seq starts over) or a redelivery; both are fine.
    return 0
