"""Failure groups: failed jobs grouped by cause (server/streams/core/fingerprint.py), with counts and a trend.

Pure layer. The job fold calls `failed` for each job that ends `failed`: its
cause is fingerprinted (memoised: a storm of one error costs one parse) and
counted into its group: count, first and last seen, the functions and channels
it hit, a per-minute trend, and the newest sample jobs. The job remembers its
group, so an operator can retry the group's failed jobs. Groups are bounded
(Limits.max_groups; the one seen least lately goes first), and mutes come in
from the shell (`GroupMutes`: they live in Redis, shared by every process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.streams.core import fingerprint
from server.streams.core.aspects import GROUPS

if TYPE_CHECKING:
    from server.streams.core.events import GroupMutes, GroupRecord
    from server.streams.core.jobs import Job
    from server.streams.core.state import State

SAMPLES = 5  # newest failed jobs kept per group
RELATED = 20  # functions and channels named per group
TREND_MINUTES = 60  # the sparkline's minutes (and the spike rule's baseline)
EXAMPLE_CAP = 500  # characters of the first raw error kept as the group's example
CAUSE_MEMO = 2_000  # (error, traceback) pairs whose fingerprint is remembered


class Group:
    """Failures that share one cause."""

    __slots__ = (
        "channels",
        "count",
        "example",
        "first",
        "frame",
        "functions",
        "id",
        "last",
        "message",
        "minutes",
        "samples",
        "type",
    )

    def __init__(self, cause: fingerprint.Cause, example: str, at: float) -> None:
        self.id = cause.fingerprint
        self.type = cause.type
        self.message = cause.message
        self.frame = cause.frame
        self.example = example[:EXAMPLE_CAP]
        self.count = 0
        self.first = at
        self.last = at
        self.functions: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        self.minutes: dict[int, int] = {}  # minute -> failures, the last TREND_MINUTES
        # The newest failed jobs, newest first: (job id, at, function, channel, error's first line).
        self.samples: tuple[tuple[str, float, str, str, str], ...] = ()


def _bump(counts: dict[str, int], name: str) -> None:
    if name in counts:
        counts[name] += 1
    elif len(counts) < RELATED:
        counts[name] = 1


def cause_of(state: State, error: str | None, traceback: str | None) -> fingerprint.Cause:
    """The failure's cause, memoised by its text (the same error repeats: a parse costs tens of µs)."""
    key = (error, traceback)
    memo = state.cause_memo
    found = memo.get(key)
    if found is None:
        found = fingerprint.cause(error, traceback)
        if len(memo) >= CAUSE_MEMO:
            del memo[next(iter(memo))]
        memo[key] = found
    return found


def failed(state: State, job: Job, at: float) -> int:
    """`job` ended failed at `at` (jobpulse's clock): count it in its cause's group."""
    cause = cause_of(state, job.error, job.traceback)
    groups = state.groups
    group = groups.pop(cause.fingerprint, None)  # re-inserted last: the dict is ordered by last seen
    if group is None:
        if len(groups) >= state.limits.max_groups:
            gone = next(iter(groups))
            del groups[gone]
            state.dirty_groups.add(gone)
        group = Group(cause, job.error or cause.type, at)
    groups[group.id] = group
    group.count += 1
    group.last = max(group.last, at)
    _bump(group.functions, job.fn)
    _bump(group.channels, job.channel)
    minute = int(at // 60)
    minutes = group.minutes
    minutes[minute] = minutes.get(minute, 0) + 1
    if len(minutes) > TREND_MINUTES:
        for old in [m for m in minutes if m <= minute - TREND_MINUTES]:
            del minutes[old]
    error = (job.error or "").split("\n", 1)[0][:200]
    group.samples = ((job.id, at, job.fn, job.channel, error), *group.samples[: SAMPLES - 1])
    job.group = group.id
    state.dirty_groups.add(group.id)
    return GROUPS


def recent(group: Group, minute: int, minutes: int) -> int:
    """The group's failures in the `minutes` minutes up to and including `minute`."""
    return sum(n for m, n in group.minutes.items() if minute - minutes < m <= minute)


def muted(state: State, group_id: str) -> bool:
    mute = state.group_mutes.get(group_id)
    return mute is not None and mute[0] > state.now


def mutes(state: State, msg: GroupMutes) -> int:
    """The shell read the mutes every process shares."""
    fresh = {m.group: (m.until, m.by, m.reason) for m in msg.mutes}
    if fresh == state.group_mutes:
        return 0
    state.group_mutes = fresh
    return GROUPS


def restore(state: State, records: tuple[GroupRecord, ...]) -> None:
    """Bring back the groups the store kept (those this process counts already keep their own numbers)."""
    for r in sorted(records, key=lambda r: r.last):
        if r.id in state.groups:
            continue
        if len(state.groups) >= state.limits.max_groups:
            break
        cause = fingerprint.Cause(r.id, r.type, r.message, r.frame)
        group = Group(cause, r.example, r.first)
        group.count, group.last = r.count, r.last
        group.functions = dict(list(r.functions.items())[:RELATED])
        group.channels = dict(list(r.channels.items())[:RELATED])
        group.minutes = {int(m): n for m, n in list(r.minutes.items())[-TREND_MINUTES:]}
        group.samples = tuple(tuple(s) for s in r.samples[:SAMPLES])  # type: ignore[misc]
        state.groups[r.id] = group
