"""HTML pages, rendered with Jinja2 from web/templates; the live data arrives over /ws.

Shell layer (Starlette). Pages carry no data and no inline script: the
template names the widgets and the socket URL in data- attributes, and the
ES modules in web/js do the rest.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))


async def home_page(request: Request) -> Response:
    return RedirectResponse(request.url_for("dashboard_page"), status_code=307)


async def dashboard_page(request: Request) -> Response:
    """The Compact Jobs Dashboard (mockup section A)."""
    settings = request.app.state.settings
    context = {
        "title": "Jobs Dashboard",
        "source": request.app.state.aggregator.connector.name,
        "prefix": settings.prefix,
        "widgets": list(request.app.state.hub.feeds),
    }
    return templates.TemplateResponse(request, "dashboard.html", context)
