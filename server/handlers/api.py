"""JSON endpoints: widget snapshots, job service health, liveness and readiness.

Shell layer (Starlette). Read-only views of the hub and the aggregator; the
same data the websocket pushes, for scripts, load balancers and monitors.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server import __version__
from server.streams.core import functions
from server.streams.core.events import MAX_TIME
from server.streams.core.widgets import functions as function_widgets, overview


async def widget_api(request: Request) -> Response:
    """GET /api/widgets/{name}: the widget's current seq and data."""
    hub = request.app.state.hub
    name = request.path_params["name"]
    if name not in hub.feeds:
        return JSONResponse({"error": f"unknown widget {name!r}", "widgets": list(hub.feeds)}, status_code=404)
    seq, data = hub.view(name)
    return JSONResponse({"widget": name, "epoch": hub.epoch, "seq": seq, "data": data})


async def functions_api(request: Request) -> Response:
    """GET /api/functions: every function's and channel's numbers over the rolling window (the `functions` widget)."""
    _, data = request.app.state.hub.view("functions")
    return JSONResponse(data)


async def failure_groups_api(request: Request) -> Response:
    """GET /api/failure-groups: failures grouped by cause, the groups seen most lately first (the widget's data)."""
    _, data = request.app.state.hub.view("failure_groups")
    return JSONResponse(data)


_RES = {"minute": ("m", 60), "hour": ("h", 3600)}


async def function_api(request: Request) -> Response:
    """GET /api/functions/{name}?res=minute|hour&since=&until=&kind=fn|channel: one function's (or channel's) numbers
    per minute or hour over the whole retention the store keeps in Redis (48 h of minutes, 30 days of hours)."""
    name = request.path_params["name"]
    q = request.query_params
    res = q.get("res", "minute")
    kind = q.get("kind", functions.FN)
    if res not in _RES or kind not in (functions.FN, functions.CHANNEL) or not 0 < len(name) <= 300:
        return JSONResponse({"error": "res is minute or hour, kind is fn or channel"}, status_code=400)
    code, step = _RES[res]
    store = request.app.state.aggregator.store
    now = request.app.state.aggregator.state.now
    retention = store.stats_minutes * 60 if res == "minute" else store.stats_hours * 3600
    try:
        since = float(q.get("since", now - retention))
        until = float(q.get("until", now))
    except ValueError:
        return JSONResponse({"error": "since and until are epoch seconds"}, status_code=400)
    if not (0 <= since <= MAX_TIME and 0 <= until <= MAX_TIME):
        return JSONResponse({"error": "since and until are epoch seconds"}, status_code=400)
    cells = await store.read_stat(code, kind, name, int(since // step), int(until // step))
    points = [
        {"t": c.slot * step, **function_widgets.numbers(functions.summary([functions.to_cell(c)]))} for c in cells
    ]
    return JSONResponse({"name": name, "kind": kind, "res": res, "step": step, "points": points})


async def health_api(request: Request) -> Response:
    """GET /api/jobs/health: the job service's health (broker, runners) as the Service Health card shows it."""
    state = request.app.state.aggregator.state
    _, health = request.app.state.hub.view("health")
    _, runners = request.app.state.hub.view("runners")
    body: dict[str, Any] = {
        "source": request.app.state.aggregator.source_name,
        "broker": health,
        "runners": runners["counts"],
        "channels": {
            name: {"queued": c.queued, "inflight": c.inflight, "scheduled": c.scheduled, "paused": c.paused}
            for name, c in sorted(state.channels.items())
        },
    }
    return JSONResponse(body)


async def healthz(request: Request) -> Response:
    """Liveness: the process serves requests."""
    return JSONResponse({"ok": True, "version": __version__})


async def readyz(request: Request) -> Response:
    """Readiness: the source is connected and durable state was restored; 503 otherwise."""
    aggregator = request.app.state.aggregator
    ready = aggregator.ready
    body = {
        "ready": ready,
        "source_connected": aggregator.connected,
        "sources": {label: c.connected for label, c in aggregator.connectors.items()},
        "restored": aggregator.restored,
        "crashes": aggregator.crashes,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def stats_api(request: Request) -> Response:
    """GET /api/stats: jobpulse's own counters (clients, fan-out, intake); Prometheus metrics arrive with issue #6."""
    hub = request.app.state.hub
    aggregator = request.app.state.aggregator
    health = aggregator.state.health
    body = {
        "epoch": hub.epoch,
        "clients": len(hub.clients),
        "hub": dataclasses.asdict(hub.stats),
        "intake": {
            "events": health.events,
            "rejected": dict(health.rejected),
            "dupes": health.dupes,
            "gaps": health.gaps,
            "missed": health.missed,
            "evicted_jobs": health.evicted_jobs,
        },
        "state": {
            "jobs": len(aggregator.state.jobs),
            "runners": len(aggregator.state.runners),
            "channels": len(aggregator.state.channels),
            "series_minutes": len(aggregator.state.series),
        },
        "ws": dict(request.app.state.counters),
        "crashes": aggregator.crashes,
        # asyncio tasks alive in the process (two per client, a few of its own): the soak checks they do not grow.
        "tasks": len(asyncio.all_tasks()),
    }
    return JSONResponse(body)


async def job_health_api(request: Request) -> Response:
    """GET /api/job/health (the mockup's endpoint): overall status, broker, runners, per-channel health, rules fired.

    With several sources, `sources` has each one's status, rule and connection, and `?source=<label>` answers for
    that source alone (its alerts, connection, runners and channels; 404 for a label jobpulse does not watch).
    """
    hub = request.app.state.hub
    state = request.app.state.aggregator.state
    source = request.query_params.get("source", "")
    if source and (not state.limits.several or source not in state.limits.sources):
        known = ", ".join(state.limits.sources) if state.limits.several else "(one source: no label)"
        return JSONResponse({"error": f"unknown source {source[:40]!r}", "sources": known}, status_code=404)
    limits = request.app.state.settings.view_limits()
    if source:
        service = overview.service(state, limits, source)
        hot = overview.hot_issues(state, limits, source)
    else:
        _, service = hub.view("service")
        _, hot = hub.view("hot_issues")
    _, capacity = hub.view("channels")
    issues_by_channel: dict[str, list[str]] = {}
    for alert in hot["rows"].values():
        if alert["key"]:
            issues_by_channel.setdefault(alert["key"], []).append(alert["rule"])
    channels = {
        name: {**row, "status": _channel_status(hot["rows"], name), "rules": issues_by_channel.get(name, [])}
        for name, row in capacity["rows"].items()
        if not source or row.get("source") == source
    }
    body: dict[str, Any] = {
        "status": service["status"],
        "rule": service["rule"],
        "broker": service["broker"],
        "runners": service["runners"],
        "channels": channels,
        "rules_fired": [
            {k: alert[k] for k in ("rule", "key", "severity", "title", "detail", "since")}
            for alert in (hot["rows"][i] for i in hot["order"])
        ],
    }
    if source:
        body["source"] = source
    elif state.limits.several:
        body["sources"] = {}
        for label in state.limits.sources:
            one = overview.service(state, limits, label)
            body["sources"][label] = {"status": one["status"], "rule": one["rule"], "broker": one["broker"]}
    return JSONResponse(body, status_code=200 if service["status"] != "critical" else 503)


def _channel_status(alerts: dict[str, Any], channel: str) -> str:
    severities = {a["severity"] for a in alerts.values() if a["key"] == channel}
    return "critical" if "critical" in severities else ("warning" if severities else "ok")


async def metrics(request: Request) -> Response:
    """Prometheus text format: jobpulse's own health and the fleet's (server/metrics.py)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
