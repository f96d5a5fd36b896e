"""Sources side by side: each source's label, and its ids made distinct in the one state all sources fold into.

Pure layer: standard library and msgspec only. With one source, ids are the
source's own. With several (JOBPULSE_SOURCES), every runner, channel and job id
that a source's events carry is prefixed with its label and a colon
(`payments:celery@web-1`, `media:emails`, `edge:7f3a...`), so two systems' ids
never collide, every row says where it comes from, and a command finds the
source that owns its target. The colon is already allowed in channel names and
in the job search's values, so prefixed names need no other change.

`relabel` does that to one event on its way from a connector to the fold; the
fold learns a runner's source from its id (`source_of`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgspec

from server.streams.core.events import (
    ActiveJob,
    Depth,
    Heartbeat,
    JobEvent,
    Reconciled,
    RunnerRemoved,
    RunnerStopped,
    SourceStatus,
    SourceWarning,
)

SEP = ":"
LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")  # short: it is shown on every row, and prefixes every id
MAX_LABELS = 16  # sources one jobpulse watches at once (JOBPULSE_SOURCES)

replace = msgspec.structs.replace
E = TypeVar("E")


@dataclass(frozen=True)
class SourceRule:
    """One configured source as the fold needs it: its label, its kind, and its runners' silence rule."""

    label: str
    kind: str  # native, celery or mojo
    stale_factor: float
    offline_factor: float


def join(label: str, name: str) -> str:
    """`name` of source `label` as the console knows it."""
    return f"{label}{SEP}{name}"


def split(name: str, labels: Iterable[str]) -> tuple[str, str] | None:
    """(label, the source's own name) of a console name, or None if no configured source owns it."""
    label, sep, own = name.partition(SEP)
    if sep and own and label in labels:
        return label, own
    return None


def source_of(name: str, rules: Mapping[str, SourceRule]) -> str:
    """The label of the source a console name belongs to ("" if none: one source, or a name no source owns)."""
    if len(rules) < 2:
        return next(iter(rules), "")
    label, sep, _ = name.partition(SEP)
    return label if sep and label in rules else ""


def relabel(event: E, label: str, prefixed: bool) -> E:
    """`event` as the fold must see it from source `label`: its status and warnings say which source they are
    about, and, when several sources share the state (`prefixed`), every id it carries gets the label.

    Events that carry no source ids (rejections, logs) pass unchanged.
    """
    return cast(E, _relabel(event, label, prefixed))  # the same type: each branch replaces fields, or passes it


def _relabel(event: Any, label: str, prefixed: bool) -> Any:
    if not prefixed:
        if type(event) is SourceStatus or type(event) is SourceWarning or type(event) is Reconciled:
            return replace(event, source=label)
        return event
    p = label + SEP
    if type(event) is JobEvent:
        return replace(
            event,
            id=p + event.id,
            src=p + event.src,
            job=p + event.job,
            channel=p + event.channel,
            runner=None if event.runner is None else p + event.runner,
        )
    if type(event) is Heartbeat:
        return _beat(event, p)
    if type(event) is Depth:
        return replace(
            event,
            src=p + event.src,
            id=None if event.id is None else p + event.id,
            channels={p + name: depth for name, depth in event.channels.items()},
        )
    if type(event) is RunnerStopped:
        return replace(event, src=p + event.src, id=None if event.id is None else p + event.id)
    if type(event) is RunnerRemoved:
        return replace(event, src=p + event.src, runner=p + event.runner, id=None if event.id is None else p + event.id)
    if type(event) is Reconciled:
        return replace(
            event,
            source=label,
            registered=tuple(p + r for r in event.registered),
            heartbeats=tuple(_beat(b, p) for b in event.heartbeats),
            depth={p + name: depth for name, depth in event.depth.items()},
        )
    if type(event) is SourceStatus or type(event) is SourceWarning:
        return replace(event, source=label)
    return event


def _beat(beat: Heartbeat, p: str) -> Heartbeat:
    return replace(
        beat,
        src=p + beat.src,
        id=None if beat.id is None else p + beat.id,
        channels=[p + c for c in beat.channels],
        active=[ActiveJob(job=p + a.job, channel=p + a.channel, fn=a.fn, started=a.started) for a in beat.active],
    )
