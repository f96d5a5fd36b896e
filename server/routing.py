"""Which source an operator command goes to, in that source's own ids, and what the fold knows that it needs.

Pure layer: the fold's state and the actions' arguments only; no I/O, no clock.
With several sources (server/streams/core/labels.py) the console's ids carry
their source's label: `route` splits a command's targets by owner and gives
each owner the arguments with its own ids back (a command for runners of two
sources becomes one per source; one for "every runner" or "every channel"
goes to every source). `known` is the part of the fold a connector's actions
may use, in its own ids, so no connector reads the state behind the fold's
back. `label_result` turns the ids in a source's answer back into console ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from server.actions import (
    LIVE_STATUSES,
    Args,
    BatchArgs,
    ChannelArgs,
    CleanupArgs,
    ClearStuckArgs,
    JobArgs,
    LogsArgs,
    RestartArgs,
    RunArgs,
    RunnersArgs,
    dead_runners,
)
from server.streams.core.labels import SEP, join, split
from server.streams.core.state import State


class NoOwner(ValueError):
    """A command names something no configured source owns (an id without a known label)."""


@dataclass(frozen=True)
class JobFacts:
    """What the fold knows of one job a command names."""

    status: str
    channel: str  # the source's own channel name
    fn: str


@dataclass(frozen=True)
class Known:
    """The part of the fold a source's actions need, in the source's own ids (handed to `Connector.perform`)."""

    now: float
    live: list[str]  # live runners (online, busy, draining), in id order
    channels: list[str]  # channels the fold knows, in name order
    consumes: dict[str, list[str]] = field(default_factory=dict)  # live runner -> the channels it consumes
    jobs: dict[str, JobFacts] = field(default_factory=dict)  # the jobs the command names
    dead: list[str] = field(default_factory=list)  # runners a cleanup would forget (runners.cleanup only)


def route(args: Args, labels: Iterable[str], several: bool) -> dict[str, Args]:
    """Each owning source's label -> the arguments with its own ids. With one source it owns everything.

    Raises:
        NoOwner: for a runner, channel or job id that carries no configured source's label.
    """
    order = list(labels)
    if not several:
        return {order[0]: args} if order else {}
    if isinstance(args, RunnersArgs | RestartArgs) and args.runners != "*":
        return {label: msgspec.structs.replace(args, runners=ids) for label, ids in _group(args.runners, order)}
    if isinstance(args, BatchArgs) and args.channels != "*":
        return {label: msgspec.structs.replace(args, channels=ids) for label, ids in _group(args.channels, order)}
    if isinstance(args, LogsArgs):
        label, own = _owner(args.runner, order, "runner")
        return {label: msgspec.structs.replace(args, runner=own)}
    if isinstance(args, RunArgs | ChannelArgs) or (isinstance(args, ClearStuckArgs) and args.channel is not None):
        label, own = _owner(args.channel or "", order, "channel")
        return {label: msgspec.structs.replace(args, channel=own)}
    if isinstance(args, JobArgs):
        label, own = _owner(args.job, order, "job")
        return {label: msgspec.structs.replace(args, job=own)}
    # Every runner, every channel, broadcast, cleanup, rate limits: each source does its part.
    return dict.fromkeys(order, args)


def _owner(name: str, labels: list[str], what: str) -> tuple[str, str]:
    found = split(name, labels)
    if found is None:
        sources = ", ".join(labels)
        raise NoOwner(f"{what} {name[:100]!r} belongs to no source (ids look like <source>{SEP}<id>; {sources})")
    return found


def _group(names: list[str], labels: list[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        label, own = _owner(name, labels, "runner or channel")
        groups.setdefault(label, []).append(own)
    return [(label, groups[label]) for label in labels if label in groups]


def known(state: State, args: Args, label: str) -> Known:
    """What the fold knows that source `label` needs for `args` (its own ids)."""
    several = state.limits.several
    prefix = label + SEP if several else ""

    def own(name: str) -> str | None:
        if not several:
            return name
        return name[len(prefix) :] if name.startswith(prefix) else None

    live: list[str] = []
    consumes: dict[str, list[str]] = {}
    for runner in state.runners.values():
        rid = own(runner.id)
        if rid is not None and runner.status in LIVE_STATUSES:
            live.append(rid)
            consumes[rid] = [c for c in (own(c) for c in runner.channels) if c is not None]
    channels = sorted(c for c in (own(name) for name in state.channels) if c is not None)
    jobs: dict[str, JobFacts] = {}
    if isinstance(args, JobArgs):
        job = state.jobs.get(prefix + args.job)
        if job is not None:
            jobs[args.job] = JobFacts(job.status, own(job.channel) or job.channel, job.fn)
    dead: list[str] = []
    if isinstance(args, CleanupArgs):
        dead = [r for r in (own(r) for r in dead_runners(state, args.older_than, state.now)) if r is not None]
    return Known(now=state.now, live=sorted(live), channels=channels, consumes=consumes, jobs=jobs, dead=dead)


# Keys of a source's answer that hold one of its ids, or lists of them.
_ID_KEYS = ("job", "of", "runner", "channel")
_ID_LISTS = ("missing", "channels", "jobs")


def label_result(result: Mapping[str, Any], label: str) -> dict[str, Any]:
    """A source's answer with its ids made console ids (`label:id`), for the ack and the audit log."""
    out = dict(result)
    for key in _ID_KEYS:
        if isinstance(out.get(key), str):
            out[key] = join(label, out[key])
    for key in _ID_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [join(label, v) if isinstance(v, str) else v for v in out[key]]
    if isinstance(out.get("replies"), list):
        out["replies"] = [
            {**r, "src": join(label, r["src"])} if isinstance(r, dict) and isinstance(r.get("src"), str) else r
            for r in out["replies"]
        ]
    return out
