"""Sign-in flood (docs/reliability.md, Security): what a burst of wrong-password sign-ins costs the live path.

One real jobpulse with users (a simulated fleet beating into it), a websocket client on the live widgets, and
a burst of `--count` wrong-password sign-ins from one address, `--concurrency` at a time, sent by a child
process so the measuring client is not the one the burst slows. The client measures, every 20 ms, the
websocket's ping-to-pong round trip and /healthz, first in an idle window (the baseline) and then while the
burst runs; it also watches the health widget for the source's subscription dropping. Printed: p50 / p99 /
max of each, burst against idle as a ratio, the burst's status codes (at most JOBPULSE_LOGIN_FAILURES may be
checked as guesses: 401; the rest 429 at once), and the burst's own rate.

    python -m bench.login_burst --quick     # 300 sign-ins
    python -m bench.login_burst             # 1,000 sign-ins, 200 at a time

Exits 1 when more guesses than the limit were checked, a sign-in answered 5xx, or the source dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import secrets
import sys
import time
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import websockets

from bench import common

LIMIT = 5  # JOBPULSE_LOGIN_FAILURES for the run
SAMPLE_S = 0.02


async def request(port: int, method: str, path: str, body: bytes = b"", headers: str = "") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
        writer.write(head.encode() + body)
        await writer.drain()
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()


async def burst(port: int, count: int, concurrency: int) -> dict[str, Any]:
    """The child's part: `count` wrong-password sign-ins, `concurrency` at a time; their statuses."""
    csrf = secrets.token_urlsafe(24)
    form = urllib.parse.urlencode({"csrf": csrf, "username": "oscar", "password": "not-it", "next": "/"}).encode()
    headers = (f"Origin: http://127.0.0.1:{port}\r\nCookie: jp_csrf={csrf}\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\n")  # fmt: skip
    slots = asyncio.Semaphore(concurrency)

    async def one() -> int:
        async with slots:
            try:
                return await request(port, "POST", "/login", form, headers)
            except OSError:
                return 0  # refused or reset by the kernel: counted apart

    started = time.perf_counter()
    statuses = await asyncio.gather(*(one() for _ in range(count)))
    took = time.perf_counter() - started
    return {"statuses": dict(collections.Counter(statuses)), "seconds": took}


async def measure(port: int, ws_url: str, token: str, stop: asyncio.Event) -> dict[str, list[float]]:
    """Ping round trips and /healthz times every SAMPLE_S until `stop`; and whether the source dropped."""
    found: dict[str, list[float]] = {"ping": [], "healthz": [], "dropped": []}
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "hello", "v": 1, "widgets": ["health", "counters"]}))
        while not stop.is_set():
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "ping", "t": sent}))
            while True:
                message = json.loads(await ws.recv())
                for frame in message if isinstance(message, list) else [message]:
                    data = frame.get("data") or frame.get("patch") or {}
                    if frame.get("widget") == "health" and data.get("connected") is False:
                        found["dropped"].append(time.time())
                if any(f.get("type") == "pong" for f in (message if isinstance(message, list) else [message])):
                    break
            found["ping"].append(time.perf_counter() - sent)
            sent = time.perf_counter()
            assert await request(port, "GET", "/healthz") == 200
            found["healthz"].append(time.perf_counter() - sent)
            await asyncio.sleep(SAMPLE_S)
    return found


def summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(v * 1000 for v in values)
    return common.percentile(ordered, 50), common.percentile(ordered, 99), ordered[-1] if ordered else float("nan")


def run(args: argparse.Namespace) -> int:
    from tests.conftest import TEST_TOKENS, LiveServer, SimulatedFleet, users_env

    facts = common.machine_facts()
    title = f"jobpulse sign-in burst: {args.count} sign-ins, {args.concurrency} at a time" + (
        " --quick" if args.quick else ""
    )
    with common.session(args, facts, title) as (children, _):
        prefix = common.unique_prefix("login-burst")
        env = users_env(JOBPULSE_LOGIN_FAILURES=str(LIMIT))
        server = LiveServer(args.redis_url, prefix, env=env).start()
        fleet = SimulatedFleet(server, "--runners", "4", "--channels", "3", "--rate", "20", "--seed", "5")
        try:
            fleet.wait_for_runners(4)

            async def window(seconds: float | None) -> tuple[dict[str, list[float]], dict[str, Any] | None]:
                stop = asyncio.Event()
                task = asyncio.create_task(measure(server.port, server.ws_url, TEST_TOKENS["vera"], stop))
                result = None
                if seconds is not None:
                    await asyncio.sleep(seconds)
                else:
                    await asyncio.sleep(0.5)  # the client is sampling before the burst starts
                    child = children.start(
                        [sys.executable, "-m", "bench.login_burst", "--role", "burst", "--port", str(server.port),
                         "--count", str(args.count), "--concurrency", str(args.concurrency)],
                    )  # fmt: skip
                    line = await asyncio.to_thread(common.read_json, child.stdout, args.timeout, "the burst")
                    result = line
                stop.set()
                return await task, result

            idle, _ = asyncio.run(window(args.idle))
            during, done = asyncio.run(window(None))
        finally:
            fleet.stop()
            output = server.finish()
        common.delete_prefix(args.redis_url, prefix)
    assert done is not None
    rows = []
    for name in ("ping", "healthz"):
        a, b = summary(idle[name]), summary(during[name])
        rows.append([f"{name} idle", *a, len(idle[name]), "1.00x"])
        rows.append([f"{name} during the burst", *b, len(during[name]), common.ratio(b[1], a[1])])
    print(common.table(["ms", "p50", "p99", "max", "samples", "p99 vs idle"], rows))
    statuses = {int(k): v for k, v in done["statuses"].items()}
    print(f"burst: {statuses} in {done['seconds']:.2f} s ({args.count / done['seconds']:,.0f} sign-ins/s); "
          f"source dropped {len(during['dropped'])} times")  # fmt: skip
    failed = statuses.get(401, 0) > LIMIT or any(code >= 500 for code in statuses) or during["dropped"]
    failed = failed or "Traceback" in output
    print("checks: " + ("FAILED" if failed else f"at most {LIMIT} guesses checked, no 5xx, source up: ok"))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.login_burst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--role", choices=["orchestrator", "burst"], default="orchestrator")
    parser.add_argument("--quick", action="store_true", help="300 sign-ins")
    parser.add_argument("--count", type=int, default=None, help="sign-ins in the burst (default 1000; quick 300)")
    parser.add_argument("--concurrency", type=int, default=200, help="sign-ins in flight at once (default 200)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of the idle (baseline) window")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else a private redis-server")
    parser.add_argument("--timeout", type=float, default=300.0, help="hard timeout of the whole run, s")
    args = parser.parse_args()
    args.count = args.count or (300 if args.quick else 1000)
    if args.role == "burst":
        common.say(asyncio.run(burst(args.port, args.count, args.concurrency)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
