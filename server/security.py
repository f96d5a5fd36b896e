"""The gate in front of every route: who is asking (session, token, wall link, proxy, dev), and security headers.

Shell layer (pure ASGI middleware). Resolves the principal of each HTTP request
and websocket upgrade into `scope["jobpulse.principal"]`; sends a page request
without one to /login and an API request a 401; leaves the websocket's refusal
(close 4401 / 4403) to its handler, which a browser can see. Adds the headers
that keep pages from being framed or from running injected script.
docs/protocol.md section 5.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import DEV, Directory, Principal
from server.sessions import Sessions
from server.settings import loopback

PRINCIPAL = "jobpulse.principal"
SESSION_COOKIE = "jp_session"
CSRF_COOKIE = "jp_csrf"
STORE_WAIT_S = 2.0  # a stalled store must not hang every request: past this, `Sessions.recall` answers
OPEN_PATHS = ("/login", "/static/", "/healthz", "/readyz", "/favicon.ico")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is no cookie, not an error page
                continue
            out.update({key: morsel.value for key, morsel in jar.items()})
    return out


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def own_origin(scope: Scope) -> str:
    """This request's own origin, scheme://host[:port], as a browser on this site would send it."""
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    host = header(scope, b"host") or ""
    return f"{scheme}://{host}".lower()


DEV_ELSEWHERE = (
    b"jobpulse runs without sign-in (JOBPULSE_AUTH=dev), which it serves only to this machine: open it as "
    b"localhost, 127.0.0.1 or [::1], or configure users (JOBPULSE_AUTH=users) to serve other hosts\n"
)


PEER = "jobpulse.peer"  # the scope key of the connection's own peer address, before X-Forwarded-For


def apply_forwarded(scope: Scope, directory: Directory) -> None:
    """Keep the connection's peer in `scope[PEER]`; when that peer is a trusted proxy, take the client address from
    X-Forwarded-For (its last address not itself a trusted proxy) and the scheme from X-Forwarded-Proto.

    uvicorn's own proxy headers decide nothing here (jobpulse runs it without them): trust is a property of the
    peer that connected, never of what a header says (`X-Forwarded-For: 127.0.0.1` from anywhere made a
    request look local, and a normal proxy's header made its requests look untrusted).
    """
    client = scope.get("client")
    peer = client[0] if client else None
    scope[PEER] = peer
    if not directory.trusts(peer):
        return
    chain = [a.strip() for h in headers_named(scope, b"x-forwarded-for") for a in h.split(",") if a.strip()]
    while chain and directory.trusts(chain[-1]):
        chain.pop()  # proxies in front of proxies
    if chain:
        scope["client"] = (chain[-1][:100], 0)
    proto = (header(scope, b"x-forwarded-proto") or "").strip().lower()
    if proto in ("http", "https"):
        scope["scheme"] = {"http": "ws", "https": "wss"}[proto] if scope["type"] == "websocket" else proto


def headers_named(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


def loopback_request(scope: Scope) -> bool:
    """Whether the request names this machine's loopback in its Host, and in its Origin when it has one."""
    host = urlsplit("//" + (header(scope, b"host") or "")).hostname
    if not host or not loopback(host):
        return False
    origin = header(scope, b"origin")
    if origin is None:
        return True
    origin_host = urlsplit(origin).hostname
    return bool(origin_host) and loopback(origin_host or "")


def origin_allowed(scope: Scope, allowed: tuple[str, ...]) -> bool:
    """True when the request has no Origin (not a browser) or one of this site / the allowed list."""
    origin = header(scope, b"origin")
    if origin is None:
        return True
    origin = origin.lower().rstrip("/")
    if origin == own_origin(scope):
        return True
    # Behind a TLS-terminating proxy the scheme we see is http; the host must still be ours.
    if urlsplit(origin).netloc == (header(scope, b"host") or "").lower() and scope.get("scheme") in ("http", "ws"):
        forwarded = (header(scope, b"x-forwarded-proto") or "").lower()
        if forwarded in ("https", "wss") and origin.startswith("https://"):
            return True
    return origin in allowed


class Gate:
    """The sign-in redirect and security headers, with the principal of every request put in its scope."""

    def __init__(self, app: ASGIApp, principals: Principals) -> None:
        self.app = app
        self.principals = principals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        open_path = path.startswith(OPEN_PATHS)
        principal = None if open_path and scope["type"] == "http" else await self.principals.resolve(scope)
        scope[PRINCIPAL] = principal
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if principal is None and not open_path:
            await self._refuse(scope, send, path)
            return

        extra = list(HEADERS)
        if not path.startswith("/static/"):
            # Pages, the API and the audit export hold what a user may see: no shared or disk cache keeps them.
            extra.append((b"cache-control", b"no-store"))
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, send: Send, path: str) -> None:
        if self.principals.mode == "dev":
            await _respond(send, 403, [(b"content-type", b"text/plain")], DEV_ELSEWHERE)
            return
        if path.startswith("/api/") or path == "/metrics":
            body = b'{"error":"unauthorized","message":"sign in, or send Authorization: Bearer <token>"}'
            headers = [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="jobpulse"')]
            await _respond(send, 401, headers, body)
            return
        if self.principals.mode == "proxy":
            await _respond(send, 403, [(b"content-type", b"text/plain")], b"not signed in by the trusted proxy\n")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        location = "/login?next=" + quote(target, safe="")
        await _respond(send, 303, [(b"location", location.encode())], b"")


class Principals:
    """Who a request or websocket upgrade is: by the auth mode, a bearer or viewer token, or a session cookie."""

    def __init__(self, mode: str, directory: Directory, proxy_header: str) -> None:
        self.mode = mode
        self.directory = directory
        self.proxy_header = proxy_header.lower().encode()

    async def resolve(self, scope: Scope) -> Principal | None:
        """The principal of a request or upgrade, or None."""
        if self.mode == "dev":
            # No sign-in, everyone admin: only for a browser on this machine. A page on a rebinding domain
            # (evil.example resolving to 127.0.0.1) carries its own name in Host and Origin.
            return DEV if loopback_request(scope) else None
        if self.mode == "proxy":
            if not self.directory.trusts(scope.get(PEER)):  # the peer that connected, not a forwarded address
                return None
            sent = headers_named(scope, self.proxy_header)
            if len(sent) != 1:  # none, or two that could disagree (one from the client, one from the proxy)
                return None
            user = sent[0]
            if not user or len(user) > 200:
                return None
            role = self.directory.role_of_proxy_user(user.strip())
            return Principal(user.strip(), role, "proxy") if role else None
        authorization = header(scope, b"authorization")
        if authorization and authorization[:7].lower() == "bearer ":
            return self.directory.check_token(authorization[7:].strip())
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query and scope.get("path") in ("/wall", "/ws"):
            # The wall's read-only link: only a viewer token may travel in a URL (docs/protocol.md 5.2).
            found = self.directory.check_token(query["token"][0])
            if found is not None and found.role == "viewer":
                return Principal(found.name, "viewer", "wall")
            return None
        session = cookies(scope).get(SESSION_COOKIE)
        # The app's lifespan makes the session store once the store's secret is known.
        sessions: Sessions | None = getattr(scope["app"].state, "sessions", None) if "app" in scope else None
        if session and sessions is not None:
            try:
                async with asyncio.timeout(STORE_WAIT_S):
                    return await sessions.resolve(session)
            except (OSError, RedisError, TimeoutError):
                # The store is down or stalled: a session this process checked lately still counts.
                return sessions.recall(session)
        return None


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *HEADERS]})
    await send({"type": "http.response.body", "body": body})


def principal_of(scope: Mapping[str, Any]) -> Principal | None:
    found = scope.get(PRINCIPAL)
    return found if isinstance(found, Principal) else None
