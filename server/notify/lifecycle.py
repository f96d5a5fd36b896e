"""An alert's life, shared by every jobpulse process: when a hot issue fires, reminds, escalates and resolves.

Pure layer: standard library only; no clock (time comes in as `now`). Every
process folds the same events, so every process sees the same hot issues and
proposes the same notifications; the shared record of each alert (in Redis,
server/notify/outbox.py) decides which proposal is news. `decide` is that
decision: given the record as stored (or None) and a proposal, the record to
store and the notification to send, if any. The outbox applies it inside a
Redis transaction, so with several processes each transition is sent once.

A proposal to fire carries the episode's `since` (when this process saw the
issue open): a record resolved after that moment means the proposer lags
behind the process that resolved it, and the proposal is stale. A process that
resolves a record sees the issue's next episode open after it, so a real new
episode is never lost to that rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

SEVERITY_RANK = {"critical": 0, "warning": 1}
Kind = Literal["firing", "resolved", "reminder", "test"]


@dataclass(frozen=True)
class Policy:
    """When alerts fire and remind (settings JOBPULSE_ALERT_*)."""

    min_open: float = 30.0  # an issue open less long does not fire: flap damping
    min_open_by_rule: Mapping[str, float] | None = None
    remind: float = 14_400.0  # an open, unacknowledged alert is sent again this often; 0 = never
    settle: float = 5.0  # a record fired this long ago whose issue a process does not see is over

    def min_open_of(self, rule: str) -> float:
        by_rule = self.min_open_by_rule or {}
        return by_rule.get(rule, self.min_open)


@dataclass(frozen=True)
class Issue:
    """An open hot issue as a process sees it (server/streams/core/state.Alert, copied out of the fold)."""

    id: str
    rule: str
    key: str
    severity: str
    title: str
    detail: str
    since: float


@dataclass(frozen=True)
class Record:
    """The shared record of one alert: what was last sent about it and when."""

    id: str
    rule: str
    key: str
    state: Literal["firing", "resolved"]
    severity: str
    title: str
    detail: str
    since: float  # the episode's start, as the process that fired it saw it
    fired_at: float
    sent_at: float  # the last notification about this episode (for reminders)
    episode: str  # names the episode in every notification about it (receivers group and dedupe by it)
    sent: int = 1  # notifications sent about this episode so far
    resolved_at: float = 0.0
    acked_by: str = ""
    acked_at: float = 0.0
    routed: tuple[str, ...] = ()  # the targets told of this episode (its resolution goes to them)


@dataclass(frozen=True)
class Fire:
    issue: Issue


@dataclass(frozen=True)
class Resolve:
    id: str


Proposal = Fire | Resolve


@dataclass(frozen=True)
class Notice:
    """One notification to send (to every target whose route takes it)."""

    id: str  # unique per notification: the episode and its count
    kind: Kind
    record: Record
    at: float


def proposals(
    issues: Iterable[Issue], firing: Iterable[Record], now: float, policy: Policy, silenced: Iterable[str] = ()
) -> Iterator[Proposal]:
    """What this process proposes now: every issue open long enough and not silenced (the record decides whether
    that is news), and the resolution of every firing record whose issue this process no longer sees."""
    muted = set(silenced)
    open_ids = set()
    for issue in issues:
        open_ids.add(issue.id)
        if issue.id in muted or issue.rule in muted:
            continue
        if now - issue.since >= policy.min_open_of(issue.rule):
            yield Fire(issue)
    for record in firing:
        if record.state == "firing" and record.id not in open_ids and now - record.fired_at >= policy.settle:
            yield Resolve(record.id)


def decide(
    record: Record | None, proposal: Proposal, now: float, policy: Policy
) -> tuple[Record | None, Notice | None]:
    """The record to store and the notice to send for `proposal` against the stored `record` (None, None: no
    change)."""
    if isinstance(proposal, Resolve):
        if record is None or record.state != "firing":
            return None, None
        done = replace(record, state="resolved", resolved_at=now, sent_at=now, sent=record.sent + 1)
        return done, _notice(done, "resolved", now)
    issue = proposal.issue
    if record is None or record.state == "resolved":
        if record is not None and issue.since <= record.resolved_at:
            return None, None  # an episode already resolved, proposed by a process that lags behind
        episode = f"{issue.id}@{now:.3f}"
        fired = Record(
            id=issue.id, rule=issue.rule, key=issue.key, state="firing", severity=issue.severity, title=issue.title,
            detail=issue.detail, since=issue.since, fired_at=now, sent_at=now, episode=episode,
        )  # fmt: skip
        return fired, _notice(fired, "firing", now)
    worse = SEVERITY_RANK.get(issue.severity, 9) < SEVERITY_RANK.get(record.severity, 9)
    if worse:
        # Escalated: news, sent as a firing of the same episode (PagerDuty and Alertmanager update it in place).
        raised = replace(record, severity=issue.severity, title=issue.title, detail=issue.detail, sent_at=now,
                         sent=record.sent + 1, acked_by="", acked_at=0.0)  # fmt: skip
        return raised, _notice(raised, "firing", now)
    if policy.remind > 0 and not record.acked_by and now - record.sent_at >= policy.remind:
        again = replace(record, severity=issue.severity, title=issue.title, detail=issue.detail, sent_at=now,
                        sent=record.sent + 1)  # fmt: skip
        return again, _notice(again, "reminder", now)
    if (record.severity, record.title, record.detail) != (issue.severity, issue.title, issue.detail):
        # Eased, or its detail moved on: kept for the page and the next notification, sent to no one.
        return replace(record, severity=issue.severity, title=issue.title, detail=issue.detail), None
    return None, None


def acknowledge(record: Record, user: str, now: float) -> Record | None:
    """The record acknowledged by `user` (no more reminders for this episode); None if it is not firing."""
    if record.state != "firing":
        return None
    return replace(record, acked_by=user, acked_at=now)


def _notice(record: Record, kind: Kind, now: float) -> Notice:
    return Notice(id=f"{record.episode}#{record.sent}", kind=kind, record=record, at=now)
