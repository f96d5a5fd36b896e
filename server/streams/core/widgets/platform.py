"""Platform Status widgets: jobpulse's own numbers, the service matrix, and the alert timeline.

Pure layer: standard library only. Shapes are documented in docs/protocol.md section 3.11.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from server.streams.core import rules
from server.streams.core.events import NotifyLine, NotifyTarget
from server.streams.core.state import State
from server.streams.core.widgets.common import View, ViewLimits, alert_marks, compact

LIVE_RUNNER = frozenset({"online", "busy", "draining"})


def platform(state: State, limits: ViewLimits) -> View:
    """KPIs of jobpulse itself and a matrix of the services it depends on."""
    health = state.health
    status, rule = rules.overall(state)
    shell = state.shell
    live = sum(1 for r in state.runners.values() if r.status in LIVE_RUNNER)
    silent = sum(1 for r in state.runners.values() if r.status in ("stale", "offline") and not r.stopped)
    matrix: dict[str, Any] = {}
    several = len(health.links) > 1
    for label, link in health.links.items():
        # One row per connection of each source (django-mojo's Redis and Postgres are two), named by the source
        # when there are several; the row's key is also what its "last incident" is filed under.
        rtt = f"round trip {link.rtt * 1000:.2f} ms" if link.rtt is not None else "connected"
        owner = f"{label} ({link.kind}) · " if several else ""
        filed = f"source:{label}" if several else "source"
        parts = link.parts or {"Redis": "" if link.connected else (link.error or "not connected")}
        for part, error in parts.items():
            key = f"{label}:{part.lower()}" if several else part.lower()
            matrix[key] = compact(
                name=f"{owner}{part} (source)",
                status="critical" if error else "ok",
                detail=error or (rtt if part == "Redis" else "connected"),
                since=link.since,
                of=filed,
            )
    matrix.update(
        connector=compact(
            name=f"Connector ({shell.get('source', 'native')})",
            status="ok"
            if health.connected and not health.rejected
            else ("warning" if health.any_connected else "critical"),
            detail=f"{health.events} events, {sum(health.rejected.values())} rejected, {health.gaps} gaps",
            since=health.reconciled,
        ),
        runners={
            "name": "Runners",
            "status": "critical" if not live and state.runners else ("warning" if silent else "ok"),
            "detail": f"{live} live, {silent} silent, {len(state.runners)} known",
        },
        jobpulse=compact(
            name=f"jobpulse process {shell.get('epoch', '')}".strip(),
            status="ok" if not shell.get("crashes") else "warning",
            detail=f"pid {shell.get('pid', '?')}, {shell.get('clients', 0)} clients, {shell.get('rss_mb', '?')} MB",
            since=shell.get("started"),
        ),
    )
    kpi = webhooks_kpi(state)
    if state.notify is not None:
        # Outbound alerts: a component an on-call team depends on (docs/alerts.md).
        matrix["alerts"] = {
            "name": "Alert delivery",
            "status": "critical" if kpi["failing"] and kpi["failing"] == kpi["configured"]
            else ("warning" if kpi["failing"] or kpi["dead"] else "ok"),
            "detail": f"{kpi['configured']} targets, {kpi['failing']} failing; {kpi['detail']}",
        }  # fmt: skip
    # The latest incident of each component since this process started (the matrix's "last incident" column).
    of_row = {"connector": "connector", "runners": "runners"}
    for key, row in matrix.items():
        incident = state.last_incident.get(row.pop("of", None) or of_row.get(key, ""))
        if incident is not None:
            at, severity, title = incident
            row.update(incident_at=at, incident_severity=severity, incident=title)
    return {
        "status": status,
        "rule": rule,
        "incidents": len(state.alerts),
        "process": dict(shell),
        "matrix": {"rows": matrix, "order": list(matrix)},
        "webhooks": kpi,
    }


def webhooks_kpi(state: State) -> View:
    """The Platform Status KPI of outbound alerts: how many targets, how many failing, what waits."""
    n = state.notify
    if n is None:
        return {"configured": 0, "detail": "no alert target is configured (docs/alerts.md)"}
    failing = sum(1 for t in n.targets if target_status(t) == "failing")
    detail = f"{n.waiting + n.retrying} waiting, {n.dead} dead letters"
    return {"configured": len(n.targets), "failing": failing, "waiting": n.waiting + n.retrying, "dead": n.dead,
            "detail": detail}  # fmt: skip


def target_status(target: NotifyTarget) -> str:
    """ok (its last attempt succeeded), failing (its last attempt failed), or idle (nothing sent yet)."""
    if target.last_error_at is not None and (target.last_ok is None or target.last_error_at > target.last_ok):
        return "failing"
    return "ok" if target.last_ok is not None else "idle"


def _target(t: NotifyTarget) -> View:
    return compact(kind=t.kind, shown=t.shown, status=target_status(t), last_ok=t.last_ok,
                   last_error_at=t.last_error_at, last_error=t.last_error or None)  # fmt: skip


def _line(line: NotifyLine) -> View:
    return compact(at=line.at, target=line.target, id=line.id, kind=line.kind, alert=line.alert,
                   outcome=line.outcome, severity=line.severity or None, title=line.title or None,
                   error=line.error or None, attempt=line.attempt or None, status=line.status or None,
                   ms=line.ms or None)  # fmt: skip


def notifications(state: State, limits: ViewLimits) -> View:
    """The Notifications page: the alert targets and their state, the shared outbox, the delivery log (newest
    first), dead letters, silences and the alerts firing (docs/protocol.md 3.11)."""
    n = state.notify
    if n is None:
        return {"configured": False}
    targets = {
        t.name: compact(
            kind=t.kind,
            shown=t.shown,
            status=target_status(t),
            last_ok=t.last_ok,
            last_error_at=t.last_error_at,
            last_error=t.last_error or None,
            backlog=t.backlog,
        )
        for t in n.targets
    }
    log = {f"{x.at:.3f}:{x.target}:{x.id}:{x.attempt}:{x.outcome}": _line(x) for x in n.log}
    dead = {f"{x.at:.3f}:{x.target}:{x.id}": _line(x) for x in n.dead_letters}
    silences = {x.what: compact(until=x.until, by=x.by, reason=x.reason or None) for x in n.silences}
    firing = {
        a.id: compact(fired_at=a.fired_at, sent=a.sent, acked_by=a.acked_by or None, acked_at=a.acked_at or None)
        for a in n.firing
    }
    return {
        "configured": True,
        "at": n.at,
        "targets": {"rows": targets, "order": list(targets)},
        "backlog": {"waiting": n.waiting, "retrying": n.retrying, "dead": n.dead},
        "log": {"rows": log, "order": list(log)},
        "dead": {"rows": dead, "order": list(dead)},
        "silences": {"rows": silences, "order": list(silences)},
        "firing": {"rows": firing, "order": list(firing)},
    }


def alert_log(state: State, limits: ViewLimits) -> View:
    """The alert timeline: alerts raised, escalated, eased and cleared; newest first. With an alert target
    configured, the newest entry of each alert still open says so (`open`), with what the notifier says of it,
    so the page offers Acknowledge and Silence there too."""
    rows = {}
    marked: set[str] = set()
    for seq, at, alert_id, what, severity, title in islice(state.alert_log, limits.event_rows * 2):
        row: View = {"at": at, "id": alert_id, "what": what, "severity": severity, "title": title}
        alert = state.alerts.get(alert_id)
        if state.notify is not None and alert is not None and alert_id not in marked:
            marked.add(alert_id)
            row.update(open=True, **alert_marks(state, alert_id, alert.rule))
        rows[str(seq)] = row
    return {"rows": rows, "order": list(rows)}


QUIET_ACTIONS = frozenset({"runner.ping", "runner.logs"})  # they change nothing: no one else needs telling
NOTICES = 5


def notices(state: State, limits: ViewLimits) -> View:
    """The newest commands that were executed and changed something, newest first: every page subscribes, and
    toasts each new one by another operator, whichever jobpulse process they used (the audit feed is shared)."""
    rows = {}
    for e in state.activity:
        if e.ok and e.result == "done" and e.action not in QUIET_ACTIONS:
            rows[e.id] = {"ts": e.at, "user": e.user, "action": e.action, "target": e.target, "message": e.message}
            if len(rows) == NOTICES:
                break
    return {"rows": rows, "order": list(rows)}


def activity(state: State, limits: ViewLimits) -> View:
    """The newest audit entries (operator commands, done or refused), newest first."""
    rows = {
        # A refused command has no count: compact leaves the key out (a merge patch cannot carry a null).
        e.id: compact(
            ts=e.at,
            user=e.user,
            role=e.role,
            action=e.action,
            target=e.target,
            ok=e.ok,
            result=e.result,
            count=e.count,
            message=e.message,
            error=e.error,
            source=e.source or None,
        )
        for e in state.activity
    }
    return {"rows": rows, "order": list(rows)}
