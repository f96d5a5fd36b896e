"""The composition root: `create_app(settings) -> ASGI app`, its routes and its lifespan.

The only module that imports every layer. The lifespan starts the aggregator
(restore, connector, clock, persistence) and the hub, and stops them in the
reverse order. `create_app()` with no argument reads Settings from the
environment (uvicorn --factory).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aredis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from server import logs
from server.audit import AuditLog, LiveFeed
from server.auth import Directory
from server.commander import Commander
from server.failure_groups import GroupActions
from server.handlers import api, login, pages, ws
from server.latency import LatencyRing, timed_http
from server.metrics import registry_for
from server.notify.service import Notifier
from server.redact import redact
from server.security import PRINCIPAL, Gate, Principals, apply_forwarded
from server.sessions import Sessions, shared_secret
from server.settings import Settings
from server.streams.aggregator import Aggregator
from server.streams.core.events import AuditNoted, NotifyStatus
from server.streams.core.state import State
from server.streams.core.widgets import WIDGETS, ViewLimits, Widget, resolve
from server.streams.hub import Hub
from server.streams.hubcore import HubLimits
from server.tasks import cancel_and_wait

log = logging.getLogger("jobpulse")


class Edge:
    """Outermost ASGI layer: `/ws` straight to its handler, everything else through Starlette.

    The live socket is the connect hot path (a wall of pages comes back at once after a drop), and nothing in the
    Starlette stack does anything for it: the error page and gzip are HTTP-only, the router would pick the one
    route. So the upgrade is resolved to its principal here, as `Gate` does for every other request, and handed to
    `ws.live_ws` directly, which saves a tenth of a connect's CPU. The server's own `send` is kept in the scope
    for the hub (handlers/ws.py, StarlettePeer): Starlette would wrap it.
    """

    def __init__(self, app: Starlette, principals: Principals, http_latency: LatencyRing) -> None:
        self.app = app
        self.principals = principals
        self.http_latency = http_latency  # every HTTP answer's time, for the status page's API latency

    @property
    def state(self) -> object:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            apply_forwarded(scope, self.principals.directory)
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            scope["app"] = self.app
            scope[PRINCIPAL] = await self.principals.resolve(scope)
            scope[ws.RAW_SEND] = send
            try:
                await ws.live_ws(WebSocket(scope, receive, send))
            finally:
                # The scope belongs to the protocol object that `send` is bound to: a cycle, left to the collector.
                del scope[ws.RAW_SEND]
            return
        if scope["type"] == "http":
            await timed_http(self.app, self.http_latency, scope, receive, send)
            return
        await self.app(scope, receive, send)


def _projector(widget: Widget, state: State, limits: ViewLimits) -> Callable[[], dict[str, Any]]:
    return lambda: widget.project(state, limits)


def freeze_startup() -> None:
    """Move everything made so far out of the collector's reach.

    It lives as long as the process; left in, it makes each full collection stall the loop for tens of
    milliseconds once the state is large.
    """
    gc.collect()
    gc.freeze()


def build_hub(settings: Settings, aggregator: Aggregator) -> Hub:
    """The hub of the dashboard's widgets over the aggregator's state, wired to receive its changes."""
    view_limits = settings.view_limits()
    hub = Hub(
        [(w.name, w.aspects, _projector(w, aggregator.state, view_limits)) for w in WIDGETS],
        HubLimits(
            tick=settings.tick_ms / 1000,
            tick_max=settings.tick_max_ms / 1000,
            beat=settings.beat_s,
            patch_ring=settings.patch_ring,
            client_queue=settings.client_queue,
            client_queue_bytes=settings.client_queue_bytes,
            stall_timeout=settings.stall_timeout_s,
            max_views=settings.max_views,
            view_ttl=settings.view_ttl_s,
        ),
        epoch=secrets.token_hex(4),
        push_latency=LatencyRing(settings.latency_samples),
        resolver=functools.partial(
            resolve, state=aggregator.state, limits=view_limits, query_interval=settings.query_refresh_ms / 1000
        ),
    )
    aggregator.hub = hub
    return hub


def create_app(settings: Settings | None = None) -> ASGIApp:
    """Build the jobpulse ASGI application."""
    settings = settings or Settings.from_env()
    # Also when a bare uvicorn (the Procfile) runs us.
    logs.setup(settings.log_level, settings.log_format, settings.access_log)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        aggregator = Aggregator(settings)
        hub = build_hub(settings, aggregator)
        aggregator.http_latency = app.state.http_latency
        app.state.settings = settings
        app.state.aggregator = aggregator
        app.state.hub = hub
        app.state.counters = Counter()
        app.state.directory = directory
        store = aggregator.store_client
        secret = await shared_secret(store, settings.prefix, settings.secret)
        app.state.sessions = Sessions(
            store,
            settings.prefix,
            secret,
            settings.session_idle_s,
            settings.session_max_s,
            settings.login_failures,
            grace_s=settings.session_grace_s,
            remember=settings.session_cache,
            login_client=aredis.Redis.from_url(
                settings.store, socket_timeout=5.0, socket_connect_timeout=5.0,
                max_connections=settings.logins_in_flight + 2,
            ),
        )  # fmt: skip
        app.state.hashing = login.Hashing(settings.logins_in_flight)
        app.state.audit = AuditLog(store, settings.prefix, settings.audit_retention_days)

        def fold(entry: AuditNoted) -> None:
            aggregator.feed(entry, aggregator.clock())
            aggregator.chunk_end()

        live_audit = LiveFeed(store, settings.prefix, hub.epoch, fold)

        def notify_view(view: NotifyStatus) -> None:
            aggregator.feed(view, aggregator.clock())
            aggregator.chunk_end()

        notifier = app.state.notifier = Notifier(
            settings, store, aggregator.state, lambda: aggregator.ready, sink=notify_view
        )
        app.state.commander = Commander(
            settings, aggregator.state, aggregator.connectors, store, app.state.audit, secret, live_audit.note,
            app.state.sessions.alive, local={**notifier.actions(), **GroupActions(aggregator).actions()},
            local_unavailable="no alert target is configured (JOBPULSE_ALERT_WEBHOOKS, JOBPULSE_ALERTMANAGER_URL; "
            "docs/alerts.md)",
        )  # fmt: skip
        audit_task = asyncio.create_task(live_audit.run(), name="audit-feed")
        ended_task = asyncio.create_task(app.state.sessions.listen(), name="sessions-ended")
        app.state.metrics_registry = registry_for(app.state)
        hub.start()
        await aggregator.start()
        notifier.start()
        freeze_startup()
        log.info(
            "jobpulse %s: source %s at %s, prefix %r",
            hub.epoch,
            aggregator.source_name,
            redact(settings.redis_url),
            settings.prefix,
        )
        try:
            yield
        finally:
            await cancel_and_wait([audit_task, ended_task])
            await notifier.stop()
            await hub.stop()
            await aggregator.stop()
            app.state.hashing.close()
            await app.state.sessions.login_client.aclose()

    routes = [
        Route("/", pages.home_page, name="home_page"),
        Route("/admin/jobs", pages.dashboard_page, name="dashboard_page"),
        Route("/admin/jobs/overview", pages.overview_page, name="overview_page"),
        Route("/admin/jobs/notifications", pages.notifications_page, name="notifications_page"),
        Route("/admin/jobs/runners", pages.runners_page, name="runners_page"),
        Route("/admin/jobs/functions", pages.functions_page, name="functions_page"),
        Route("/admin/jobs/failures", pages.failures_page, name="failures_page"),
        Route("/admin/jobs/manage", pages.manage_page, name="manage_page"),
        Route("/admin/jobs/table", pages.table_page, name="table_page"),
        Route("/admin/jobs/logs", pages.logs_page, name="logs_page"),
        Route("/admin/system-status", pages.status_page, name="status_page"),
        Route("/admin/jobs/audit", pages.audit_page, name="audit_page"),
        Route("/docs/{name}", pages.docs_page, name="docs_page"),
        Route("/login", login.login_page, name="login_page", methods=["GET"]),
        Route("/login", login.login_submit, name="login_submit", methods=["POST"]),
        Route("/logout", login.logout, name="logout", methods=["POST"]),
        Route("/api/audit", login.audit_api, name="audit_api"),
        Route("/api/audit.csv", login.audit_csv, name="audit_csv"),
        Route("/wall", pages.wall_page, name="wall_page"),
        Route("/api/job/health", api.job_health_api, name="job_health_api"),
        Route("/api/widgets/{name}", api.widget_api, name="widget_api"),
        Route("/api/jobs/health", api.health_api, name="health_api"),
        Route("/api/functions", api.functions_api, name="functions_api"),
        Route("/api/failure-groups", api.failure_groups_api, name="failure_groups_api"),
        Route("/api/functions/{name:path}", api.function_api, name="function_api"),
        Route("/api/stats", api.stats_api, name="stats_api"),
        Route("/metrics", api.metrics, name="metrics"),
        Route("/healthz", api.healthz, name="healthz"),
        Route("/readyz", api.readyz, name="readyz"),
        Mount("/static", StaticFiles(directory=str(pages.WEB_DIR)), name="static"),
    ]
    # Pages, scripts and JSON compress well (the vendored chart library from 145 KB to about 50 KB).
    directory = Directory.parse(settings.users, settings.tokens, settings.proxy_roles, settings.trusted_proxies)
    if settings.auth == "users" and not directory.users and not directory.tokens:
        log.warning("JOBPULSE_AUTH=users but no JOBPULSE_USERS or JOBPULSE_TOKENS: nobody can sign in")
    principals = Principals(settings.auth, directory, settings.proxy_user_header)
    middleware = [Middleware(GZipMiddleware, minimum_size=1024), Middleware(Gate, principals=principals)]
    starlette = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    starlette.state.http_latency = LatencyRing(settings.latency_samples)
    return Edge(starlette, principals, starlette.state.http_latency)
