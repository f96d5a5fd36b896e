"""B2/B3/B6, fan-out: publish-to-client latency with N websocket clients, beside two baselines, and bytes per tick.

What runs (every part its own process, all on loopback, one shared clock):

- a source publishing native events to `P:events` at `--rate` objects/s (default
  500, one per PUBLISH): a big, mostly idle fleet: `--job-rate` jobs start per
  second (default 16; queued -> started -> completed, 4% failed) and run
  `--job-seconds` (0.5 s), so about 8 run at a time; every other event is a
  heartbeat, from as many runners as beat every `--interval` (2 s) at that rate
  (about 900 at 500 events/s); plus a depth report every 0.5 s.
  A `started` event carries `started_at` = the moment it was published, and
  since at most ~9 jobs run or wait, the `live_jobs` widget (10 rows, running
  first) shows each new job as a running row whose `since` is that
  `started_at`: the one field that carries the publisher's clock through
  jobpulse to the page (`runners` rows carry `hb`, jobpulse's receive time).
  Latency = the time the client read the frame - `since`.
- N clients (`--clients`, default 1000) spread over `--client-procs` processes
  (default 4; `bench/wsclient.py`, a minimal RFC 6455 client, so the clients
  cost little CPU), each subscribed to all seven widgets; every client records
  the latency of every job it sees turn running, plus the delivery part
  (receive time - the batch's `now`, the server's clock when it sent it).
- the server under test, one of:
  - `jobpulse`: the real server (`python -m server.cli serve`: uvicorn,
    uvloop, httptools, websockets-sansio, no deflate), default settings, so the
    default 25 ms coalescing tick; a unique JOBPULSE_PREFIX;
  - `bare`: a bare `websockets` server (websockets.asyncio.server +
    `websockets.broadcast`, uvloop, no compression) reading the same events
    with redis-py and broadcasting, with the same tick and flush rule as
    jobpulse's hub, one frame per tick carrying the new running rows, padded to
    the mean size of jobpulse's messages measured just before: the floor of a
    Python server doing this fan-out;
  - `naive`: the same `websockets` server, folding with jobpulse's own reducer,
    that re-sends the full snapshot (all seven widgets) to every client, one
    awaited `send` after another, on every change (every pub/sub message).

Reported per server: latency p50/p99/max, messages/s and bytes/s delivered,
server CPU (psutil) and RSS (and RSS per connection), client CPU; ratios against
`bare`. For jobpulse also bytes per client per tick against the full snapshot
(B6): the snapshot is measured by a probe client that subscribes after the run.

Usage: python -m bench.fanout [--quick] [--clients 1000] [--redis-url URL] (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from array import array
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/<script>.py`: make `bench` and `server` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

WIDGETS = ("counters", "published", "live_jobs", "failures", "scheduled", "runners", "health")
SERVERS = ("jobpulse", "bare", "naive")
HELLO = json.dumps({"type": "hello", "v": 1, "widgets": list(WIDGETS), "epoch": None, "resume": {}}).encode()


# -- source role ------------------------------------------------------------------------------------


def run_source(args: argparse.Namespace) -> None:
    from bench.workload import RawPublisher, Stream

    common.watch_parent(args.deadline)
    # One job per block: queued, started one block later, finished `lag` blocks after that; the rest of the
    # block is heartbeats, from as many runners as beat every `interval` at that rate.
    per_block = max(3, round(args.rate / args.job_rate))
    beats = per_block - 3
    lag = max(1, round(args.job_seconds * args.job_rate))
    runners = max(1, round(args.job_rate * beats * args.interval))
    stream = Stream(
        args.tag, runners=runners, jobs_per_block=1, start_lag=1, finish_lag=1 + lag,
        heartbeats_per_block=beats, depth_per_block=0, interval=args.interval, payload=True,
    )  # fmt: skip
    publisher = RawPublisher(args.redis_url, f"{args.prefix}:events")
    delay = args.start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    started = now = time.time()
    end = args.start_at + args.duration
    sent = 0
    next_depth = started
    cpu0 = time.process_time()
    while now < end:
        due = int((now - started) * args.rate) - sent
        if now >= next_depth:
            publisher.publish_many([stream._depth(b"%.6f" % now, now)])
            next_depth += 0.5
        if due > 0:
            publisher.publish_many(stream.take(due, now))
            sent += due
        time.sleep(0.002)
        now = time.time()
    common.say({"published": sent, "mix": stream.counts, "cpu": time.process_time() - cpu0, "runners": runners})
    publisher.close()


# -- client role ------------------------------------------------------------------------------------


class ClientStats:
    def __init__(self) -> None:
        self.start = float("inf")
        self.end = float("inf")
        self.latency: array[float] = array("d")
        self.delivery: array[float] = array("d")
        self.messages = 0
        self.bytes = 0
        self.first_message_bytes: list[int] = []
        self.clients_seen: set[int] = set()


class ConnState:
    __slots__ = ("first", "primed", "running")

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.primed = False
        self.first: asyncio.Future[int] = asyncio.get_running_loop().create_future()


def make_on_message(stats: ClientStats) -> Any:
    import orjson

    loads = orjson.loads

    def on_message(conn: Any, payload: bytes, at: float) -> None:
        state: ConnState | None = conn.state
        if state is None:  # the first frame can come in the same read as the upgrade
            state = conn.state = ConnState()
        if not state.first.done():
            if b'"batch"' not in payload[:20]:
                return  # jobpulse's welcome comes first; the subscription's snapshot batch marks "ready"
            state.first.set_result(len(payload))
        in_window = stats.start <= at < stats.end
        if in_window:
            stats.messages += 1
            stats.bytes += conn.wire  # as sent: compressed when deflate was negotiated
        if b'"live_jobs"' not in payload:
            return
        message = loads(payload)
        if message.get("type") != "batch":
            return
        now = message.get("now", at)
        running = state.running
        for frame in message["frames"]:
            if frame.get("w") != "live_jobs":
                continue
            rows = frame["data"].get("rows")
            if not rows:
                continue
            if frame["type"] == "snapshot":
                fresh = {job for job, row in rows.items() if row.get("status") == "running"}
                if state.primed and in_window:
                    for job in fresh - running:
                        stats.latency.append(at - rows[job]["since"])
                        stats.delivery.append(at - now)
                state.running = fresh
                state.primed = True
                continue
            for job, row in rows.items():
                if row is None:
                    running.discard(job)
                elif row.get("status") == "running" and "since" in row:
                    if job not in running:
                        running.add(job)
                        if in_window:
                            stats.latency.append(at - row["since"])
                            stats.delivery.append(at - now)
                elif "status" in row:
                    running.discard(job)

    return on_message


def _write_samples(path: str, stats: ClientStats) -> None:
    with open(path, "wb") as out:
        stats.latency.tofile(out)
        stats.delivery.tofile(out)


async def clients_main(args: argparse.Namespace) -> None:
    from bench import wsclient

    stats = ClientStats()
    on_message = make_on_message(stats)
    conns: list[Any] = []
    failures: list[str] = []
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def open_one() -> None:
        async with gate:
            try:
                conn = await wsclient.connect(
                    args.host, args.port, "/ws", HELLO, on_message, open_timeout=20, deflate=args.deflate
                )
            except (OSError, TimeoutError) as exc:
                failures.append(repr(exc)[:200])
                return
            if conn.state is None:
                conn.state = ConnState()
            conns.append(conn)
            try:
                async with asyncio.timeout(20):
                    stats.first_message_bytes.append(await conn.state.first)
            except TimeoutError:
                failures.append("no snapshot within 20 s")

    await asyncio.gather(*(open_one() for _ in range(args.count)))
    common.say({"ready": len(conns), "failed": len(failures), "errors": failures[:3]})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        if command["cmd"] == "measure":
            stats.start, stats.end = command["start"], command["end"]
            await asyncio.sleep(max(0.0, stats.end - time.time()) + 0.3)
            open_count = sum(1 for c in conns if not c.closed.done())
            _write_samples(command["out"], stats)
            common.say(
                {
                    "samples": len(stats.latency),
                    "messages": stats.messages,
                    "bytes": stats.bytes,
                    "open": open_count,
                    "snapshot_bytes": stats.first_message_bytes[:1],
                }
            )
        elif command["cmd"] == "quit":
            break
    for conn in conns:
        conn.close()
    await asyncio.sleep(0.2)


def run_clients(args: argparse.Namespace) -> None:
    import uvloop

    common.watch_parent(args.deadline)
    common.raise_nofile()
    uvloop.run(clients_main(args))


# -- baseline servers -------------------------------------------------------------------------------


async def _subscribe(url: str, channel: str) -> Any:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    while (await pubsub.get_message(timeout=1.0)) is None:
        pass
    return pubsub


async def bare_server_main(args: argparse.Namespace) -> None:
    """Bare `websockets` + `broadcast`: one padded frame a tick with the new running rows; jobpulse's flush rule."""
    import orjson
    from websockets.asyncio.server import broadcast, serve

    clients: set[Any] = set()
    pending: dict[str, float] = {}
    dirty = asyncio.Event()
    tick = args.tick
    pad_to = args.pad_to
    seq = 0

    async def handler(ws: Any) -> None:
        await ws.recv()  # hello
        await ws.send(b'{"type":"batch","now":%.6f,"frames":[]}' % time.time(), text=True)
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async def intake() -> None:
        pubsub = await _subscribe(args.redis_url, f"{args.prefix}:events")
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            data = orjson.loads(message["data"])
            for obj in data if type(data) is list else (data,):
                if obj.get("type") == "job" and obj.get("event") == "started":
                    pending[obj["job"]] = obj["started_at"]
            dirty.set()

    async def flush_loop() -> None:
        nonlocal seq
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            await dirty.wait()
            wait = last + tick - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            last = loop.time()
            dirty.clear()
            rows = {job: {"status": "running", "since": since} for job, since in pending.items()}
            pending.clear()
            seq += 1
            head = b'{"type":"batch","now":%.6f,"frames":[{"type":"patch","w":"live_jobs","seq":%d,' % (
                time.time(),
                seq,
            )
            body = head + b'"data":{"rows":%s}}]' % orjson.dumps(rows)
            pad = max(0, pad_to - len(body) - 10)
            message = body + b',"pad":"' + b"x" * pad + b'"}'
            broadcast(clients, message, text=True)

    async with serve(handler, "127.0.0.1", args.port, compression=None, backlog=4096, max_size=1 << 16):
        tasks = [asyncio.create_task(intake()), asyncio.create_task(flush_loop())]
        common.say({"ready": True})
        await _until_stdin_closes()
        for task in tasks:
            task.cancel()


async def naive_server_main(args: argparse.Namespace) -> None:
    """The naive way: fold each message, encode the full snapshot, `await send` it to every client in turn."""
    from websockets.asyncio.server import serve

    from server import protocol
    from server.streams.core.events import parse_message
    from server.streams.core.reducer import fold, initial_state
    from server.streams.core.widgets import WIDGETS as ALL_WIDGETS, ViewLimits

    clients: list[Any] = []
    state = initial_state()
    limits = ViewLimits()
    version = 0

    def snapshot() -> bytes:
        frames = [
            protocol.widget_frame("snapshot", w.name, version, protocol.encode(w.project(state, limits)))
            for w in ALL_WIDGETS
        ]
        return protocol.batch(time.time(), frames)

    async def handler(ws: Any) -> None:
        await ws.recv()  # hello
        await ws.send(snapshot(), text=True)
        clients.append(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.remove(ws)

    async def loop_forever() -> None:
        nonlocal version
        pubsub = await _subscribe(args.redis_url, f"{args.prefix}:events")
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            at = time.time()
            events, _ = parse_message(message["data"], 1 << 20)
            changed = 0
            for event in events:
                changed |= fold(state, event, at)
            if not changed:
                continue
            version += 1
            data = snapshot()
            for ws in list(clients):
                with contextlib.suppress(Exception):
                    await ws.send(data, text=True)

    async with serve(handler, "127.0.0.1", args.port, compression=None, backlog=4096, max_size=1 << 16):
        task = asyncio.create_task(loop_forever())
        common.say({"ready": True})
        await _until_stdin_closes()
        task.cancel()


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass


def run_baseline_server(args: argparse.Namespace) -> None:
    import uvloop

    common.watch_parent(args.deadline)
    common.raise_nofile()
    uvloop.run(bare_server_main(args) if args.role == "bare-server" else naive_server_main(args))


# -- orchestrator -----------------------------------------------------------------------------------


def wait_http_ready(url: str, proc: Any, timeout: float) -> None:
    """Wait until `url` answers 200 (the server's /readyz); fail early if `proc` exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {timeout} s")


def start_server(
    children: common.Children,
    args: argparse.Namespace,
    kind: str,
    prefix: str,
    port: int,
    env: dict[str, str] | None = None,
) -> Any:
    """Start the server under test on `port`, wait until it is ready; `env` adds to (or overrides) jobpulse's."""
    if kind == "jobpulse":
        environ = {
            "REDIS_URL": args.redis_url,
            "JOBPULSE_PREFIX": prefix,
            "JOBPULSE_LOG_LEVEL": "warning",
            # Sign-in is checked once per connection, never per message: dev mode leaves the fan-out as it is.
            "JOBPULSE_AUTH": "dev",
            # Every benchmark client connects from 127.0.0.1: no per-address limits (0 = none).
            "JOBPULSE_MAX_CLIENTS_PER_ADDRESS": "0",
            "JOBPULSE_CONNECTS_PER_ADDRESS": "0",
            # Room for every client and the snapshot probe (at 10,000 clients the default cap refused the probe).
            "JOBPULSE_MAX_CLIENTS": str(max(10_000, args.clients + 10)),
            "JOBPULSE_WS_DEFLATE": "true" if getattr(args, "deflate", False) else "false",
            "HOST": "127.0.0.1",
            "PORT": str(port),
            **(env or {}),
        }
        profile = ["-m", "cProfile", "-o", args.profile_server] if getattr(args, "profile_server", None) else []
        proc = children.start(
            [sys.executable, *profile, "-m", "server.cli", "serve"], env=environ, stdin=True, stdout=False
        )
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", proc, 30)
        return proc
    argv = [
        sys.executable, "-m", "bench.fanout", "--role", f"{kind}-server", "--port", str(port),
        "--redis-url", args.redis_url, "--prefix", prefix, "--tick", str(args.tick), "--pad-to", str(args.pad_to),
        "--deadline", str(args.deadline),
    ]  # fmt: skip
    proc = children.start(argv, stdin=True)
    common.read_json(proc.stdout, 30, f"{kind} server start")
    return proc


def run_server(children: common.Children, args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """One server under test: start it, connect the clients, publish, measure the window, stop everything."""
    import psutil

    from server.redis_server import free_port

    prefix = common.unique_prefix(f"fanout-{kind}")
    port = free_port()
    procs: list[Any] = []
    result: dict[str, Any] = {"server": kind}
    try:
        server = start_server(children, args, kind, prefix, port)
        procs.append(server)
        server_ps = psutil.Process(server.pid)
        time.sleep(0.5)
        rss_idle = server_ps.memory_info().rss
        connect_started = time.monotonic()
        clients = start_clients(children, args, port, args.clients, args.client_procs)
        procs.extend(clients)
        ready = [common.read_json(c.stdout, 90, "clients connecting") for c in clients]
        connected = sum(r["ready"] for r in ready)
        result["connected"] = connected
        result["connect_s"] = time.monotonic() - connect_started
        result["connect_errors"] = [e for r in ready for e in r["errors"]][:3]
        time.sleep(0.5)
        rss_connected = server_ps.memory_info().rss
        print(
            f"  {kind}: {connected}/{args.clients} clients connected in {result['connect_s']:.1f} s "
            f"(server RSS {rss_idle / 2**20:.0f} -> {rss_connected / 2**20:.0f} MiB)",
            flush=True,
        )

        start_at = time.time() + 0.5
        window_start = start_at + args.warmup
        window_end = window_start + args.duration
        source = start_source(children, args, prefix, start_at, args.warmup + args.duration + 1.0, kind)
        procs.append(source)
        outs = []
        tmp = tempfile.mkdtemp(prefix="jpbench-fanout-")
        for i, client in enumerate(clients):
            out = os.path.join(tmp, f"c{i}.bin")
            outs.append(out)
            common.tell(client, {"cmd": "measure", "start": window_start, "end": window_end, "out": out})
        client_ps = [psutil.Process(c.pid) for c in clients]
        time.sleep(max(0.0, window_start - time.time()))
        stats0 = jobpulse_stats(port) if kind == "jobpulse" else None
        cpu0 = sum(server_ps.cpu_times()[:2])
        ccpu0 = sum(sum(p.cpu_times()[:2]) for p in client_ps)
        rcpu0 = common.redis_cpu(args.redis_url)
        time.sleep(max(0.0, window_end - time.time()))
        server_cpu = sum(server_ps.cpu_times()[:2]) - cpu0
        client_cpu = sum(sum(p.cpu_times()[:2]) for p in client_ps) - ccpu0
        redis_cpu = common.redis_cpu(args.redis_url) - rcpu0
        rss_end = server_ps.memory_info().rss
        stats1 = jobpulse_stats(port) if kind == "jobpulse" else None
        reports = [common.read_json(c.stdout, 30, "clients report") for c in clients]
        source_report = common.read_json(source.stdout, 30, "source")
        latency, delivery = read_samples(reports, outs)
        os.rmdir(tmp)
        messages = sum(r["messages"] for r in reports)
        nbytes = sum(r["bytes"] for r in reports)
        d = args.duration
        result.update(
            {
                "open_at_end": sum(r["open"] for r in reports),
                "samples": len(latency),
                "p50_ms": common.percentile(latency, 50) * 1000,
                "p99_ms": common.percentile(latency, 99) * 1000,
                "max_ms": (latency[-1] if latency else float("nan")) * 1000,
                "delivery_p50_ms": common.percentile(delivery, 50) * 1000,
                "delivery_p99_ms": common.percentile(delivery, 99) * 1000,
                "messages_per_s": messages / d,
                "mbytes_per_s": nbytes / d / 1e6,
                "mean_message_bytes": nbytes / messages if messages else 0.0,
                "bytes_per_client_s": nbytes / d / max(1, connected),
                "messages_per_client_s": messages / d / max(1, connected),
                "server_cpu_pct": 100 * server_cpu / d,
                "server_us_per_delivery": 1e6 * server_cpu / messages if messages else float("nan"),
                "client_cpu_pct": 100 * client_cpu / d,
                "redis_cpu_pct": 100 * redis_cpu / d,
                "rss_idle_mib": rss_idle / 2**20,
                "rss_end_mib": rss_end / 2**20,
                "kib_per_conn": (rss_connected - rss_idle) / 1024 / max(1, connected),
                "published": source_report["published"],
                "source_rate": source_report["published"] / (args.warmup + args.duration + 1.0),
            }
        )
        if stats0 and stats1:
            hub0, hub1 = stats0["hub"], stats1["hub"]
            kinds = ("frame_writes", "inline_sends", "queued_sends")
            sends = sum(hub1.get(k, 0) - hub0.get(k, 0) for k in kinds)
            flush_s = hub1["flush_seconds"] - hub0["flush_seconds"]
            result.update(
                {
                    "hub_flush_pct": 100 * flush_s / d,
                    "hub_flushes_per_s": (hub1["flushes"] - hub0["flushes"]) / d,
                    "hub_us_per_send": 1e6 * flush_s / sends if sends else float("nan"),
                    # Pre-built frames written straight to the socket (websockets-sansio, no deflate) vs the rest.
                    "hub_frame_writes_pct": 100 * (hub1.get("frame_writes", 0) - hub0.get("frame_writes", 0)) / sends
                    if sends
                    else float("nan"),
                    "hub_queued_sends": hub1["queued_sends"] - hub0["queued_sends"],
                    "hub_resyncs": hub1["resyncs"] - hub0["resyncs"],
                    "intake_events_per_s": (stats1["intake"]["events"] - stats0["intake"]["events"]) / d,
                }
            )
        if kind == "jobpulse":
            result["snapshot_bytes"], result["snapshot_deflated_bytes"] = probe_snapshot(port)
        _print_result(result)
        return result
    finally:
        for proc in reversed(procs):
            if proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.write('{"cmd": "quit"}\n')
                    proc.stdin.flush()
        grace = time.monotonic() + 3  # a shared grace period to exit on their own, then signals
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.wait(timeout=max(0.0, grace - time.monotonic()))
            if args.profile_server:  # uvicorn re-raises SIGTERM after its shutdown; SIGINT lets cProfile write
                children.stop(proc, timeout=30, sig=signal.SIGINT)
            else:
                children.stop(proc)
        common.delete_prefix(args.redis_url, prefix)


def start_clients(
    children: common.Children,
    args: argparse.Namespace,
    port: int,
    total: int,
    nprocs: int,
    module: str = "bench.fanout",
    extra: list[str] | None = None,
) -> list[Any]:
    """`total` client connections spread over `nprocs` client processes (`python -m <module> --role clients`)."""
    procs = []
    per = [total // nprocs + (1 if i < total % nprocs else 0) for i in range(nprocs)]
    for count in per:
        argv = [
            sys.executable, "-m", module, "--role", "clients", "--port", str(port), "--count", str(count),
            "--deadline", str(args.deadline), *(extra or []),
        ]  # fmt: skip
        if module == "bench.fanout" and getattr(args, "deflate", False):
            argv.append("--deflate")
        procs.append(children.start(argv, stdin=True))
    return procs


def start_source(
    children: common.Children, args: argparse.Namespace, prefix: str, start_at: float, duration: float, tag: str
) -> Any:
    """The source process: publishes from `start_at` for `duration` s at `args.rate`, then reports one JSON line."""
    argv = [
        sys.executable, "-m", "bench.fanout", "--role", "source", "--redis-url", args.redis_url,
        "--prefix", prefix, "--rate", str(args.rate), "--start-at", str(start_at),
        "--job-rate", str(args.job_rate), "--job-seconds", str(args.job_seconds), "--interval", str(args.interval),
        "--duration", str(duration), "--tag", tag, "--deadline", str(args.deadline),
    ]  # fmt: skip
    return children.start(argv)


def read_samples(reports: list[dict[str, Any]], outs: list[str]) -> tuple[list[float], list[float]]:
    """The latency and delivery samples the client processes wrote (and removed here), each sorted."""
    latency: list[float] = []
    delivery: list[float] = []
    for report, out in zip(reports, outs, strict=True):
        data = array("d")
        with open(out, "rb") as f:
            data.fromfile(f, 2 * report["samples"])
        latency.extend(data[: report["samples"]])
        delivery.extend(data[report["samples"] :])
        os.remove(out)
    latency.sort()
    delivery.sort()
    return latency, delivery


def jobpulse_stats(port: int) -> dict[str, Any] | None:
    """jobpulse's own counters (GET /api/stats), or None if this version has no such endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=5) as response:
            value: dict[str, Any] = json.loads(response.read())
            return value
    except (OSError, urllib.error.HTTPError, ValueError):
        return None


def probe_snapshot(port: int) -> tuple[int, int]:
    """Bytes of the batch a new client gets when it subscribes to every widget (the full snapshot): as sent
    plain, and as jobpulse's shared deflate would send it (the same compressor, measured here)."""
    from websockets.sync.client import connect

    from server.protocol import deflated_text_frame
    from server.wsdeflate import WINDOW_BITS

    with connect(f"ws://127.0.0.1:{port}/ws", compression=None, open_timeout=10) as ws:
        ws.send(HELLO.decode())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = ws.recv(timeout=10)
            data = message.encode() if isinstance(message, str) else message
            if data.startswith(b'{"type":"batch"'):
                frame = deflated_text_frame(data, WINDOW_BITS)
                head = 2 if frame[1] < 126 else 4 if frame[1] == 126 else 10
                return len(data), len(frame) - head
    return 0, 0


def _print_result(r: dict[str, Any]) -> None:
    print(
        f"  {r['server']}: latency p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} max {r['max_ms']:.1f} ms "
        f"(delivery part p50 {r['delivery_p50_ms']:.1f} p99 {r['delivery_p99_ms']:.1f}); {r['samples']:,} samples; "
        f"{r['messages_per_s']:,.0f} msg/s, {r['mbytes_per_s']:.1f} MB/s, {r['mean_message_bytes']:,.0f} B/msg; "
        f"CPU server {r['server_cpu_pct']:.0f}% ({r['server_us_per_delivery']:.1f} µs/delivery) "
        f"clients {r['client_cpu_pct']:.0f}% redis {r['redis_cpu_pct']:.0f}%; RSS {r['rss_end_mib']:.0f} MiB "
        f"({r['kib_per_conn']:.0f} KiB/conn); {r['open_at_end']}/{r['connected']} open at the end",
        flush=True,
    )
    if "hub_flush_pct" in r:
        print(
            f"    hub: flush (project + diff + fan-out) {r['hub_flush_pct']:.0f}% of a core, "
            f"{r['hub_flushes_per_s']:.1f} flushes/s, {r['hub_us_per_send']:.1f} µs per client send "
            f"({r.get('hub_frame_writes_pct', float('nan')):.0f}% as pre-built frames); "
            f"{r['hub_queued_sends']} sends queued, {r['hub_resyncs']} resyncs; "
            f"intake {r['intake_events_per_s']:,.0f} events/s",
            flush=True,
        )


def summarize(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    base = results.get("bare")
    rows = []
    for kind in SERVERS:
        r = results.get(kind)
        if r is None or "p50_ms" not in r:
            continue
        rows.append(
            [
                kind,
                f"{r['connected']}",
                r["p50_ms"],
                r["p99_ms"],
                r["max_ms"],
                r["messages_per_s"],
                r["mean_message_bytes"],
                r["server_cpu_pct"],
                r["server_us_per_delivery"],
                r["rss_end_mib"],
                r["client_cpu_pct"],
                common.ratio(r["p50_ms"], base["p50_ms"]) if base else "-",
                common.ratio(r["p99_ms"], base["p99_ms"]) if base else "-",
                common.ratio(r["server_us_per_delivery"], base["server_us_per_delivery"]) if base else "-",
            ]
        )
    text = common.table(
        [
            "server", "clients", "p50 ms", "p99 ms", "max ms", "msg/s delivered", "B/msg", "server CPU %",
            "server µs/delivery", "server RSS MiB", "clients CPU %", "p50 vs bare", "p99 vs bare",
            "µs/delivery vs bare",
        ],
        rows,
    )  # fmt: skip
    jp = results.get("jobpulse")
    if jp and jp.get("snapshot_bytes"):
        ticks = 1000 / args.tick_ms
        per_tick = jp["bytes_per_client_s"] / ticks
        per_message = jp["mean_message_bytes"]
        snap = jp["snapshot_bytes"]
        text += (
            f"\n\nB6 bytes on the wire (jobpulse, per client): {per_message:,.0f} B per message, "
            f"{jp['messages_per_client_s']:.1f} messages/s; {per_tick:,.0f} B per {args.tick_ms} ms tick "
            f"vs a full snapshot of {snap:,} B = {100 * per_tick / snap:.1f}% "
            f"(a message is {100 * per_message / snap:.1f}% of a snapshot)"
        )
        if args.deflate:
            small = jp["snapshot_deflated_bytes"]
            text += (
                f"; with the shared deflate the bytes above are as sent, compressed; against a snapshot "
                f"compressed too ({small:,} B) a tick is {100 * per_tick / small:.1f}%"
            )
    return text


def orchestrate(args: argparse.Namespace) -> int:
    common.terminate_on_sigterm()
    facts = common.machine_facts()
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    interrupted = None
    try:
        title = (
            "jobpulse fan-out benchmark (B2/B3/B6)"
            + (" --quick" if args.quick else "")
            + (" --deflate" if args.deflate else "")
        )
        with common.session(args, facts, title) as (children, origin):
            url = args.redis_url
            print(
                f"redis {url} ({origin}, {facts.get('redis_version')}); {args.clients} clients in "
                f"{args.client_procs} processes; source {args.rate} events/s; tick {args.tick_ms} ms; "
                f"window {args.duration} s after {args.warmup} s warmup",
                flush=True,
            )
            for kind in args.servers.split(","):
                try:
                    results[kind] = run_server(children, args, kind)
                except (RuntimeError, TimeoutError, OSError) as exc:
                    print(f"  {kind}: FAILED: {exc}", flush=True)
                    results[kind] = {"server": kind, "error": str(exc)}
                if kind == "jobpulse" and "mean_message_bytes" in results[kind]:
                    args.pad_to = int(results[kind]["mean_message_bytes"])
    except common.HardTimeout as exc:
        interrupted = str(exc)
    print()
    print(summarize(results, args))
    print(
        "\nlatency: client read time - the started_at the source stamped on the job (publish time), over every"
        " job every client saw start running in the window; 'delivery' is the part after the server stamped the"
        " batch. µs/delivery: server CPU / messages delivered. Ratios are against the bare websockets server."
        f" Total {time.monotonic() - started:.0f} s."
    )
    if interrupted:
        print(f"INTERRUPTED: {interrupted}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"facts": facts, "args": vars(args), "results": results}, out, indent=1)
        print(f"results written to {args.json}")
    return 1 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else a private redis-server")
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s): 6 s windows")
    parser.add_argument("--clients", type=int, default=1000, help="websocket clients (default 1000)")
    parser.add_argument("--client-procs", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--rate", type=float, default=500.0, help="source events/s (default 500)")
    parser.add_argument("--job-rate", type=float, default=16.0, help="jobs started per second (default 16)")
    parser.add_argument("--job-seconds", type=float, default=0.5, help="how long a job runs (default 0.5 s)")
    parser.add_argument("--interval", type=float, default=2.0, help="runners' heartbeat interval (default 2 s)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="servers to measure (default all three)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of publishing before the window")
    parser.add_argument("--timeout", type=float, default=None, help="hard timeout of the whole run, s")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--profile-server", default=None, help="run jobpulse under cProfile, stats to this file")
    parser.add_argument(
        "--deflate", action="store_true",
        help="jobpulse with JOBPULSE_WS_DEFLATE=true and clients that offer permessage-deflate (bytes as sent)",
    )  # fmt: skip
    # roles (internal)
    parser.add_argument("--role", default="orchestrator",
                        choices=("orchestrator", "source", "clients", "bare-server", "naive-server"))  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--tag", default="f")
    parser.add_argument("--start-at", type=float, default=0)
    parser.add_argument("--tick", type=float, default=0.025)
    parser.add_argument("--pad-to", type=int, default=600)
    parser.add_argument("--deadline", type=float, default=0)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: every `finally` has run; children got it too and exit quietly
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.role == "source":
        run_source(args)
        return 0
    if args.role == "clients":
        run_clients(args)
        return 0
    if args.role in ("bare-server", "naive-server"):
        run_baseline_server(args)
        return 0
    from server.settings import Settings

    args.tick_ms = Settings().tick_ms  # jobpulse's default tick; the baselines use the same
    args.tick = args.tick_ms / 1000
    args.duration = args.duration or (6.0 if args.quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.timeout = args.timeout or (59.0 if args.quick else 600.0)
    common.raise_nofile()
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
