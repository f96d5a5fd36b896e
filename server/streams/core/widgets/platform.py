"""Platform Status widgets: jobpulse's own numbers, the service matrix, and the alert timeline.

Pure layer: standard library only. Shapes are documented in docs/protocol.md section 3.11.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from server.streams.core import rules
from server.streams.core.state import State
from server.streams.core.widgets.common import View, ViewLimits, compact

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
        # Outbound notifications (webhooks, chat, paging, mail) are not part of this version: said plainly.
        "webhooks": {"configured": 0, "detail": "outbound alerts are not available in this version of jobpulse"},
    }


def alert_log(state: State, limits: ViewLimits) -> View:
    """The alert timeline: alerts raised, escalated, eased and cleared; newest first."""
    rows = {}
    for seq, at, alert_id, what, severity, title in islice(state.alert_log, limits.event_rows * 2):
        rows[str(seq)] = {"at": at, "id": alert_id, "what": what, "severity": severity, "title": title}
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
