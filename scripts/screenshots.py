"""Screenshot every page of jobpulse into docs/screenshots/<page>.png, against a private simulated fleet.

Usage (from the repository root):

    python scripts/screenshots.py                      # every page, after 75 s of simulated traffic
    python scripts/screenshots.py --wait 90 --seed 7   # longer fill, another fleet
    python scripts/screenshots.py --pages status,wall  # only these pages (names below)
    python scripts/screenshots.py --out /tmp/shots --width 3840 --height 2160

It starts everything it needs and stops all of it afterwards (also on Ctrl-C or SIGTERM):

1. a private redis-server (`server.redis_server.RedisServer`) on a free loopback port, persisting nothing;
2. jobpulse (`python -m uvicorn server.app:create_app --factory`) on a free port, on that Redis, with the
   demo's tighter rules (`JOBPULSE_STUCK_AFTER_S`, `JOBPULSE_SLA`) so hot issues show within the wait;
3. the fleet simulator (`python -m server.cli simulate --seed 7 ...`), seeded so the run is repeatable.

It then waits `--wait` seconds (default 75) so series, backlogs, alerts and the timeline fill, opens each
page in headless Chromium (`/usr/bin/chromium`, or `JOBPULSE_CHROMIUM`) with a `--width` x `--height`
viewport (default 1920x1080, light colour scheme; the wall is dark always), waits until the page's socket
is live and its widgets are drawn, and saves the viewport as a PNG (recompressed at zlib level 9).

Pages (name: path): dashboard: /admin/jobs, overview: /admin/jobs/overview, runners: /admin/jobs/runners,
manage: /admin/jobs/manage, table: /admin/jobs/table, functions: /admin/jobs/functions (with one function's
chart open), failures: /admin/jobs/failures, status: /admin/system-status, logs: /admin/jobs/logs,
notifications: /admin/jobs/notifications, audit: /admin/jobs/audit, wall: /wall, login: /login. Alerts go to a
`jobpulse alert-sink` started for the run. jobpulse runs with real sign-in: the script signs
in as an admin made for the run, then runs a few real commands (a ping, a drain, a test batch, a purge
previewed and confirmed) so the activity and audit pages show entries. A page that does not answer yet
(its template is not built: 500) is skipped with a message; run the command again once it exists. The exit
status is 0 when every requested page was taken, 1 when some were skipped, 2 when the stack did not start.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from server.auth import hash_password  # noqa: E402 - after the path fix above
from server.redis_server import RedisServer, free_port  # noqa: E402

PASSWORD = secrets.token_urlsafe(16)

PAGES = {
    "dashboard": "/admin/jobs",
    "overview": "/admin/jobs/overview",
    "runners": "/admin/jobs/runners",
    "manage": "/admin/jobs/manage",
    "table": "/admin/jobs/table",
    "functions": "/admin/jobs/functions?fn=mail.send_receipt",
    "failures": "/admin/jobs/failures",
    "status": "/admin/system-status",
    "logs": "/admin/jobs/logs",
    "notifications": "/admin/jobs/notifications",
    "audit": "/admin/jobs/audit",
    "wall": "/wall",
    "login": "/login",
}
# The pages are taken signed in, as this admin (a password made for the run); the login page signed out.
USER = "alice"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
]
# The demo's rules (server/cli.py cmd_demo), a little tighter still: a screenshot run lasts about a minute.
SERVER_ENV = {"JOBPULSE_STUCK_AFTER_S": "60", "JOBPULSE_SLA": "*=120,reports=60", "JOBPULSE_LOG_LEVEL": "warning"}


def log(message: str) -> None:
    print(f"screenshots: {message}", flush=True)


class Child:
    """A child process whose output goes to a temporary file, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.output: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.output, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        self.output.seek(0)
        return "\n".join(self.output.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.output.close()


def wait_ready(url: str, server: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"jobpulse exited:\n{server.tail()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/readyz", timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"jobpulse was not ready within {timeout:.0f} s:\n{server.tail()}")


def page_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def recompress_png(path: Path) -> None:
    """Rewrite a PNG's image data at zlib level 9 in one IDAT chunk (lossless; Chromium writes it fast, not small)."""
    data = path.read_bytes()
    signature, pos = data[:8], 8
    before: list[bytes] = []
    after: list[bytes] = []
    idat = bytearray()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos : pos + 12 + length]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        elif idat or kind == b"IEND":
            after.append(chunk)
        else:
            before.append(chunk)
        pos += 12 + length
    packed = zlib.compress(zlib.decompress(bytes(idat)), 9)
    chunk = struct.pack(">I", len(packed)) + b"IDAT" + packed
    chunk += struct.pack(">I", zlib.crc32(b"IDAT" + packed) & 0xFFFFFFFF)
    smaller = signature + b"".join(before) + chunk + b"".join(after)
    if len(smaller) < len(data):
        path.write_bytes(smaller)


@contextlib.contextmanager
def stack(seed: int, runners: int, rate: float) -> Iterator[str]:
    """Redis, jobpulse and the simulator; yields jobpulse's base URL and stops all three afterwards."""
    redis_server = RedisServer().start()
    children: list[Child] = []
    try:
        log(f"redis-server at {redis_server.url}")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "REDIS_URL": redis_server.url, "JOBPULSE_PREFIX": "jobpulse", **SERVER_ENV}
        env["JOBPULSE_AUTH"] = "users"
        env["JOBPULSE_USERS"] = f"{USER}:admin:{hash_password(PASSWORD)}"
        # Alerts go to a receiver of the run's own (jobpulse alert-sink), so the Notifications page has deliveries.
        sink_port = free_port()
        secret = secrets.token_hex(16)
        env["JOBPULSE_ALERT_WEBHOOKS"] = f"http://127.0.0.1:{sink_port}/jobpulse"
        env["JOBPULSE_ALERT_WEBHOOK_SECRET"] = secret
        env["JOBPULSE_ALERT_MIN_OPEN_S"] = "10"
        sink_args = [sys.executable, "-m", "server.cli", "alert-sink", "--port", str(sink_port), "--secret", secret]
        children.append(Child("alert-sink", sink_args, env))
        server_args = [
            sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port),
            "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--ws-ping-interval", "0",
            "--no-access-log", "--log-level", "warning", "--no-proxy-headers",
        ]  # fmt: skip
        server = Child("jobpulse", server_args, env)
        children.append(server)
        wait_ready(url, server)
        log(f"jobpulse at {url} (pid {server.process.pid})")
        simulator_args = [
            sys.executable, "-m", "server.cli", "--log-level", "warning", "simulate",
            "--redis-url", redis_server.url, "--prefix", "jobpulse",
            "--runners", str(runners), "--rate", str(rate), "--seed", str(seed),
            "--silent-after", "30", "--heartbeat", "2",
        ]  # fmt: skip
        simulator = Child("simulator", simulator_args, env)
        children.append(simulator)
        log(f"simulator: {runners} runners, {rate} jobs/s, seed {seed} (pid {simulator.process.pid})")
        yield url
        for child in children:
            if not child.alive():
                log(f"warning: {child.name} exited early:\n{child.tail()}")
    finally:
        for child in reversed(children):
            child.stop()
        redis_server.stop()
        log("stopped the simulator, jobpulse and redis-server")


def shoot(url: str, names: list[str], out: Path, width: int, height: int) -> tuple[list[str], list[str]]:
    """Screenshot each named page; returns (taken, skipped)."""
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("JOBPULSE_CHROMIUM", "/usr/bin/chromium")
    taken: list[str] = []
    skipped: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            signed_in = sign_in(browser, url)
            for name in names:
                path = PAGES[name]
                status = page_status(url + path)
                if status not in (200, 303):  # 303: to the login page, as a signed-out visitor
                    log(f"skipped {name} ({path}): it answered {status or 'nothing'}; not built yet? run again later")
                    skipped.append(name)
                    continue
                context = browser.new_context(
                    viewport={"width": width, "height": height},
                    color_scheme="light",
                    storage_state=None if name == "login" else signed_in,
                )
                try:
                    page = context.new_page()
                    page.goto(url + path)
                    if name == "login":
                        page.wait_for_selector("input[name=username]")
                        page.wait_for_timeout(500)
                    else:
                        page.wait_for_selector(
                            '#conn[data-state="live"], #conn[data-state="source-down"]', timeout=15_000
                        )
                        page.wait_for_timeout(3_000)  # the first snapshots drawn, the new-row highlights faded
                    target = out / f"{name}.png"
                    page.screenshot(path=str(target))
                    recompress_png(target)
                    shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
                    log(f"{name} ({path}) -> {shown} ({target.stat().st_size // 1024} KB)")
                    taken.append(name)
                except Exception as exc:
                    log(f"skipped {name} ({path}): {type(exc).__name__}: {exc}")
                    skipped.append(name)
                finally:
                    context.close()
        finally:
            browser.close()
    return taken, skipped


def sign_in(browser: Any, url: str) -> Any:
    """Sign in through the login page, run a few real commands over the socket, return the signed-in state."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{url}/login?next=/admin/jobs/runners")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("form button[type=submit]")
        page.wait_for_selector('#conn[data-state="live"]', timeout=15_000)
        state = context.storage_state()
    finally:
        context.close()
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in state["cookies"])
    # Playwright's sync API runs an event loop in this thread: the socket client gets a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run_commands(url, cookie)).result(timeout=60)
    return state


async def run_commands(url: str, cookie: str) -> None:
    """A few operator commands, so Recent Maintenance Activity and the audit log have something to show."""
    import json

    import websockets

    async with websockets.connect(url.replace("http", "ws") + "/ws", additional_headers={"Cookie": cookie}) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        await ws.send(json.dumps({"type": "hello", "v": 1, "widgets": ["runners"], "epoch": None, "resume": {}}))
        runners: list[str] = []
        while not runners:
            message = json.loads(await ws.recv())
            for frame in message.get("frames", []):
                if frame["w"] == "runners" and frame["type"] == "snapshot":
                    rows = frame["data"]["rows"]
                    runners = sorted(r for r, row in rows.items() if row["status"] in ("online", "busy"))

        async def command(n: int, action: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
            await ws.send(json.dumps({"type": "cmd", "id": f"shot-{n}", "action": action, "args": args, **extra}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "ack" and message["id"] == f"shot-{n}":
                    return dict(message)

        await command(1, "runner.ping", {"runners": "*"})
        await command(2, "runner.drain", {"runners": runners[:1]})
        await command(3, "job.batch", {"channels": ["email", "default"], "count": 3})
        preview = await command(4, "channel.purge", {"channel": "webhooks-legacy"}, phase="preview")
        if preview.get("ok"):
            await command(5, "channel.purge", {"channel": "webhooks-legacy"}, confirm=preview["result"]["confirm"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="directory for the PNGs")
    parser.add_argument("--wait", type=float, default=75.0, help="seconds of traffic before the first shot")
    parser.add_argument("--seed", type=int, default=7, help="the simulator's seed (default 7)")
    parser.add_argument("--runners", type=int, default=12)
    parser.add_argument("--rate", type=float, default=20.0, help="jobs published per second (default 20)")
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated page names (default: all)")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args(argv)
    # SIGTERM (a CI job cancelled, `kill`) stops the stack as Ctrl-C does: the `finally` blocks run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    names = [n.strip() for n in args.pages.split(",") if n.strip()]
    unknown = [n for n in names if n not in PAGES]
    if unknown:
        parser.error(f"unknown pages {unknown}; known: {', '.join(PAGES)}")
    try:
        with stack(args.seed, args.runners, args.rate) as url:
            log(f"waiting {args.wait:.0f} s for the pages to fill")
            time.sleep(args.wait)
            taken, skipped = shoot(url, names, args.out, args.width, args.height)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except RuntimeError as exc:
        log(f"could not start: {exc}")
        return 2
    log(f"took {len(taken)} of {len(names)}: {', '.join(taken) or 'none'}")
    if skipped:
        log(f"skipped {', '.join(skipped)}: run again once they exist")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
