"""Celery's events end to end from the broker: jobpulse's Celery connector against Celery's own receiver + State.

The recorded stream (../shared/data/celery-events-200k.jsonl.gz) is published on a private redis-server
exactly as a Celery worker publishes it (kombu's JSON envelope, base64 body, on `/0.celeryev/<routing key>`),
at a steady rate, to two consumer processes in turn:

- baseline: `app.events.Receiver(...).capture()` feeding `celery.events.state.State.event` (what Flower does);
- jobpulse: `CeleryConnector` (server/streams/sources/celery: hiredis subscriber, envelope decode, translator) feeding
  the real reducer.

Each consumer reports how many events it folded and its own CPU time; the table gives CPU µs per event
and the ratio. Both keep the same number of tasks at most.

    python -m bench.celery_wire                # 100,000 events at 10,000 events/s
    python -m bench.celery_wire --quick        # 20,000 events
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.celery_fold import DATA, load
from server.redis_server import RedisServer


def envelope(event: dict[str, Any]) -> tuple[str, bytes]:
    """The channel and the message a Celery worker publishes for `event` on a Redis broker (db 0)."""
    body = {k: v for k, v in event.items() if k != "local_received"}
    routing_key = body["type"].replace("-", ".")
    message = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": body.get("hostname")},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return f"/0.celeryev/{routing_key}", json.dumps(message).encode()


def publish(url: str, messages: list[tuple[str, bytes]], rate: float) -> float:
    import redis

    client = redis.Redis.from_url(url)
    started = time.perf_counter()
    batch = 200
    for start in range(0, len(messages), batch):
        pipe = client.pipeline(transaction=False)
        for channel, data in messages[start : start + batch]:
            pipe.publish(channel, data)
        pipe.execute()
        due = started + (start + batch) / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    client.close()
    return time.perf_counter() - started


# -- consumers (each runs in its own process: `--role consumer`) ------------------------------------------


def consume_celery(url: str, expected: int, cap: int) -> dict[str, Any]:
    from celery import Celery
    from celery.events.state import State

    app = Celery("bench", broker=url)
    state = State(max_tasks_in_memory=cap, max_workers_in_memory=5000)
    seen = {"n": 0, "cpu0": 0.0}

    def on_event(event: dict[str, Any]) -> None:
        if seen["n"] == 0:
            seen["cpu0"] = time.process_time()
        seen["n"] += 1
        state.event(event)

    with app.connection() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": on_event})
        print("ready", flush=True)
        with contextlib.suppress(TimeoutError):
            receiver.capture(limit=expected, timeout=30, wakeup=False)
    return {"events": seen["n"], "cpu": time.process_time() - seen["cpu0"], "tasks": len(state.tasks)}


def consume_jobpulse(url: str, expected: int, cap: int) -> dict[str, Any]:
    from server.app import freeze_startup
    from server.settings import Settings
    from server.streams.core.reducer import fold, initial_state
    from server.streams.core.state import Limits
    from server.streams.sources.celery.connector import CeleryConnector

    settings = Settings.from_env({}, source="celery", redis_url=url, reconcile_s=3600.0, max_jobs=cap,
                                 celery_inspect_s=3600.0)  # fmt: skip
    state = initial_state(Limits(max_jobs=cap))
    counts = {"cpu0": 0.0}

    class Sink:
        def feed(self, event: Any, at: float, replay: bool = False) -> None:
            fold(state, event, at, replay)

        def chunk_end(self) -> None:
            pass

    class Connector(CeleryConnector):
        async def _inspect_loop(self) -> None:
            """No inspect round trips during the measurement (the baseline makes none either)."""

    connector = Connector(settings, Sink())

    async def main() -> dict[str, Any]:
        task = asyncio.create_task(connector.run())
        while not connector.connected:  # noqa: ASYNC110 - a plain flag the connector sets
            await asyncio.sleep(0.05)
        # As the server's lifespan does once start-up is done (server/app.py): what exists now (Celery, kombu and
        # everything they import) leaves the collector's reach. Without it every full collection walked them.
        freeze_startup()
        print("ready", flush=True)
        deadline = time.monotonic() + 120
        translated = connector.translator
        started = False
        while time.monotonic() < deadline:
            done = sum(translated.seqs.values())
            if done and not started:
                counts["cpu0"], started = time.process_time(), True
            if state.health.events >= expected * 0.999 and done:
                break
            await asyncio.sleep(0.01)
        spent = time.process_time() - counts["cpu0"]
        task.cancel()
        await connector.close()
        # health.events counts the connection's SourceStatus too; report Celery events only.
        return {"events": sum(translated.seqs.values()) and state.health.events - 1, "cpu": spent,
                "tasks": len(state.jobs)}  # fmt: skip

    return asyncio.run(main())


def run_consumer(kind: str, url: str, messages: list[tuple[str, bytes]], rate: float, cap: int) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.celery_wire", "--role", "consumer", "--kind", kind, "--redis-url", url,
         "--expected", str(len(messages)), "--cap", str(cap)],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        raise RuntimeError(f"{kind} consumer did not start: {line!r}")
    time.sleep(0.5)
    took = publish(url, messages, rate)
    out, _ = child.communicate(timeout=180)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["publish_s"] = took
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=10_000.0, help="events published per second")
    parser.add_argument("--cap", type=int, default=100_000)
    parser.add_argument("--role", default="orchestrator", choices=("orchestrator", "consumer"))
    parser.add_argument("--kind", default="jobpulse")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--expected", type=int, default=0)
    args = parser.parse_args()
    if args.role == "consumer":
        consume = consume_celery if args.kind == "celery" else consume_jobpulse
        print(json.dumps(consume(args.redis_url, args.expected, args.cap)), flush=True)
        return 0
    if not DATA.exists():
        print(f"skipped: the recorded stream is not on this machine ({DATA})")
        return 0
    events = load(20_000 if args.quick else args.events)
    messages = [envelope(e) for e in events]
    server = RedisServer().start()
    try:
        print(f"{len(messages):,} recorded Celery events as kombu messages at {args.rate:,.0f}/s on "
              f"{server.url}; cap {args.cap:,} tasks\n")  # fmt: skip
        results = {
            kind: run_consumer(kind, server.url, messages, args.rate, args.cap) for kind in ("celery", "jobpulse")
        }
    finally:
        server.stop()
    base = results["celery"]["cpu"] / max(results["celery"]["events"], 1)
    print("| consumer | events folded | tasks kept | CPU µs/event | vs Celery receiver + State |")
    print("|---|---|---|---|---|")
    for kind, label in (("celery", "Celery Receiver + State"), ("jobpulse", "jobpulse Celery connector")):
        r = results[kind]
        per = r["cpu"] / max(r["events"], 1)
        print(f"| {label} | {r['events']:,} | {r['tasks']:,} | {per * 1e6:.2f} | {base / per:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
