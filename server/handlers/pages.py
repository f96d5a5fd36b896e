"""HTML pages, rendered with Jinja2 from web/templates; the live data arrives over /ws; the documents as text.

Shell layer (Starlette). Pages carry no data and no inline script: the
template names the widgets and the socket URL in data- attributes, and the
ES modules in web/js do the rest.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from server.assets import docs_dir, web_dir
from server.security import principal_of

WEB_DIR = web_dir()
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))


async def home_page(request: Request) -> Response:
    return RedirectResponse(request.url_for("dashboard_page"), status_code=307)


# (page key, path, label, keyboard letter after "g")
NAV = (
    ("dashboard", "/admin/jobs", "Dashboard", "d"),
    ("overview", "/admin/jobs/overview", "Overview", "o"),
    ("runners", "/admin/jobs/runners", "Runners", "r"),
    ("functions", "/admin/jobs/functions", "Functions", "f"),
    ("failures", "/admin/jobs/failures", "Failures", "x"),
    ("manage", "/admin/jobs/manage", "Operations", "m"),
    ("table", "/admin/jobs/table", "Jobs", "j"),
    ("status", "/admin/system-status", "Status", "s"),
    ("logs", "/admin/jobs/logs", "Logs", "l"),
    ("notifications", "/admin/jobs/notifications", "Alerts", "n"),
    ("audit", "/admin/jobs/audit", "Audit", "a"),
    ("wall", "/wall", "Wall", "w"),
)


def _page(request: Request, template: str, title: str, active: str, **extra: object) -> Response:
    from server.handlers.login import csrf_token, set_csrf

    settings = request.app.state.settings
    environment = settings.environment.strip()
    principal = principal_of(request.scope)
    csrf, new_csrf = csrf_token(request)
    context = {
        "user": principal.public() if principal else None,
        "csrf": csrf,
        "dev_mode": settings.auth == "dev",
        # The wall's read-only link authenticates its socket the same way (docs/protocol.md 5.2).
        "ws_path": "/ws?" + urlencode({"token": request.query_params["token"]})
        if principal is not None and principal.auth == "wall"
        else "/ws",
        "title": title,
        "active": active,
        "page_script": active,
        "nav": NAV,
        "source": request.app.state.aggregator.source_name,
        # Several sources: each one's label and kind, for the source filters (none with one source).
        "sources": request.app.state.aggregator.source_list(),
        "prefix": settings.prefix,
        "environment": environment,
        "env_kind": "prod" if environment.lower().startswith("prod") else "other",
        "env_color": settings.env_color,
        **extra,
    }
    response = templates.TemplateResponse(request, template, context)
    if new_csrf:
        set_csrf(response, request, csrf)
    return response


async def functions_page(request: Request) -> Response:
    """Functions: per-function and per-channel runs, failures and percentiles, and one function's chart."""
    return _page(request, "functions.html", "Functions", "functions")


async def failures_page(request: Request) -> Response:
    """Failures: failed jobs grouped by cause; a group's samples, retry and mute."""
    return _page(request, "failures.html", "Failures", "failures")


async def dashboard_page(request: Request) -> Response:
    """The Compact Jobs Dashboard (mockup section A)."""
    return _page(request, "dashboard.html", "Jobs Dashboard", "dashboard")


async def overview_page(request: Request) -> Response:
    """Jobs Overview (mockup section 1)."""
    return _page(request, "overview.html", "Async Jobs Overview", "overview")


async def runners_page(request: Request) -> Response:
    """Runners Console (mockup section 2)."""
    return _page(request, "runners.html", "Runner Fleet", "runners")


async def manage_page(request: Request) -> Response:
    """Job Operations Center (mockup section 3)."""
    return _page(request, "manage.html", "Job Operations Center", "manage")


async def table_page(request: Request) -> Response:
    """The job table (the mockup's "Launch Job Table")."""
    return _page(request, "table.html", "Jobs", "table")


async def status_page(request: Request) -> Response:
    """Platform Status (mockup section 4)."""
    return _page(request, "status.html", "Platform Status", "status")


async def logs_page(request: Request) -> Response:
    """Service logs: jobpulse's own recent warnings and errors, live."""
    return _page(request, "logs.html", "Service Logs", "logs")


async def notifications_page(request: Request) -> Response:
    """Notifications: the alert targets, the delivery log, dead letters, silences and a test notification."""
    return _page(request, "notifications.html", "Notifications", "notifications")


async def wall_page(request: Request) -> Response:
    """The wall display: large, dark, read-only, no controls."""
    return _page(request, "wall.html", "Wall", "wall")


async def audit_page(request: Request) -> Response:
    """The audit log: who did what, when; filters and CSV export."""
    return _page(request, "audit.html", "Audit Log", "audit")


DOCS_DIR = docs_dir()
DOCS = frozenset(p.name for p in DOCS_DIR.glob("*.md")) if DOCS_DIR is not None else frozenset()


async def docs_page(request: Request) -> Response:
    """One of jobpulse's documents (docs/*.md, shipped in the wheel), as text: the pages link to them."""
    name = request.path_params["name"]
    if name not in DOCS or DOCS_DIR is None:
        return PlainTextResponse(f"no document {name!r}; documents: {', '.join(sorted(DOCS))}\n", status_code=404)
    return PlainTextResponse((DOCS_DIR / name).read_text(encoding="utf-8"))
