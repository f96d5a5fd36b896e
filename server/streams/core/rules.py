"""Hot-issue rules: conditions on the live state that raise an alert while they hold and clear it after.

Pure layer: standard library only; called by the reducer on every clock tick,
with the tick's time. Each rule yields (rule, key, severity, title, detail);
an alert's id is `rule:key`, so a condition that persists is one alert, not a
stream of them. `evaluate` opens, updates and closes alerts to match, and logs
each change in the alert timeline.

Rules:
- source_down: the job system's Redis is unreachable (critical).
- no_runner: a channel has queued jobs and no live runner consumes it (critical).
- failing_channel: a channel's failures over the last `fail_window` minutes are at least `fail_min` and at
  least `fail_rate` of its finished jobs (critical from `fail_critical`).
- stuck_jobs: jobs of a channel have been running longer than `stuck_after` (warning).
- backlog_sla: a channel's oldest queued job is older than the channel's SLA (critical at twice the SLA).
- silent_runner: a runner stopped beating without saying it stopped (stale: warning; offline: critical).
- failure_group: a new cause of failures (a failure group first seen within `group_new_s` with at least
  `group_new_min` failures), or a spike of a known one (at least `group_spike_min` failures in 5 minutes and
  `group_spike_factor` times its rate over the hour before); muted groups raise nothing (warning).
- source_warning: a condition the source's connector reports about the job system itself (SourceWarning; the
  mojo source: django-mojo's scheduler holds no lock, or holds it and does not loop).
"""

from __future__ import annotations

from collections.abc import Iterator

from server.streams.core import groups
from server.streams.core.labels import SEP
from server.streams.core.series import COMPLETED, FAILED
from server.streams.core.state import Alert, State

LIVE_RUNNER = frozenset({"online", "busy", "draining"})
RULES = ("source_down", "source_warning", "no_runner", "failing_channel", "stuck_jobs", "backlog_sla", "silent_runner",
         "failure_group")  # fmt: skip
SEVERITY_RANK = {"critical": 0, "warning": 1}

Condition = tuple[str, str, str, str, str]  # rule, key, severity, title, detail


def conditions(state: State, now: float) -> Iterator[Condition]:
    """Every rule's conditions that hold now."""
    limits = state.limits
    health = state.health
    several = len(health.links) > 1
    for label, link in health.links.items():
        # With several sources each is its own alert, named: the others stay live and exact.
        if not link.connected and link.since is not None:
            key, title = (label, f"Job system unreachable: {label}") if several else ("", "Job system unreachable")
            yield "source_down", key, "critical", title, link.error or "the source is not connected"
        for key, (severity, title, detail) in link.warnings.items():
            if several:
                key, title = f"{label}:{key}", f"{label}: {title}"
            yield "source_warning", key, severity, title, detail

    consumed: dict[str, int] = {}
    for runner in state.runners.values():
        if runner.status in LIVE_RUNNER:
            for consumed_channel in runner.channels:
                consumed[consumed_channel] = consumed.get(consumed_channel, 0) + 1

    minute = state.minute
    for name, channel in state.channels.items():
        if channel.queued and not consumed.get(name) and not channel.paused:
            yield ("no_runner", name, "critical", f"{name}: backlog and no runner",
                   f"{channel.queued} queued, no live runner consumes {name}")  # fmt: skip
        if channel.oldest is not None and channel.queued:
            age = now - channel.oldest
            sla = limits.sla_of(name)
            if age > sla:
                severity = "critical" if age > 2 * sla else "warning"
                detail = f"oldest queued job waited {_span(age)} (SLA {_span(sla)}); {channel.queued} queued"
                yield "backlog_sla", name, severity, f"{name}: backlog over its SLA", detail

    for name, ring in state.channel_series.items():
        first = minute - limits.fail_window + 1
        failed = ring.sum(first, minute, FAILED)
        if failed < limits.fail_min:
            continue
        done = failed + ring.sum(first, minute, COMPLETED)
        rate = failed / done
        if rate >= limits.fail_rate:
            severity = "critical" if rate >= limits.fail_critical else "warning"
            yield ("failing_channel", name, severity, f"{name} channel failing",
                   f"{failed} of {done} finished jobs failed in the last {limits.fail_window} min")  # fmt: skip

    stuck: dict[str, list[float]] = {}
    for job_id in state.running:
        job = state.jobs[job_id]
        if job.started_at is not None and now - job.started_at > limits.stuck_after:
            stuck.setdefault(job.channel, []).append(job.started_at)
    for name, started in stuck.items():
        title = f"{name}: {len(started)} stuck job{'s' if len(started) > 1 else ''}"
        detail = f"running for more than {_span(limits.stuck_after)}, the longest {_span(now - min(started))}"
        yield "stuck_jobs", name, "warning", title, detail

    for runner in state.runners.values():
        if runner.stopped or runner.status not in ("stale", "offline"):
            continue
        silent = "" if runner.last_recv is None else f" for {_span(now - runner.last_recv)}"
        severity = "critical" if runner.status == "offline" else "warning"
        yield ("silent_runner", runner.id, severity, f"runner {runner.id} silent",
               f"no heartbeat{silent}; it did not say it stopped")  # fmt: skip

    yield from _failure_groups(state, now)


SPIKE_MINUTES = 5


def _failure_groups(state: State, now: float) -> Iterator[Condition]:
    """A new cause of failures, or a known one failing far more often than over the last hour (not muted)."""
    limits = state.limits
    minute = int(now // 60)
    for group in reversed(state.groups.values()):  # last seen first: the ones that can hold come first
        if group.last < now - max(limits.group_new_s, SPIKE_MINUTES * 60):
            break  # ordered by last seen: nothing older can be new or spiking
        if groups.muted(state, group.id):
            continue
        where = ", ".join(list(group.functions)[:2])
        what = f"{group.type.rsplit('.', 1)[-1]}" + (f" in {where}" if where else "")
        if group.first >= now - limits.group_new_s and group.count >= limits.group_new_min:
            detail = f"{group.count} failures since {_span(now - group.first)} ago: {group.message[:120]}"
            yield "failure_group", group.id, "warning", f"New failure: {what}", detail
            continue
        last5 = groups.recent(group, minute, SPIKE_MINUTES)
        if last5 < limits.group_spike_min:
            continue
        before = groups.recent(group, minute - SPIKE_MINUTES, groups.TREND_MINUTES - SPIKE_MINUTES)
        baseline = before / ((groups.TREND_MINUTES - SPIKE_MINUTES) / SPIKE_MINUTES)  # per 5 minutes
        if last5 >= limits.group_spike_factor * max(baseline, 1.0):
            detail = f"{last5} failures in {SPIKE_MINUTES} min (about {baseline:.0f} per {SPIKE_MINUTES} min before)"
            yield "failure_group", group.id, "warning", f"Failure spike: {what}", detail


def evaluate(state: State, now: float) -> bool:
    """Bring `state.alerts` in line with the conditions that hold now; True if anything changed."""
    changed = False
    held: set[str] = set()
    for rule, key, severity, title, detail in conditions(state, now):
        alert_id = f"{rule}:{key}" if key else rule
        held.add(alert_id)
        alert = state.alerts.get(alert_id)
        if alert is None:
            alert = state.alerts[alert_id] = Alert(rule, key, severity, title, detail, now)
            _log(state, now, alert, "raised")
            changed = True
        elif (alert.severity, alert.title, alert.detail) != (severity, title, detail):
            if alert.severity != severity:
                alert.severity = severity
                _log(state, now, alert, "escalated" if severity == "critical" else "eased")
            alert.title, alert.detail, alert.updated = title, detail, now
            changed = True
    for alert_id in [a for a in state.alerts if a not in held]:
        _log(state, now, state.alerts.pop(alert_id), "cleared")
        changed = True
    return changed


# Which service-matrix component an alert is an incident of (the status page's "last incident" column).
COMPONENT_OF = {"source_down": "source", "source_warning": "connector", "silent_runner": "runners",
                "no_runner": "runners"}  # fmt: skip


def _log(state: State, at: float, alert: Alert, what: str) -> None:
    state.seq += 1
    state.alert_log.appendleft((state.seq, at, alert.id, what, alert.severity, alert.title))
    component = COMPONENT_OF.get(alert.rule)
    if component == "source" and alert.key:  # several sources: filed under the one it is about
        component = f"source:{alert.key.partition(':')[0]}"
    if component is not None and what in ("raised", "escalated"):
        state.last_incident[component] = (at, alert.severity, alert.title)


def of_source(alert: Alert, source: str) -> bool:
    """Whether `alert` is about source `source` (several sources: its key is the label, or begins with it, as
    every runner's and channel's id does)."""
    return alert.key == source or alert.key.startswith(source + SEP)


def overall(state: State, source: str = "") -> tuple[str, str]:
    """The service's status (ok, warning, critical) and the title of the alert that set it (of one source's
    alerts, with `source`)."""
    alerts = [a for a in state.alerts.values() if of_source(a, source)] if source else state.alerts.values()
    worst = min(alerts, key=lambda a: (SEVERITY_RANK.get(a.severity, 9), a.since), default=None)
    if worst is None:
        return "ok", "no rule fired"
    return worst.severity, worst.title


def _span(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h {s % 3600 // 60}m"
