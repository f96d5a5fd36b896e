"""Sign-in for real: the login form with its CSRF token, sessions in Redis, throttling, sign-out and revocation
closing open sockets, API tokens, the wall's read-only link, and the pages' security headers."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
import websockets

from bench.login_burst import burst, request as raw_request
from tests.conftest import TEST_TOKENS, LiveServer, bearer, users_env
from tests.faultproxy import FaultProxy
from tests.integration.helpers import LiveClient

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    env = users_env(JOBPULSE_SESSION_CHECK_S="0.5", JOBPULSE_LOGIN_FAILURES="3")
    env["JOBPULSE_TOKENS"] += " " + _wall_entry()
    live = LiveServer(redis_url, prefix, env=env).start()
    yield live
    output = live.finish()
    assert "Traceback" not in output, output


WALL: dict[str, str] = {}


def _wall_entry() -> str:
    from server.auth import make_token

    if not WALL:
        WALL["token"], digest = make_token()
        WALL["entry"] = f"lobby-wall:viewer:{digest}"
    return WALL["entry"]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect())
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def test_pages_and_api_need_a_user(server: LiveServer) -> None:
    status, headers, _ = get(server.url + "/admin/jobs/runners?status=stale")
    assert status == 303 and headers["location"] == "/login?next=%2Fadmin%2Fjobs%2Frunners%3Fstatus%3Dstale"
    status, headers, body = get(server.url + "/api/widgets/counters")
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    assert get(server.url + "/healthz")[0] == 200
    status, headers, body = get(server.url + "/login")
    assert status == 200 and b'name="csrf"' in body
    # Every page carries the security headers: no framing, no inline script.
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    # A token works for the API; a wrong one does not.
    assert get(server.url + "/api/widgets/counters", bearer("vera"))[0] == 200
    # What a user may see is never kept by a cache: pages, the API, the audit export; static files may be.
    for path in ("/admin/jobs", "/api/widgets/counters", "/api/audit.csv", "/api/stats"):
        status, headers, _ = get(server.url + path, bearer("ada"))
        assert status == 200 and headers.get("cache-control") == "no-store", (path, headers)
    assert get(server.url + "/login")[1].get("cache-control") == "no-store"
    assert "strict-transport-security" not in headers  # plain http here: HSTS only over https
    status, headers, _ = get(server.url + "/static/css/app.css")
    assert status == 200 and headers.get("cache-control") != "no-store"
    assert get(server.url + "/api/widgets/counters", {"Authorization": "Bearer jpt_wrong"})[0] == 401


def test_login_csrf_throttle_and_session(server: LiveServer) -> None:
    status, cookies = server.sign_in("oscar")
    assert status == 303 and "jp_session" in cookies
    page = get(server.url + "/admin/jobs", {"Cookie": f"jp_session={cookies['jp_session']}"})
    assert page[0] == 200 and b"oscar" in page[2]
    # A forged cookie is nobody.
    assert get(server.url + "/admin/jobs", {"Cookie": "jp_session=abc.def"})[0] == 303
    # Without the CSRF field, or from another site: refused.
    body = urllib.parse.urlencode({"username": "oscar", "password": "oscar-pass-1", "csrf": "x" * 30}).encode()
    request = urllib.request.Request(server.url + "/login", data=body, headers={"Cookie": "jp_csrf=" + "y" * 30})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    refused.value.close()
    assert refused.value.code == 403
    # Wrong passwords: 401, and after JOBPULSE_LOGIN_FAILURES (3) the user is throttled, even with the right one.
    assert [server.sign_in("ada", "wrong-password")[0] for _ in range(3)] == [401, 401, 401]
    assert server.sign_in("ada")[0] == 429
    assert server.sign_in("vera")[0] == 429  # the same client address is throttled too


def sign_out(server: LiveServer, cookies: dict[str, str]) -> int:
    """POST /logout through the form (CSRF field and cookie); the status."""
    header = {"Cookie": f"jp_session={cookies['jp_session']}; jp_csrf={cookies['jp_csrf']}", "Origin": server.url}
    body = urllib.parse.urlencode({"csrf": cookies["jp_csrf"]}).encode()
    request = urllib.request.Request(server.url + "/logout", data=body, headers=header)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect()).open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


async def test_sign_out_and_revoke_close_open_sockets(server: LiveServer) -> None:
    _, cookies = server.sign_in("oscar")
    header = {"Cookie": f"jp_session={cookies['jp_session']}; jp_csrf={cookies['jp_csrf']}"}
    client = await LiveClient.connect(server.ws_url, ["counters"], headers=header)
    assert client.welcome["user"] == {"name": "oscar", "role": "operator", "auth": "session"}
    assert await asyncio.to_thread(sign_out, server, cookies) == 303
    async with asyncio.timeout(5):
        await client.ws.wait_closed()
    assert client.ws.close_code == 4401
    assert get(server.url + "/admin/jobs", header)[0] == 303

    # `jobpulse sessions revoke` ends every session of a user, on every process.
    _, first = server.sign_in("vera")
    _, second = server.sign_in("vera")
    sockets = [
        await LiveClient.connect(server.ws_url, ["counters"], headers={"Cookie": f"jp_session={c['jp_session']}"})
        for c in (first, second)
    ]
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server.cli", "sessions", "revoke", "vera"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and "ended 2 session(s) of vera" in result.stdout, result.stderr
    for socket in sockets:
        async with asyncio.timeout(5):
            await socket.ws.wait_closed()
        assert socket.ws.close_code == 4401


async def test_wall_link_is_read_only(server: LiveServer) -> None:
    token = WALL["token"]
    assert get(f"{server.url}/wall?token={token}")[0] == 200
    assert get(f"{server.url}/wall")[0] == 303
    # Only a viewer token may travel in a URL, and only for the wall.
    assert get(f"{server.url}/wall?token={TEST_TOKENS['ada']}")[0] == 303
    assert get(f"{server.url}/admin/jobs?token={token}")[0] == 303
    # The wall link sees what the wall shows: not who did what (activity, notices); the others in a list are served.
    client = await LiveClient.connect(f"{server.ws_url}?token={token}", ["counters", "activity", "notices", "health"])
    operator = await LiveClient.connect(server.ws_url, ["activity"], headers=bearer("oscar"))
    try:
        assert client.welcome["user"] == {"name": "lobby-wall", "role": "viewer", "auth": "wall"}
        await client.wait_for(lambda c: {"counters", "health"} <= set(c.data) and len(c.errors) == 2, 10)
        assert sorted(e["ref"] for e in client.errors) == ["activity", "notices"]
        assert {e["code"] for e in client.errors} == {"forbidden"} and "activity" not in client.data
        ack = await client.command("channel.purge", {"channel": "email"}, phase="preview")
        assert ack["error"]["code"] == "forbidden"
        # A refused command with an action jobpulse does not have: audited under a fixed label, not its text.
        ack = await client.command("<img src=x> pwned", {"note": "call qzxv-marker"})
        assert ack["error"]["code"] == "unknown_action"
        await operator.wait_for(lambda c: any(r["result"] == "unknown_action"
                                              for r in c.data["activity"]["rows"].values()), 10)  # fmt: skip
        row = next(r for r in operator.data["activity"]["rows"].values() if r["result"] == "unknown_action")
        assert row["action"] == "(unknown action)" and "pwned" not in json.dumps(row) and "qzxv" not in json.dumps(row)
        status, _, body = get(f"{server.url}/api/audit?ok=false", bearer("ada"))
        assert status == 200 and "pwned" not in body.decode() and "qzxv" not in body.decode()
    finally:
        await client.close()
        await operator.close()
    with _closes_with(4401):
        bad = await LiveClient.connect(f"{server.ws_url}?token={TEST_TOKENS['ada']}", ["counters"])
        await bad.ws.recv()


class _closes_with:
    """Expect the websocket to be closed by the server with `code` inside the block."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        assert isinstance(exc, websockets.ConnectionClosed), f"expected a close {self.code}, got {exc!r}"
        assert exc.rcvd is not None and exc.rcvd.code == self.code
        return True


async def test_an_ended_session_does_not_come_back_while_the_store_is_down(redis_url: str, prefix: str) -> None:
    """Two processes on one store; B reads it through a proxy the test stalls. A session signed out on A is gone
    from B's store-down fallback too (a stolen cookie cannot open B's pages or socket), and a session B only
    recalls while its store is down may watch but not act: commands fail closed."""
    parts = urllib.parse.urlsplit(redis_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    env = users_env(JOBPULSE_SESSION_GRACE_S="900")
    a = LiveServer(redis_url, prefix, env=env).start()
    b = LiveServer(urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}")), prefix, env=env).start()
    try:
        _, stolen = a.sign_in("oscar")
        _, kept = a.sign_in("oscar")
        cookie = {name: {"Cookie": f"jp_session={c['jp_session']}"} for name, c in (("stolen", stolen), ("kept", kept))}
        for headers in cookie.values():  # B checks both in the store, so its fallback would recall both
            assert get(b.url + "/admin/jobs", headers)[0] == 200
        assert await asyncio.to_thread(sign_out, a, stolen) == 303
        await asyncio.sleep(0.5)  # the sign-out reaches B over pub/sub
        proxy.stall()
        await asyncio.sleep(1.5)  # B's store reads now time out: only its fallback answers
        assert get(b.url + "/admin/jobs", cookie["stolen"])[0] == 303, "a signed-out session came back"
        with _closes_with(4401):
            gone = await LiveClient.connect(b.ws_url, ["counters"], headers=cookie["stolen"])
            await gone.ws.recv()
        assert get(b.url + "/admin/jobs", cookie["kept"])[0] == 200, "the pages stay up for a live session"
        client = await LiveClient.connect(b.ws_url, ["counters"], headers=cookie["kept"])
        try:
            ack = await client.command("runner.ping", {"runners": ["r-1"]})
            assert ack["ok"] is False and ack["error"]["code"] == "session", ack
        finally:
            await client.close()
    finally:
        proxy.heal()
        for server in (a, b):
            output = server.finish()
            assert "Traceback" not in output, output
        proxy.close()


LOGIN_BURST = 1000
HEALTHZ_GOAL_S = 0.5  # /healthz answers within this during a sign-in burst (bench.login_burst measures it)


async def test_a_login_burst_checks_at_most_the_limit_and_leaves_the_live_path_alone(server: LiveServer) -> None:
    """1,000 wrong-password sign-ins from one address, 200 at a time: at most JOBPULSE_LOGIN_FAILURES (3 here)
    are checked as guesses, the rest refused with 429 at once, none fails with 5xx; meanwhile /healthz answers
    in time and the source's subscription never drops."""
    port = server.port
    watcher = await LiveClient.connect(server.ws_url, ["health"], headers=bearer("vera"))
    # /readyz reads the connector's own flag; the health widget shows the link once its status is folded, a moment
    # later on a loaded machine (a CI run caught it at connected: false, events: 0): start from what it shows.
    await watcher.wait_for(lambda c: c.data.get("health", {}).get("connected") is True, 10)
    drops: list[dict[str, object]] = []

    async def watch(done: asyncio.Event) -> list[float]:
        times = []
        while not done.is_set():
            started = time.perf_counter()
            assert await raw_request(port, "GET", "/healthz") == 200
            times.append(time.perf_counter() - started)
            if watcher.data["health"]["connected"] is not True:
                drops.append(watcher.data["health"])
            await asyncio.sleep(0.05)
        return times

    done = asyncio.Event()
    watching = asyncio.create_task(watch(done))
    try:
        found = await burst(port, LOGIN_BURST, 200)  # what `python -m bench.login_burst` sends, in this process
    finally:
        done.set()
        healthz = await watching
        await watcher.close()
    counts = collections.Counter({int(code): n for code, n in found["statuses"].items()})
    print(f"login burst: {dict(counts)}; /healthz max {max(healthz) * 1000:.0f} ms over {len(healthz)} checks")
    assert set(counts) <= {401, 429}, counts
    assert 1 <= counts[401] <= 3, counts
    assert max(healthz) < 3 * HEALTHZ_GOAL_S, healthz
    assert not drops, drops


async def test_proxy_mode_believes_one_user_header_from_a_trusted_address(redis_url: str, prefix: str) -> None:
    """Behind a trusted proxy the user comes from one X-Forwarded-User header; two (one the client's, one the
    proxy's) are refused, as is none."""
    env = {
        "JOBPULSE_AUTH": "proxy",
        "JOBPULSE_PROXY_ROLES": "alice=admin,*=viewer",
        "JOBPULSE_TRUSTED_PROXIES": "127.0.0.1",
    }
    server = LiveServer(redis_url, prefix, env=env).start()
    try:
        one = "X-Forwarded-User: alice\r\n"
        assert await raw_request(server.port, "GET", "/admin/jobs", headers=one) == 200
        # A normal proxy adds the client's address: trust is the peer's (this test's 127.0.0.1), not the header's.
        via = one + "X-Forwarded-For: 203.0.113.9\r\n"
        assert await raw_request(server.port, "GET", "/admin/jobs", headers=via) == 200
        assert await raw_request(server.port, "GET", "/admin/jobs", headers=one + "X-Forwarded-User: bob\r\n") == 403
        assert await raw_request(server.port, "GET", "/admin/jobs") == 403
    finally:
        output = server.finish()
    assert "Traceback" not in output, output
