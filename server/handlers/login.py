"""Sign-in and sign-out (`/login`, `/logout`), and the audit log's page data (`/api/audit`, `/api/audit.csv`).

Shell layer (Starlette). The login form is protected by a double-submit CSRF
token (a random cookie echoed in a hidden field) and an Origin check; failed
attempts are throttled per user name and per address (docs/protocol.md 5.3).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from server.audit import AuditLog, Filters, to_csv
from server.auth import Directory, Principal
from server.handlers.pages import templates
from server.security import CSRF_COOKIE, SESSION_COOKIE, origin_allowed, principal_of
from server.sessions import STORE_ERRORS, Sessions

MAX_FORM = 4096
CSRF_MAX_AGE = 12 * 3600


class Hashing:
    """Password checks off the event loop, at most `limit` at once; `enter()` says no at once past that.

    argon2 takes tens of milliseconds of CPU a check by design: on the loop, 300 sign-ins at once stalled every
    page, socket and the source's subscription for seconds. In its own threads, and bounded, a flood costs a
    few cores' worth of hashing and the excess is refused before it costs anything.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="jobpulse-argon2")

    def enter(self) -> bool:
        if self.busy >= self.limit:
            return False
        self.busy += 1
        return True

    def leave(self) -> None:
        self.busy -= 1

    async def check(self, directory: Directory, name: str, password: str) -> Principal | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, directory.check_password, name, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token and whether it is new (then the response must set the cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(token) <= 100:
        return token, False
    return secrets.token_urlsafe(24), True


def set_csrf(response: Response, request: Request, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, max_age=CSRF_MAX_AGE, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")  # fmt: skip


def safe_next(target: str) -> str:
    """Only a path on this site (never //evil.example or a scheme): an open redirect otherwise."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and len(target) < 2000:
        return target
    return "/"


async def _form(request: Request) -> dict[str, str] | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in parsed.items()}


def _csrf_ok(request: Request, form: dict[str, str]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode()) and origin_allowed(request.scope, ())


def _login_page(request: Request, error: str = "", status: int = 200, next_: str = "/", user: str = "") -> Response:
    token, new = csrf_token(request)
    context = {"title": "Sign in", "csrf": token, "next": next_, "error": error, "username": user, "user": None,
               "dev_mode": False, "environment": request.app.state.settings.environment.strip()}  # fmt: skip
    response = templates.TemplateResponse(request, "login.html", context, status_code=status)
    if new:
        set_csrf(response, request, token)
    return response


async def login_page(request: Request) -> Response:
    settings = request.app.state.settings
    if settings.auth != "users":
        return RedirectResponse("/", status_code=303)
    return _login_page(request, next_=safe_next(request.query_params.get("next", "/")))


async def login_submit(request: Request) -> Response:
    settings = request.app.state.settings
    if settings.auth != "users":
        return RedirectResponse("/", status_code=303)
    form = await _form(request)
    if form is None:
        return _login_page(request, "That form could not be read.", 400)
    next_ = safe_next(form.get("next", "/"))
    name = form.get("username", "").strip()[:200]
    if not _csrf_ok(request, form):
        request.app.state.counters["login_csrf"] += 1
        return _login_page(request, "The form expired or came from another site; please sign in again.", 403, next_)
    sessions: Sessions = request.app.state.sessions
    hashing: Hashing = request.app.state.hashing
    counters = request.app.state.counters
    address = request.client.host if request.client else ""
    if not hashing.enter():
        counters["login_busy"] += 1
        response = _login_page(request, "Too many sign-ins at once; try again in a moment.", 429, next_, name)
        response.headers["retry-after"] = "1"
        return response
    try:
        wait = await sessions.reserve(name, address)
        if wait:
            counters["login_throttled"] += 1
            response = _login_page(request, f"Too many failed sign-ins; try again in {wait // 60 + 1} min.", 429, next_)
            response.headers["retry-after"] = str(wait)
            return response
        principal = await hashing.check(request.app.state.directory, name, form.get("password", ""))
        if principal is None:
            counters["login_failed"] += 1
            return _login_page(request, "Unknown user name or wrong password.", 401, next_, name)
        await sessions.succeeded(name, address)
        cookie = await sessions.create(principal, address)
    except STORE_ERRORS:
        counters["login_store_down"] += 1
        return _login_page(request, "Sign-in is unavailable while the session store is unreachable.", 503, next_)
    finally:
        hashing.leave()
    response = RedirectResponse(next_, status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(settings.session_max_s), httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")  # fmt: skip
    # A fresh CSRF token for the signed-in pages (a token known before sign-in is not reused after).
    set_csrf(response, request, secrets.token_urlsafe(24))
    return response


async def logout(request: Request) -> Response:
    form = await _form(request) or {}
    if not _csrf_ok(request, form):
        return Response("sign-out refused: the form expired or came from another site\n", 403,
                        media_type="text/plain")  # fmt: skip
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await request.app.state.sessions.end(cookie)
    settings = request.app.state.settings
    response = RedirectResponse("/login" if settings.auth == "users" else "/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- the audit log ----------------------------------------------------------------------------------


def _filters(request: Request) -> Filters:
    q = request.query_params

    def number(name: str) -> float | None:
        try:
            return float(q[name]) if q.get(name) else None
        except ValueError:
            return None

    ok = {"true": True, "1": True, "false": False, "0": False}.get(q.get("ok", "").lower())
    user, action, source = q.get("user", "")[:200], q.get("action", "")[:64], q.get("source", "")[:16]
    return Filters(user, action, ok, number("since"), number("until"), source)


def _may_read_audit(request: Request) -> bool:
    principal = principal_of(request.scope)
    # Everyone signed in may read it: operators act in the open. A wall link may not.
    return principal is not None and principal.auth != "wall"


async def audit_api(request: Request) -> Response:
    if not _may_read_audit(request):
        return JSONResponse({"error": "forbidden", "message": "the wall link cannot read the audit log"}, 403)
    audit: AuditLog = request.app.state.audit
    try:
        limit = max(1, min(500, int(request.query_params.get("limit", "100"))))
    except ValueError:
        limit = 100
    before = request.query_params.get("before") or None
    if before is not None and not _is_stream_id(before):
        return JSONResponse({"error": "bad_request", "message": "before: not an audit entry id"}, 400)
    entries, next_id = await audit.page(_filters(request), before, limit)
    settings = request.app.state.settings
    return JSONResponse({"entries": entries, "next": next_id, "retention_days": settings.audit_retention_days})


async def audit_csv(request: Request) -> Response:
    if not _may_read_audit(request):
        return Response("forbidden\n", 403, media_type="text/plain")
    audit: AuditLog = request.app.state.audit
    filters = _filters(request)
    entries: list[dict[str, object]] = []
    before: str | None = None
    while len(entries) < 100_000:
        page, before = await audit.page(filters, before, 500)
        entries.extend(page)
        if before is None:
            break
    return Response(
        to_csv(entries),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="jobpulse-audit.csv"'},
    )


def _is_stream_id(text: str) -> bool:
    ms, _, seq = text.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(text) < 40
