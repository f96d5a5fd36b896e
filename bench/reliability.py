"""Reliability under load (issue #6): slow and stalled clients, a mass reconnect, and a soak, on the real server.

Every scenario reuses bench/fanout.py's machinery: its source process (a big,
mostly idle fleet whose jobs' `started_at` is the publish-to-client latency
probe), its start-up of the real server (`python -m server.cli serve`:
uvicorn, uvloop, websockets-sansio, default settings unless a scenario says
otherwise), its client processes' latency bookkeeping (`make_on_message` over
`bench/wsclient.py` connections) and its sample files. The client processes
here add what a page keeps to resume (the epoch and the seq of every widget),
and clients that misbehave. All on loopback, one shared clock.

- `--scenario slow`: N clients (default 1,000), of which 5% misbehave: half
  read slowly (a 4 KiB receive buffer, one read a second), half stop reading
  once subscribed (a frozen tab; 4 KiB too, or this machine's kernel would take
  up to 32 MB for it before the server saw anything). The load runs in
  windows A B A B ... A: in A those 5% read normally, in B they misbehave, so
  the machine's drift falls on both alike. Reported: the healthy clients'
  latency in A and in B and the ratio, the server's RSS in each window, how
  long each stalled client took to be closed (against JOBPULSE_STALL_TIMEOUT_S),
  and the hub's resyncs and stalled_closed counters.
- `--scenario reconnect`: N clients connected, then every connection cut at
  once and reopened with its last epoch and seqs (the resume hello), at once or
  after a random 0-500 ms as the page does; then the same after a server
  restart (a new epoch). Reported per case: how many resumed and how many got
  snapshots, time to the welcome and to the first widget frame, and snapshots
  encoded by the hub against the widget versions that existed (the rule: once
  per version, not per client).
- `--scenario soak`: N clients and a sustained source rate for `--minutes`;
  the server's RSS, open file descriptors (/proc/<pid>/fd) and asyncio tasks
  (`/api/stats`) sampled every few seconds, with intake and client latency;
  passes when RSS after warm-up stays within 10% and tasks and fds do not grow.

Usage: python -m bench.reliability --scenario slow|reconnect|soak [--quick] [--json FILE] (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from array import array
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/<script>.py`: make `bench` and `server` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, fanout, wsclient

WIDGETS = fanout.WIDGETS
KINDS = ("healthy", "slow", "stalled")
TCP_ESTABLISHED = 1
# The head of every widget frame, as server/protocol.py's widget_frame writes it: a page's seq bookkeeping without
# decoding the whole batch (the clients share 2 cores with the server under test).
FRAME_HEAD = re.compile(rb'\{"type":"(patch|snapshot)","w":"([^"]+)","seq":(\d+),')


def hello(epoch: str | None = None, seqs: dict[str, int] | None = None) -> bytes:
    """The page's first frame: its widgets, and what it holds from an earlier connection (docs/protocol.md 3.4)."""
    return json.dumps(
        {"type": "hello", "v": 1, "widgets": list(WIDGETS), "epoch": epoch, "resume": seqs or {}}
    ).encode()


# -- client role ------------------------------------------------------------------------------------


def _tcp_table() -> dict[tuple[int, int], tuple[int, int]]:
    """(local port, remote port) -> (TCP state, send queue bytes) of every IPv4 TCP socket (/proc/net/tcp)."""
    table = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, state, tx = parts[1], parts[2], parts[3], parts[4].split(":")[0]
            table[(int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))] = (int(state, 16), int(tx, 16))
    return table


class ProbeConn:
    """What one page keeps of its connection, and how it reads: normally, slowly, or not at all after subscribing."""

    def __init__(self, kind: str, epoch: str | None = None, seqs: dict[str, int] | None = None) -> None:
        self.kind = kind
        self.epoch = epoch
        self.seqs: dict[str, int] = dict(seqs or {})
        self.conn: Any = None
        self.gaps = 0  # a patch whose seq is not held + 1: a lost frame (must stay 0)
        self.snapshot_frames = 0
        self.resyncs = 0  # batches of snapshots after the first (a slow client's resync)
        self.rx_bytes = 0
        self.t_start = time.time()  # when it began to connect
        self.t_connected: float | None = None  # TCP connected
        self.t_upgraded: float | None = None  # the 101 read
        self.t_welcome: float | None = None
        self.t_batch: float | None = None
        self.first_snapshot: bool | None = None  # did the first batch carry a snapshot (vs resumed)
        self.batch_seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stop_at: float | None = None  # a stalled client stopped reading
        self.closed_at: float | None = None
        self.server_port = 0
        self.local_port = 0
        self.tx_samples: list[tuple[float, int]] = []  # (time, bytes the server's kernel holds for it)

    def on_message(self, payload: bytes, at: float, decode: bool) -> None:
        self.rx_bytes += len(payload)
        head = payload[:24]
        if b'"batch"' in head:
            snapshot = b'{"type":"snapshot"' in payload
            if decode:
                for kind, raw_name, raw_seq in FRAME_HEAD.findall(payload):
                    name, seq = raw_name.decode(), int(raw_seq)
                    if kind == b"snapshot":
                        self.snapshot_frames += 1
                    elif name in self.seqs and seq != self.seqs[name] + 1:
                        self.gaps += 1
                    self.seqs[name] = seq
            if self.t_batch is None:
                self.t_batch = at
                self.first_snapshot = snapshot
                if not self.batch_seen.done():
                    self.batch_seen.set_result(None)
                if self.kind == "stalled":
                    # A frozen tab: subscribed, then reads nothing more. The socket stays open.
                    self.conn.transport.pause_reading()
                    self.stop_at = at
            elif snapshot:
                self.resyncs += 1
        elif b'"type":"welcome"' in payload:
            import orjson

            self.epoch = orjson.loads(payload)["epoch"]
            self.t_welcome = at

    def tcp_state(self) -> int:
        """The kernel's TCP state of this side (1 = established): a reset reaches it even while it reads nothing."""
        sock = self.conn.transport.get_extra_info("socket")
        if sock is None:
            return 0
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return 0
        state: int = struct.unpack("B", info[:1])[0]
        return state


class Conn(wsclient.Connection):
    """A benchmark connection that reports to its `ProbeConn` and, for a slow reader, reads once per `read_every`."""

    def __init__(self, probe: ProbeConn, read_every: float, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe = probe
        self.read_every = read_every
        probe.conn = self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.probe.t_connected = time.time()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        upgraded = self.upgraded
        super().data_received(data)
        if not upgraded and self.upgraded:
            self.probe.t_upgraded = time.time()
        if self.probe.kind == "slow" and self.upgraded and self.transport is not None:
            # A slow reader: one read (at most its small receive buffer) every `read_every` seconds.
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(self.read_every, self._resume)

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.probe.closed_at is None:
            self.probe.closed_at = time.time()


async def clients_main(args: argparse.Namespace) -> None:
    from bench import wsclient

    loop = asyncio.get_running_loop()
    stats = fanout.ClientStats()
    # The latency probe decodes most batches; a reconnect run measures connects, not latency, and leaves the CPU
    # of the 2 cores to the server rather than to its load generator.
    latency_on_message = fanout.make_on_message(stats) if not args.track_seqs else None
    decode = args.track_seqs
    probes: list[ProbeConn] = []
    failures: list[str] = []

    def on_message(conn: Any, payload: bytes, at: float) -> None:
        if latency_on_message is not None:
            latency_on_message(conn, payload, at)
        conn.probe.on_message(payload, at, decode)

    async def open_one(probe: ProbeConn, gate: asyncio.Semaphore | None, within: float = 20.0) -> bool:
        make = functools.partial(Conn, probe, args.slow_read_every)
        async with gate or contextlib.nullcontext():
            try:
                async with asyncio.timeout(within):
                    conn = await wsclient.connect(
                        args.host, args.port, "/ws", hello(probe.epoch, probe.seqs), on_message,
                        open_timeout=within, rcvbuf=args.slow_rcvbuf if probe.kind != "healthy" else 0, make=make,
                    )  # fmt: skip
                    probe.server_port = args.port
                    assert conn.transport is not None
                    probe.local_port = conn.transport.get_extra_info("sockname")[1]
                    await asyncio.wait((probe.batch_seen, conn.closed), return_when=asyncio.FIRST_COMPLETED)
                    if probe.batch_seen.done():
                        return True
                    failures.append("closed before its first batch")
                    return False
            except (OSError, TimeoutError) as exc:
                failures.append(repr(exc)[:200])
                return False

    async def open_many(counts: dict[str, int]) -> dict[str, Any]:
        gate = asyncio.Semaphore(args.connect_concurrency)
        fresh = [ProbeConn(kind) for kind, n in counts.items() for _ in range(n)]
        oks = await asyncio.gather(*(open_one(p, gate) for p in fresh))
        probes.extend(p for p, ok in zip(fresh, oks, strict=True) if ok)
        return {"opened": sum(oks), "failed": len(fresh) - sum(oks), "errors": failures[-3:], "at": time.time()}

    async def watch_stalled() -> None:
        # Every 0.5 s: has the server closed it yet (its RST reaches a socket that reads nothing only in the
        # kernel), and how many bytes does the server's kernel hold for it (what it sent that nobody read).
        while True:
            await asyncio.sleep(0.5)
            watched = [p for p in probes if p.kind == "stalled" and p.stop_at is not None and p.closed_at is None]
            if not watched:
                continue
            now = time.time()
            table = _tcp_table()
            for p in watched:
                server_side = table.get((p.server_port, p.local_port))
                # Closed: the server's side is gone or closing, or a reset reached this side.
                if server_side is None or server_side[0] != TCP_ESTABLISHED or p.tcp_state() != TCP_ESTABLISHED:
                    p.closed_at = now
                    continue
                p.tx_samples.append((now, server_side[1]))

    def outcome(kind: str) -> dict[str, Any]:
        mine = [p for p in probes if p.kind == kind]
        result: dict[str, Any] = {"count": len(mine), "closed": sum(p.closed_at is not None for p in mine)}
        if kind == "stalled":
            rows = []
            for p in mine:
                tx_max = max((tx for _, tx in p.tx_samples), default=0)
                # When the server's kernel buffer stopped growing: the socket accepts nothing from then on.
                full_at = next((t for t, tx in p.tx_samples if tx >= 0.98 * tx_max), None) if tx_max else None
                rows.append(
                    {
                        "stop_to_close_s": None if p.closed_at is None or p.stop_at is None
                        else p.closed_at - p.stop_at,
                        "stop_to_full_s": None if full_at is None or p.stop_at is None else full_at - p.stop_at,
                        "kernel_kib": tx_max / 1024,
                    }
                )  # fmt: skip
            result["conns"] = rows
        else:
            result["resyncs"] = sum(p.resyncs for p in mine)
            result["rx_bytes"] = sum(p.rx_bytes for p in mine)
        return result

    async def reconnect(at: float, within: float, spread: float) -> dict[str, Any]:
        """At `at`, cut every connection still open, and reopen each with its epoch and seqs: all at once
        (`spread` 0), or each after a random 0..`spread` s, as a page's full-jitter backoff does."""
        await asyncio.sleep(max(0.0, at - time.time()))
        old = list(probes)
        for p in old:
            if p.conn.transport is not None and not p.conn.transport.is_closing():
                p.conn.transport.abort()
        fresh = [ProbeConn(p.kind, p.epoch, p.seqs) for p in old]
        rng = random.Random(os.getpid())

        async def again(p: ProbeConn) -> bool:
            await asyncio.sleep(rng.uniform(0, spread))
            p.t_start = time.time()
            return await open_one(p, None, within)

        oks = await asyncio.gather(*(again(p) for p in fresh))
        probes[:] = [p for p, ok in zip(fresh, oks, strict=True) if ok]
        done = [p for p in probes if p.t_batch is not None]
        # Times are from each client's own attempt (all the same instant when `spread` is 0).
        return {
            "reconnected": sum(oks),
            "failed": len(fresh) - sum(oks),
            "errors": failures[-3:],
            "resumed": sum(1 for p in done if not p.first_snapshot),
            "snapshot": sum(1 for p in done if p.first_snapshot),
            "snapshot_frames": sum(p.snapshot_frames for p in probes),
            "gaps": sum(p.gaps for p in probes),
            "connected_s": [p.t_connected - p.t_start for p in probes if p.t_connected is not None],
            "upgraded_s": [p.t_upgraded - p.t_start for p in probes if p.t_upgraded is not None],
            "welcome_s": [p.t_welcome - p.t_start for p in probes if p.t_welcome is not None],
            "first_batch_s": [p.t_batch - p.t_start for p in done if p.t_batch is not None],
        }

    if args.count:
        opened = await open_many({args.kind: args.count})
        common.say({"ready": opened["opened"], "failed": opened["failed"], "errors": opened["errors"]})
    else:
        common.say({"ready": 0, "failed": 0, "errors": []})
    watcher = asyncio.create_task(watch_stalled())
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    last_sample = time.time()
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "measure":
            stats.latency, stats.delivery, stats.messages, stats.bytes = array("d"), array("d"), 0, 0
            stats.start, stats.end = command["start"], command["end"]
            await asyncio.sleep(max(0.0, stats.end - time.time()) + 0.3)
            fanout._write_samples(command["out"], stats)
            open_count = sum(1 for p in probes if not p.conn.closed.done())
            common.say({"samples": len(stats.latency), "messages": stats.messages, "bytes": stats.bytes,
                        "open": open_count})  # fmt: skip
        elif cmd == "sample":
            # Since the last sample: the latency and delivery percentiles, messages and bytes (the soak's series).
            now = time.time()
            if stats.start == float("inf"):
                stats.start, stats.end = now, float("inf")
            lat, dlv = sorted(stats.latency), sorted(stats.delivery)
            common.say(
                {
                    "samples": len(lat),
                    "p50_ms": common.percentile(lat, 50) * 1000 if lat else None,
                    "p99_ms": common.percentile(lat, 99) * 1000 if lat else None,
                    "delivery_p99_ms": common.percentile(dlv, 99) * 1000 if dlv else None,
                    "messages": stats.messages,
                    "bytes": stats.bytes,
                    "seconds": now - last_sample,
                    "open": sum(1 for p in probes if not p.conn.closed.done()),
                }
            )
            stats.latency, stats.delivery, stats.messages, stats.bytes = array("d"), array("d"), 0, 0
            last_sample = now
        elif cmd == "open":
            common.say(await open_many(command["counts"]))
        elif cmd == "status":
            common.say({
                "stalled_open": sum(1 for p in probes if p.kind == "stalled" and p.closed_at is None),
                "slow_waiting": sum(1 for p in probes if p.kind == "slow" and p.closed_at is None and not p.resyncs),
            })  # fmt: skip
        elif cmd == "drop":
            report = {kind: outcome(kind) for kind in KINDS if any(p.kind == kind for p in probes)}
            for p in probes:
                p.conn.close()
            probes.clear()
            await asyncio.sleep(0.2)
            common.say(report)
        elif cmd == "reconnect":
            common.say(await reconnect(command["at"], command["within"], command["spread"]))
        elif cmd == "quit":
            break
    watcher.cancel()
    for p in probes:
        p.conn.close()
    await asyncio.sleep(0.2)


def run_clients(args: argparse.Namespace) -> None:
    import uvloop

    common.watch_parent(args.deadline)
    common.raise_nofile()
    uvloop.run(clients_main(args))


# -- orchestrator helpers ---------------------------------------------------------------------------


def proc_sample(pid: int) -> dict[str, Any]:
    """The server process's RSS (MiB), threads and open file descriptors, from /proc."""
    rss_kib = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return {"rss_mib": rss_kib / 1024, "threads": threads, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def stats_of(port: int, within: float = 20.0, workers: int = 1) -> dict[str, Any]:
    """GET /api/stats, tried again for up to `within` seconds (a server busy with 1,000 reconnects answers late).

    With several worker processes on the port (JOBPULSE_WORKERS) each request reaches one of them: ask until every
    worker (each its own epoch) has answered, and add their hub counters up.
    """
    give_up = time.monotonic() + within
    seen: dict[str, dict[str, Any]] = {}
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=10) as response:
                value: dict[str, Any] = json.loads(response.read())
            seen[value["epoch"]] = value
            if len(seen) >= workers:
                break
        except (OSError, ValueError) as exc:
            if time.monotonic() > give_up:
                raise RuntimeError(f"GET /api/stats failed: {exc!r}") from exc
            time.sleep(0.2)
        if time.monotonic() > give_up:
            raise RuntimeError(f"GET /api/stats: {len(seen)} of {workers} workers answered")
    if workers == 1:
        return value
    hub: dict[str, Any] = {}
    for answer in seen.values():
        for name, n in answer["hub"].items():
            if isinstance(n, int | float) and not isinstance(n, bool):
                hub[name] = hub.get(name, 0) + n
    return {**value, "hub": hub, "epoch": ",".join(sorted(seen))}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its descendants (uvicorn's workers) have used (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return total
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            continue
        for child in children:
            with contextlib.suppress(OSError):
                total += cpu_seconds(child)
    return total


def hub_delta(before: dict[str, Any], after: dict[str, Any], *names: str) -> dict[str, int]:
    return {name: after["hub"][name] - before["hub"][name] for name in names}


def pin(proc: Any, cpus: str | None) -> None:
    """Keep a process and its children (the server's workers) on `cpus` ("0", "1-3", "0,2"); None: anywhere."""
    if not cpus:
        return
    import psutil

    chosen = sorted({c for part in cpus.split(",") for c in _cpu_range(part)})
    root = psutil.Process(proc.pid)
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            p.cpu_affinity(chosen)


def _cpu_range(part: str) -> range:
    first, _, last = part.partition("-")
    return range(int(first), int(last or first) + 1)


class Run:
    """One scenario's server and client processes; `close()` asks the clients to quit and stops everything."""

    def __init__(self, children: common.Children, args: argparse.Namespace, env: dict[str, str] | None = None):
        from server.redis_server import free_port

        self.children = children
        self.args = args
        self.env = {**(env or {}), **dict(kv.split("=", 1) for kv in args.server_env)}
        self.workers = int(self.env.get("JOBPULSE_WORKERS", "1"))
        self.prefix = common.unique_prefix(f"rel-{args.scenario}")
        self.port = free_port()
        self.server = fanout.start_server(children, args, "jobpulse", self.prefix, self.port, self.env)
        pin(self.server, args.server_cpus)
        self.clients: list[Any] = []
        self.source: Any = None

    def restart_server(self) -> float:
        """Stop the server (uvicorn closes every socket with 1012) and start a new one on the same port."""
        started = time.monotonic()
        self.stop_server()
        self.server = fanout.start_server(self.children, self.args, "jobpulse", self.prefix, self.port, self.env)
        pin(self.server, self.args.server_cpus)
        return time.monotonic() - started

    def stop_server(self) -> None:
        # uvicorn re-raises SIGTERM after its shutdown; SIGINT lets cProfile write its file.
        sig = signal.SIGINT if self.args.profile_server else signal.SIGTERM
        self.children.stop(self.server, timeout=30, sig=sig)

    def start_clients(self, total: int, nprocs: int, kind: str = "healthy", track: bool = False) -> list[Any]:
        extra = ["--kind", kind, "--slow-read-every", str(self.args.slow_read_every),
                 "--slow-rcvbuf", str(self.args.slow_rcvbuf), *(["--track-seqs"] if track else [])]  # fmt: skip
        procs = fanout.start_clients(self.children, self.args, self.port, total, nprocs, "bench.reliability", extra)
        for proc in procs:
            pin(proc, self.args.client_cpus)
        self.clients.extend(procs)
        return procs

    def start_source(self, duration: float) -> float:
        start_at = time.time() + 0.5
        self.source = fanout.start_source(self.children, self.args, self.prefix, start_at, duration, "rel")
        pin(self.source, self.args.client_cpus)
        return start_at

    def close(self) -> None:
        for proc in self.clients:
            with contextlib.suppress(OSError, ValueError):
                common.tell(proc, {"cmd": "quit"})
        grace = time.monotonic() + 3
        for proc in self.clients:
            with contextlib.suppress(Exception):
                proc.wait(timeout=max(0.0, grace - time.monotonic()))
            self.children.stop(proc)
        if self.source is not None:
            self.children.stop(self.source)
        self.stop_server()
        common.delete_prefix(self.args.redis_url, self.prefix)


def measure_window(run: Run, procs: list[Any], seconds: float, on_tick: Any = None) -> dict[str, Any]:
    """Latency of every job the clients in `procs` see start, over a window of `seconds` starting now."""
    window_start = time.time() + 0.2
    window_end = window_start + seconds
    tmp = tempfile.mkdtemp(prefix="jpbench-rel-")
    outs = [os.path.join(tmp, f"c{i}.bin") for i in range(len(procs))]
    for proc, out in zip(procs, outs, strict=True):
        common.tell(proc, {"cmd": "measure", "start": window_start, "end": window_end, "out": out})
    while time.time() < window_end:
        if on_tick is not None:
            on_tick()
        time.sleep(min(0.5, max(0.0, window_end - time.time())))
    reports = [common.read_json(p.stdout, 30, "clients report") for p in procs]
    latency, delivery = fanout.read_samples(reports, outs)
    os.rmdir(tmp)
    return {
        "samples": len(latency),
        "latency": latency,
        "delivery": delivery,
        "open": sum(r["open"] for r in reports),
        "messages": sum(r["messages"] for r in reports),
        "bytes": sum(r["bytes"] for r in reports),
    }


def pct(values: list[float], q: float) -> float | None:
    return common.percentile(values, q) * 1000 if values else None


# -- scenario: slow and stalled clients ----------------------------------------------------------------


def scenario_slow(children: common.Children, args: argparse.Namespace) -> dict[str, Any]:
    from server.settings import Settings

    bad = max(2, round(args.clients * args.slow_share))
    n_stalled = bad // 2
    n_slow = bad - n_stalled
    n_healthy = args.clients - bad
    env = {"JOBPULSE_STALL_TIMEOUT_S": str(args.stall_timeout)} if args.stall_timeout else {}
    stall_timeout = args.stall_timeout or Settings().stall_timeout_s
    print(
        f"slow: {n_healthy} healthy clients + {bad} others ({n_slow} slow readers: SO_RCVBUF {args.slow_rcvbuf} B, "
        f"a read every {args.slow_read_every} s; {n_stalled} that stop reading once subscribed); "
        f"{args.pairs} x (A: the {bad} read normally, B: they misbehave), {args.window} s windows; "
        f"stall timeout {stall_timeout} s",
        flush=True,
    )
    run = Run(children, args, env)
    result: dict[str, Any] = {"scenario": "slow", "healthy": n_healthy, "slow": n_slow, "stalled": n_stalled,
                              "stall_timeout_s": stall_timeout, "windows": []}  # fmt: skip
    try:
        rss_idle = proc_sample(run.server.pid)["rss_mib"]
        healthy = run.start_clients(n_healthy, args.client_procs)
        ready = [common.read_json(p.stdout, 90, "clients connecting") for p in healthy]
        result["connected"] = sum(r["ready"] for r in ready)
        extra = run.start_clients(0, 1, track=False)[0]
        common.read_json(extra.stdout, 30, "extra clients process")
        # A B A B ... A: every B window has an A window on each side, so a drift of the machine or of the
        # server's memory (its job table and runner samples fill over minutes) falls on A and B alike.
        phases = ["A", "B"] * args.pairs + ["A"]
        run.start_source(len(phases) * (args.window + 5) + args.pairs * args.stall_wait + 60)
        time.sleep(0.5 + args.warmup)
        for index, phase in enumerate(phases):
            counts = {"healthy": bad} if phase == "A" else {"slow": n_slow, "stalled": n_stalled}
            common.tell(extra, {"cmd": "open", "counts": counts})
            opened = common.read_json(extra.stdout, 90, "opening the others")
            time.sleep(args.settle)
            stats0 = stats_of(run.port, workers=run.workers)
            closed_at: list[float] = []  # when the server's stalled_closed counter reached each new close
            rss: list[float] = []
            started = time.time()

            def tick(
                phase: str = phase,
                stats0: dict[str, Any] = stats0,
                closed_at: list[float] = closed_at,
                rss: list[float] = rss,
            ) -> None:
                rss.append(proc_sample(run.server.pid)["rss_mib"])
                if phase == "B":
                    hub_now = stats_of(run.port, workers=run.workers)["hub"]
                    now = hub_now["stalled_closed"] - stats0["hub"]["stalled_closed"]
                    closed_at.extend([time.time()] * (now - len(closed_at)))

            window = measure_window(run, healthy, args.window, tick)
            if phase == "B":
                # Keep the stalled clients until every one of them is closed (by the hub's stall rule, or anything
                # else that closes a socket nobody reads), and the slow readers until each has had its backlog
                # replaced by a snapshot (at 45% of the data rate, its buffers fill in tens of seconds), or
                # stall_wait is up: both rules are then seen to the end.
                give_up = time.time() + args.stall_wait
                while time.time() < give_up:
                    tick()
                    common.tell(extra, {"cmd": "status"})
                    status = common.read_json(extra.stdout, 30, "status")
                    if status["stalled_open"] == 0 and status["slow_waiting"] == 0:
                        break
                    time.sleep(0.5)
            stats1 = stats_of(run.port, workers=run.workers)
            common.tell(extra, {"cmd": "drop"})
            others = common.read_json(extra.stdout, 30, "dropping the others")
            lat = window["latency"]
            row = {
                "phase": phase,
                "samples": window["samples"],
                "p50_ms": pct(lat, 50),
                "p99_ms": pct(lat, 99),
                "max_ms": lat[-1] * 1000 if lat else None,
                "healthy_open": window["open"],
                "bytes_per_client_s": window["bytes"] / max(1, n_healthy) / args.window,
                "others_opened": opened["opened"],
                "rss_max_mib": max(rss, default=None),
                "mid_t": (started + time.time()) / 2,
                "hub": hub_delta(stats0, stats1, "resyncs", "stalled_closed", "queued_sends", "snapshots_encoded"),
                "others": others,
                "latency": lat,
            }
            if phase == "B":
                row["server_closed_all_s"] = (closed_at[-1] - opened["at"]) if len(closed_at) >= n_stalled else None
            result["windows"].append(row)
            _print_slow_window(index, row, n_stalled)
        time.sleep(3)
        result["rss_mib"] = {"idle": rss_idle, "after": proc_sample(run.server.pid)["rss_mib"]}
        result["hub"] = stats_of(run.port, workers=run.workers)["hub"]
    finally:
        run.close()
    return summarize_slow(result, args)


def _print_slow_window(index: int, row: dict[str, Any], n_stalled: int) -> None:
    others = row["others"]
    text = (
        f"  {index + 1:2d} {row['phase']}: healthy p50 {common.fmt(row['p50_ms'])} p99 {common.fmt(row['p99_ms'])} "
        f"max {common.fmt(row['max_ms'])} ms ({row['samples']:,} samples, {row['healthy_open']} open); "
        f"server RSS max {common.fmt(row['rss_max_mib'])} MiB; hub {row['hub']}"
    )
    if row["phase"] == "B":
        stalled = others.get("stalled", {})
        closes = [c["stop_to_close_s"] for c in stalled.get("conns", []) if c["stop_to_close_s"] is not None]
        slow = others.get("slow", {})
        text += (
            f"\n       stalled: {stalled.get('closed', 0)}/{n_stalled} closed, stop->close max "
            f"{common.fmt(max(closes, default=None))} s; server's counter reached them all after "
            f"{common.fmt(row.get('server_closed_all_s'))} s; slow readers: {slow.get('resyncs', 0)} resync snapshots, "
            f"{slow.get('closed', 0)} closed"
        )
    print(text, flush=True)


def summarize_slow(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from server.settings import Settings
    from server.streams.hubcore import HubLimits

    rows = result["windows"]
    pools: dict[str, list[float]] = {"A": [], "B": []}
    for row in rows:
        pools[row["phase"]].extend(row.pop("latency"))
    for phase in pools:
        pools[phase].sort()
    a, b = pools["A"], pools["B"]
    result["p50_a_ms"], result["p50_b_ms"] = pct(a, 50), pct(b, 50)
    result["p99_a_ms"], result["p99_b_ms"] = pct(a, 99), pct(b, 99)
    result["p99_ratio"] = result["p99_b_ms"] / result["p99_a_ms"] if a and b else None
    result["p50_ratio"] = result["p50_b_ms"] / result["p50_a_ms"] if a and b else None
    # Each B window against the A windows on either side of it: p99 ratio, and RSS against the A windows' RSS
    # interpolated to B's time (the server's memory grows slowly by design while its job table fills).
    bracket_ratios, rss_excess = [], []
    for i, row in enumerate(rows):
        if row["phase"] != "B" or i == 0 or i + 1 >= len(rows):
            continue
        before, after = rows[i - 1], rows[i + 1]
        if row["p99_ms"] and before["p99_ms"] and after["p99_ms"]:
            bracket_ratios.append(row["p99_ms"] / ((before["p99_ms"] + after["p99_ms"]) / 2))
        if row["rss_max_mib"] and before["rss_max_mib"] and after["rss_max_mib"]:
            share = (row["mid_t"] - before["mid_t"]) / max(1e-9, after["mid_t"] - before["mid_t"])
            expected = before["rss_max_mib"] + share * (after["rss_max_mib"] - before["rss_max_mib"])
            rss_excess.append(row["rss_max_mib"] - expected)
    result["p99_bracket_ratios"] = bracket_ratios
    result["rss_excess_mib"] = rss_excess
    rss = result.get("rss_mib", {})
    rss["before"] = rows[0]["rss_max_mib"] if rows else None
    rss["during"] = max((r["rss_max_mib"] for r in rows if r["phase"] == "B" and r["rss_max_mib"]), default=None)
    rss["a_max"] = max((r["rss_max_mib"] for r in rows if r["phase"] == "A" and r["rss_max_mib"]), default=None)
    stalled = [c for row in rows if row["phase"] == "B" for c in row["others"].get("stalled", {}).get("conns", [])]
    closes = [c["stop_to_close_s"] for c in stalled]
    fills = [c["stop_to_full_s"] for c in stalled if c["stop_to_full_s"] is not None]
    result["stalled_total"] = len(stalled)
    result["stalled_closed"] = sum(1 for c in closes if c is not None)
    result["stop_to_close_max_s"] = max((c for c in closes if c is not None), default=None)
    result["stop_to_full_max_s"] = max(fills, default=None)
    result["kernel_kib_max"] = max((c["kernel_kib"] for c in stalled), default=None)
    rates = [r["bytes_per_client_s"] for r in rows if r.get("bytes_per_client_s")]
    result["bytes_per_client_s"] = sum(rates) / len(rates) if rates else None
    # What the documented rule allows from the moment a client stops reading, whatever its buffers hold: the hub's
    # stall bound (docs/protocol.md 3.5: its unanswered ping), plus this script's 0.5 s sampling of the close and
    # 2 s for a loaded 2-core machine's scheduling.
    bound = HubLimits(stall_timeout=result["stall_timeout_s"], beat=Settings().beat_s).stall_bound
    result["stall_bound_s"] = bound
    result["stall_allowance_s"] = bound + 0.5 + 2.0
    result["slow_resyncs"] = sum(row["others"].get("slow", {}).get("resyncs", 0) for row in rows)
    result["slow_closed"] = sum(row["others"].get("slow", {}).get("closed", 0) for row in rows)
    result["slow_total"] = sum(row["others"].get("slow", {}).get("count", 0) for row in rows)
    result["hub_resyncs"] = sum(row["hub"]["resyncs"] for row in rows if row["phase"] == "B")
    result["hub_stalled_closed"] = sum(row["hub"]["stalled_closed"] for row in rows if row["phase"] == "B")
    healthy_open_ok = all(row["healthy_open"] == result["healthy"] for row in rows)
    result["checks"] = {
        "p99_ratio_le_1.1": result["p99_ratio"] is not None and result["p99_ratio"] <= 1.1,
        "every_stalled_closed": result["stalled_closed"] == result["stalled_total"] > 0,
        "stalled_closed_by_the_hub": result["hub_stalled_closed"] >= result["stalled_total"] > 0,
        "stall_close_within_allowance": result["stop_to_close_max_s"] is not None
        and result["stalled_closed"] == result["stalled_total"]
        and result["stop_to_close_max_s"] <= result["stall_allowance_s"],
        # Every slow or stalled client's outbox overflowed at least once and was replaced by a snapshot (it
        # reaches a slow reader after what its socket buffers hold); no slow reader was closed.
        "others_resynced_slow_readers_kept": result["hub_resyncs"] >= result["slow_total"] + result["stalled_total"]
        and result["slow_closed"] == 0,
        "healthy_stayed_open": healthy_open_ok,
        "rss_b_within_10pct_of_a": bool(rss_excess and rss.get("before")) and max(rss_excess) <= 0.1 * rss["before"],
    }
    table_rows = [
        ["A (all read)", len(a), result["p50_a_ms"], result["p99_a_ms"], "1.00x", "1.00x"],
        ["B (5% slow or stalled)", len(b), result["p50_b_ms"], result["p99_b_ms"],
         common.ratio(result["p50_b_ms"], result["p50_a_ms"]), common.ratio(result["p99_b_ms"], result["p99_a_ms"])],
    ]  # fmt: skip
    print()
    print(common.table(["healthy clients", "samples", "p50 ms", "p99 ms", "p50 vs A", "p99 vs A"], table_rows))
    print(
        f"\np99 of each B against its A neighbours: {', '.join(f'{r:.2f}' for r in bracket_ratios)}\n"
        f"server RSS idle {common.fmt(rss.get('idle'))}, first A {common.fmt(rss.get('before'))}, max in A "
        f"{common.fmt(rss.get('a_max'))}, max in B {common.fmt(rss.get('during'))}, after "
        f"{common.fmt(rss.get('after'))} MiB; B above its A neighbours by "
        f"{', '.join(f'{x:+.1f}' for x in rss_excess)} MiB\n"
        f"stalled clients: {result['stalled_closed']}/{result['stalled_total']} closed; stop reading -> closed max "
        f"{common.fmt(result['stop_to_close_max_s'])} s (stop -> server's kernel buffer full max "
        f"{common.fmt(result['stop_to_full_max_s'])} s, holding up to {common.fmt(result['kernel_kib_max'])} KiB); "
        f"allowance {common.fmt(result['stall_allowance_s'])} s (the hub's bound {common.fmt(result['stall_bound_s'])}"
        f" s with JOBPULSE_STALL_TIMEOUT_S={result['stall_timeout_s']}), at "
        f"{common.fmt(result['bytes_per_client_s'])} B/s per client\n"
        f"hub in B windows: {result['hub_resyncs']} resyncs, {result['hub_stalled_closed']} stalled closed; slow "
        f"readers got {result['slow_resyncs']} resync snapshots, {result['slow_closed']} of them were closed\n"
        f"checks: {result['checks']}",
        flush=True,
    )
    return result


# -- scenario: mass reconnect -----------------------------------------------------------------------


RECONNECT_CASES = (
    # (name, server restarted first, jitter): at once, then as web/js/socket.js does it (full jitter, 0-500 ms).
    ("drop", False, 0.0),
    ("drop_jitter", False, 0.5),
    ("restart", True, 0.0),
    ("restart_jitter", True, 0.5),
)


def scenario_reconnect(children: common.Children, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"reconnect: {args.clients} clients in {args.client_procs} processes; source {args.rate} events/s; each case "
        "cuts every connection (drop) or restarts the server (restart), then every client reconnects with its epoch "
        "and seqs at once, or after a random 0-500 ms (_jitter, as the page does)",
        flush=True,
    )
    run = Run(children, args)
    if run.workers > 1:
        print(f"server: {run.workers} worker processes on one port (JOBPULSE_WORKERS); CPU and hub counts are summed")
    result: dict[str, Any] = {"scenario": "reconnect", "clients": args.clients, "cases": {}, "workers": run.workers}
    try:
        procs = run.start_clients(args.clients, args.client_procs, track=True)
        ready = [common.read_json(p.stdout, 90, "clients connecting") for p in procs]
        result["connected"] = sum(r["ready"] for r in ready)
        run.start_source(3600)
        time.sleep(0.5 + args.warmup)
        runs = [
            (case if args.repeat == 1 else f"{case}#{i + 1}", restart, spread)
            for case, restart, spread in RECONNECT_CASES
            if case in args.cases.split(",")
            for i in range(args.repeat)
        ]
        for case, restart, spread in runs:
            restart_s = run.restart_server() if restart else None
            before = stats_of(run.port, workers=run.workers)
            at = time.time() + 0.5
            for proc in procs:
                common.tell(proc, {"cmd": "reconnect", "at": at, "within": args.reconnect_timeout, "spread": spread})
            time.sleep(max(0.0, at - time.time()))
            cpu0 = cpu_seconds(run.server.pid), sum(cpu_seconds(p.pid) for p in procs)
            reports = [common.read_json(p.stdout, args.reconnect_timeout + 30, "reconnect") for p in procs]
            wall = time.time() - at
            cpu1 = cpu_seconds(run.server.pid), sum(cpu_seconds(p.pid) for p in procs)
            after = stats_of(run.port, workers=run.workers)

            def pooled(key: str, reports: list[dict[str, Any]] = reports) -> list[float]:
                return sorted(x for r in reports for x in r[key])

            connected, upgraded = pooled("connected_s"), pooled("upgraded_s")
            welcome, first = pooled("welcome_s"), pooled("first_batch_s")
            delta = hub_delta(before, after, "snapshots_encoded", "patches", "resyncs")
            row = {
                "case": case,
                "spread_s": spread,
                "reconnected": sum(r["reconnected"] for r in reports),
                "failed": sum(r["failed"] for r in reports),
                "errors": [e for r in reports for e in r["errors"]][:3],
                "resumed": sum(r["resumed"] for r in reports),
                "snapshot": sum(r["snapshot"] for r in reports),
                "gaps": sum(r["gaps"] for r in reports),
                "snapshot_frames": sum(r["snapshot_frames"] for r in reports),
                "connected_p50_ms": pct(connected, 50),
                "connected_p99_ms": pct(connected, 99),
                "upgraded_p50_ms": pct(upgraded, 50),
                "upgraded_p99_ms": pct(upgraded, 99),
                "welcome_p50_ms": pct(welcome, 50),
                "welcome_p99_ms": pct(welcome, 99),
                "first_frame_p50_ms": pct(first, 50),
                "first_frame_p99_ms": pct(first, 99),
                "first_frame_max_ms": first[-1] * 1000 if first else None,
                "snapshots_encoded": delta["snapshots_encoded"],
                # Every version a widget had meanwhile: the one it had, plus one per patch made.
                "widget_versions": delta["patches"] + len(WIDGETS),
                "resyncs": delta["resyncs"],
                "storm_s": wall,
                "server_cpu_pct": 100 * (cpu1[0] - cpu0[0]) / wall,
                "clients_cpu_pct": 100 * (cpu1[1] - cpu0[1]) / wall,
                "epoch": after["epoch"],
                "restart_s": restart_s,
                "load_avg": os.getloadavg()[0],
            }
            result["cases"][case] = row
            print(
                f"  {case}: {row['reconnected']}/{args.clients} back ({row['failed']} failed), {row['resumed']} "
                f"resumed, {row['snapshot']} got snapshots; TCP connected p50 {common.fmt(row['connected_p50_ms'])} "
                f"p99 {common.fmt(row['connected_p99_ms'])} ms; upgraded p50 {common.fmt(row['upgraded_p50_ms'])} p99 "
                f"{common.fmt(row['upgraded_p99_ms'])} ms; first widget frame p50 "
                f"{common.fmt(row['first_frame_p50_ms'])} p99 {common.fmt(row['first_frame_p99_ms'])} max "
                f"{common.fmt(row['first_frame_max_ms'])} ms; snapshots encoded {row['snapshots_encoded']} for "
                f"{row['snapshot_frames']:,} snapshot frames received ({row['widget_versions']} widget versions "
                f"existed); seq gaps {row['gaps']}; hub resyncs {row['resyncs']}; {row['storm_s']:.1f} s until every "
                f"client answered, CPU server {row['server_cpu_pct']:.0f}% clients {row['clients_cpu_pct']:.0f}%; "
                f"load average {row['load_avg']:.1f}",
                flush=True,
            )
            time.sleep(args.settle + 2)  # let every client take a few ticks of patches before the next case
    finally:
        run.close()
    return summarize_reconnect(result)


def summarize_reconnect(result: dict[str, Any]) -> dict[str, Any]:
    n = result["clients"]
    checks = {}
    epochs = {}
    for case, row in result["cases"].items():
        restart = case.startswith("restart")
        epochs[case.split("#")[0]] = row["epoch"]
        if restart:
            checks[f"{case}_all_snapshot"] = row["snapshot"] == n and row["failed"] == 0
        elif result.get("workers", 1) > 1:
            # A client that lands on another worker finds another epoch: it is brought up to date by snapshots.
            checks[f"{case}_all_back"] = row["resumed"] + row["snapshot"] == n and row["failed"] == 0
            checks[f"{case}_no_gaps"] = row["gaps"] == 0
        else:
            checks[f"{case}_all_resumed"] = row["resumed"] == n and row["failed"] == 0
            checks[f"{case}_no_gaps"] = row["gaps"] == 0
        checks[f"{case}_p99_first_frame_lt_500ms"] = (row["first_frame_p99_ms"] or 1e9) < 500
        checks[f"{case}_snapshots_le_versions"] = row["snapshots_encoded"] <= row["widget_versions"]
    if "drop" in epochs and "restart" in epochs:
        checks["restart_new_epoch"] = epochs["restart"] != epochs["drop"]
    result["checks"] = checks
    rows = [
        [c["case"], f"{c['reconnected']}/{n}", c["resumed"], c["snapshot"], c["upgraded_p99_ms"],
         c["first_frame_p50_ms"], c["first_frame_p99_ms"], c["first_frame_max_ms"], c["snapshots_encoded"],
         c["widget_versions"], c["snapshot_frames"], c["server_cpu_pct"]]
        for c in result["cases"].values()
    ]  # fmt: skip
    headers = ["case", "back", "resumed", "snapshot", "upgrade p99 ms", "first frame p50 ms", "p99 ms", "max ms",
               "snapshots encoded", "widget versions", "snapshot frames sent", "server CPU %"]  # fmt: skip
    print()
    print(common.table(headers, rows))
    print(
        "\nfirst frame: from the client's attempt to reconnect to its first widget frame (the catch-up patches or "
        f"snapshots, else the next tick's patches)\nchecks: {checks}",
        flush=True,
    )
    return result


# -- scenario: soak ---------------------------------------------------------------------------------


def scenario_soak(children: common.Children, args: argparse.Namespace) -> dict[str, Any]:
    duration = args.minutes * 60
    warmup = args.soak_warmup
    # Jobs are kept up to JOBPULSE_MAX_JOBS and job event ids up to JOBPULSE_DEDUPE_WINDOW, by design; the caps
    # are set so they are reached during warm-up, so what RSS does after warm-up is about leaks, not these
    # filling (at the fleet's 3 job events per job, the default 100,000 ids take over half an hour).
    max_jobs = args.max_jobs or max(100, int(args.job_rate * warmup * 0.7))
    dedupe = args.dedupe_window or max(100, int(3 * args.job_rate * warmup * 0.7))
    print(
        f"soak: {args.clients} clients, {args.rate:,.0f} events/s for {args.minutes} min (heartbeats every "
        f"{args.interval} s from ~{round(args.rate * args.interval):,} runners, {args.job_rate} jobs/s); "
        f"JOBPULSE_MAX_JOBS={max_jobs}, JOBPULSE_DEDUPE_WINDOW={dedupe}; warm-up {warmup:.0f} s; a sample every "
        f"{args.sample_every} s",
        flush=True,
    )
    run = Run(children, args, {"JOBPULSE_MAX_JOBS": str(max_jobs), "JOBPULSE_DEDUPE_WINDOW": str(dedupe)})
    result: dict[str, Any] = {"scenario": "soak", "clients": args.clients, "rate": args.rate, "minutes": args.minutes,
                              "warmup_s": warmup, "max_jobs": max_jobs, "dedupe_window": dedupe,
                              "interval": args.interval}  # fmt: skip
    samples: list[dict[str, Any]] = []
    try:
        procs = run.start_clients(args.clients, args.client_procs)
        ready = [common.read_json(p.stdout, 90, "clients connecting") for p in procs]
        result["connected"] = sum(r["ready"] for r in ready)
        start_at = run.start_source(duration + 1.0)  # it reports once done: just past the last sample
        time.sleep(max(0.0, start_at - time.time()))
        for proc in procs:
            common.tell(proc, {"cmd": "sample"})
        for proc in procs:
            common.read_json(proc.stdout, 30, "clients sample")
        stats_prev = stats_of(run.port, workers=run.workers)
        t_prev = time.time()
        cpu_prev = cpu_seconds(run.server.pid), sum(cpu_seconds(p.pid) for p in procs)
        end = start_at + duration
        while time.time() < end:
            time.sleep(max(0.0, min(args.sample_every, end - time.time())))
            for proc in procs:
                common.tell(proc, {"cmd": "sample"})
            # /proc first: right after a /api/stats request the server may still hold that request's socket.
            proc_now = proc_sample(run.server.pid)
            stats = stats_of(run.port, workers=run.workers)
            now = time.time()
            cpu_now = cpu_seconds(run.server.pid), sum(cpu_seconds(p.pid) for p in procs)
            reports = [common.read_json(p.stdout, 30, "clients sample") for p in procs]
            dt = now - t_prev
            p99s = [r["p99_ms"] for r in reports if r["p99_ms"] is not None]
            sample = {
                "t": now - start_at,
                **proc_now,
                "tasks": stats.get("tasks"),
                "clients": stats["clients"],
                "events_per_s": (stats["intake"]["events"] - stats_prev["intake"]["events"]) / dt,
                "flush_pct": 100 * (stats["hub"]["flush_seconds"] - stats_prev["hub"]["flush_seconds"]) / dt,
                "server_cpu_pct": 100 * (cpu_now[0] - cpu_prev[0]) / dt,
                "clients_cpu_pct": 100 * (cpu_now[1] - cpu_prev[1]) / dt,
                "resyncs": stats["hub"]["resyncs"] - stats_prev["hub"]["resyncs"],
                "stalled_closed": stats["hub"]["stalled_closed"] - stats_prev["hub"]["stalled_closed"],
                "jobs": stats["state"]["jobs"],
                "latency_p99_ms": max(p99s, default=None),
                "open": sum(r["open"] for r in reports),
                "messages_per_s": sum(r["messages"] for r in reports) / dt,
            }
            samples.append(sample)
            stats_prev, t_prev, cpu_prev = stats, now, cpu_now
            print(
                f"  t={sample['t']:6.0f} s  RSS {sample['rss_mib']:6.1f} MiB  fds {sample['fds']:5d}  tasks "
                f"{sample['tasks']}  threads {sample['threads']}  intake {sample['events_per_s']:7,.0f}/s  "
                f"jobs {sample['jobs']:6,}  latency p99 {common.fmt(sample['latency_p99_ms'])} ms  "
                f"{sample['messages_per_s']:8,.0f} msg/s  open {sample['open']}  resyncs {sample['resyncs']}  CPU "
                f"server {sample['server_cpu_pct']:.0f}% clients {sample['clients_cpu_pct']:.0f}%",
                flush=True,
            )
        source_report = common.read_json(run.source.stdout, 60, "source")
        result["published"] = source_report["published"]
        result["runners"] = source_report["runners"]
        result["source_cpu_s"] = source_report["cpu"]
    finally:
        run.close()
    result["samples"] = samples
    return summarize_soak(result, warmup)


def summarize_soak(result: dict[str, Any], warmup: float) -> dict[str, Any]:
    samples = result["samples"]
    steady = [s for s in samples if s["t"] >= warmup]
    checks: dict[str, bool] = {}
    if len(steady) >= 3:
        rss = [s["rss_mib"] for s in steady]
        first, low, high = rss[0], min(rss), max(rss)
        result["rss_steady_first_mib"], result["rss_steady_min_mib"], result["rss_steady_max_mib"] = first, low, high
        result["rss_spread_pct"] = 100 * (high - low) / low
        ts = [s["t"] for s in steady]
        mean_t, mean_r = sum(ts) / len(ts), sum(rss) / len(rss)
        slope = sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rss, strict=True)) / max(
            1e-9, sum((t - mean_t) ** 2 for t in ts)
        )
        result["rss_slope_mib_per_min"] = slope * 60
        third = max(1, len(steady) // 3)
        head, tail = steady[:third], steady[-third:]
        for key in ("tasks", "fds", "threads"):
            hs = sorted(s[key] for s in head if s[key] is not None)
            ts = sorted(s[key] for s in tail if s[key] is not None)
            result[f"{key}_first_third_max"], result[f"{key}_last_third_max"] = hs[-1], ts[-1]
            # The typical value may not grow at all; a sample may catch one or two in passing (a Redis or HTTP
            # connection of the server's own being opened or closed).
            checks[f"{key}_do_not_grow"] = ts[len(ts) // 2] <= hs[len(hs) // 2] and ts[-1] <= hs[-1] + 2
        checks["rss_flat_within_10pct"] = high <= 1.1 * low
        lat_head = [s["latency_p99_ms"] for s in head if s["latency_p99_ms"] is not None]
        lat_tail = [s["latency_p99_ms"] for s in tail if s["latency_p99_ms"] is not None]
        if lat_head and lat_tail:
            result["latency_p99_first_third_ms"] = sorted(lat_head)[len(lat_head) // 2]
            result["latency_p99_last_third_ms"] = sorted(lat_tail)[len(lat_tail) // 2]
        intake = [s["events_per_s"] for s in steady]
        result["intake_mean_per_s"] = sum(intake) / len(intake)
        result["intake_min_per_s"] = min(intake)
        result["server_cpu_mean_pct"] = sum(s["server_cpu_pct"] for s in steady) / len(steady)
        result["clients_cpu_mean_pct"] = sum(s["clients_cpu_pct"] for s in steady) / len(steady)
        checks["intake_kept_up_95pct"] = result["intake_mean_per_s"] >= 0.95 * result["rate"]
        checks["clients_stayed_open"] = all(s["open"] == result["connected"] for s in steady)
    result["checks"] = checks
    print()
    if steady:
        print(
            common.table(
                ["after warm-up", "first", "min", "max", "spread / growth"],
                [
                    [
                        "RSS MiB",
                        result["rss_steady_first_mib"],
                        result["rss_steady_min_mib"],
                        result["rss_steady_max_mib"],
                        f"{result['rss_spread_pct']:.1f}% ({result['rss_slope_mib_per_min']:+.2f} MiB/min)",
                    ],
                    [
                        "asyncio tasks",
                        steady[0]["tasks"],
                        min(s["tasks"] for s in steady),
                        max(s["tasks"] for s in steady),
                        f"{result['tasks_first_third_max']} -> {result['tasks_last_third_max']}",
                    ],
                    [
                        "open fds",
                        steady[0]["fds"],
                        min(s["fds"] for s in steady),
                        max(s["fds"] for s in steady),
                        f"{result['fds_first_third_max']} -> {result['fds_last_third_max']}",
                    ],
                    [
                        "intake events/s",
                        steady[0]["events_per_s"],
                        result["intake_min_per_s"],
                        max(s["events_per_s"] for s in steady),
                        f"mean {result['intake_mean_per_s']:,.0f}",
                    ],
                ],
            )
        )
    print(
        f"\nserver CPU {common.fmt(result.get('server_cpu_mean_pct'))}% of a core, clients "
        f"{common.fmt(result.get('clients_cpu_mean_pct'))}% (means after warm-up); "
        f"published {result.get('published', 0):,} events ({result.get('runners')} runners); latency p99 (median of "
        f"samples) first third {common.fmt(result.get('latency_p99_first_third_ms'))} ms, last third "
        f"{common.fmt(result.get('latency_p99_last_third_ms'))} ms\nchecks: {checks}",
        flush=True,
    )
    return result


SCENARIOS = {"slow": scenario_slow, "reconnect": scenario_reconnect, "soak": scenario_soak}


def orchestrate(args: argparse.Namespace) -> int:
    common.terminate_on_sigterm()
    facts = common.machine_facts()
    result: dict[str, Any] = {}
    started = time.monotonic()
    interrupted = None
    try:
        title = f"jobpulse reliability: {args.scenario}" + (" --quick" if args.quick else "")
        with common.session(args, facts, title) as (children, origin):
            url = args.redis_url
            print(f"redis {url} ({origin}, {facts.get('redis_version')}); source {args.rate:,.0f} events/s", flush=True)
            result = SCENARIOS[args.scenario](children, args)
    except common.HardTimeout as exc:
        interrupted = str(exc)
    except (RuntimeError, TimeoutError, OSError) as exc:
        interrupted = f"failed: {exc!r}"
    print(f"\nTotal {time.monotonic() - started:.0f} s.")
    if interrupted:
        print(f"INTERRUPTED: {interrupted}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"facts": facts, "args": vars(args), "result": result, "interrupted": interrupted}, out,
                      indent=1)  # fmt: skip
        print(f"results written to {args.json}")
    return 1 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scenario", choices=tuple(SCENARIOS), default="slow")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else a private redis-server")
    parser.add_argument("--quick", action="store_true", help="a short run: 200 clients, short windows / a 1 min soak")
    parser.add_argument("--clients", type=int, default=None, help="websocket clients (default 1000; quick 200)")
    parser.add_argument("--client-procs", type=int, default=None, help="client processes (default 4; quick 2)")
    parser.add_argument("--rate", type=float, default=None, help="source events/s (default 500; soak 5000)")
    parser.add_argument("--job-rate", type=float, default=16.0, help="jobs started per second (default 16)")
    parser.add_argument("--job-seconds", type=float, default=0.5, help="how long a job runs (default 0.5 s)")
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        help="runners' heartbeat interval (default 2 s; soak: 1,500 runners' worth at the rate)",
    )
    parser.add_argument("--warmup", type=float, default=None, help="s of publishing before the first window (10; 3)")
    parser.add_argument("--timeout", type=float, default=None, help="hard timeout of the whole run, s")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--profile-server", default=None, help="run jobpulse under cProfile, stats to this file")
    parser.add_argument("--server-cpus", default=None, help="keep the server (and its workers) on these CPUs, e.g. 0")
    parser.add_argument("--client-cpus", default=None, help="keep the clients and the source on these CPUs, e.g. 1")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the server under test (repeatable), e.g. JOBPULSE_WS_SNDBUF=0")  # fmt: skip
    # slow
    parser.add_argument("--slow-share", type=float, default=0.05, help="share of clients that misbehave (0.05)")
    parser.add_argument("--pairs", type=int, default=None, help="A/B window pairs (default 3; quick 2)")
    parser.add_argument("--window", type=float, default=None, help="measured seconds per window (20; quick 8)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds between opening the others and a window")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=None,
        help="JOBPULSE_STALL_TIMEOUT_S for the server (default: jobpulse's own; quick 4)",
    )
    parser.add_argument(
        "--stall-wait",
        type=float,
        default=None,
        help="after a B window, wait up to this long for every stalled client to be closed",
    )
    parser.add_argument("--slow-read-every", type=float, default=1.0, help="a slow reader reads once per this, s")
    parser.add_argument("--slow-rcvbuf", type=int, default=4096, help="a slow reader's SO_RCVBUF, bytes")
    # reconnect
    parser.add_argument("--reconnect-timeout", type=float, default=10.0, help="a reconnect's own deadline, s")
    parser.add_argument("--cases", default=",".join(c for c, _, _ in RECONNECT_CASES), help="reconnect cases to run")
    parser.add_argument("--repeat", type=int, default=1, help="run each reconnect case this many times (#1, #2, ...)")
    # soak
    parser.add_argument("--minutes", type=float, default=None, help="soak length (default 10; quick 1)")
    parser.add_argument("--sample-every", type=float, default=None, help="soak sample period, s (5; quick 2)")
    parser.add_argument("--soak-warmup", type=float, default=None, help="soak warm-up, s (20%% of it; quick 30)")
    parser.add_argument("--max-jobs", type=int, default=0, help="JOBPULSE_MAX_JOBS for the soak (default: reached "
                        "in 70%% of the warm-up)")  # fmt: skip
    parser.add_argument("--dedupe-window", type=int, default=0, help="JOBPULSE_DEDUPE_WINDOW for the soak (default: "
                        "reached in 70%% of the warm-up)")  # fmt: skip
    # roles (internal)
    parser.add_argument("--role", default="orchestrator", choices=("orchestrator", "clients"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--kind", default="healthy", choices=KINDS)
    parser.add_argument("--track-seqs", action="store_true", help="keep seqs to resume (and no latency probe)")
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument("--deadline", type=float, default=0)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.role == "clients":
        run_clients(args)
        return 0
    soak = args.scenario == "soak"
    quick = args.quick
    args.clients = args.clients or (200 if quick else 1000)
    args.client_procs = args.client_procs or (2 if quick else 4)
    args.rate = args.rate or ((1000.0 if quick else 5000.0) if soak else 500.0)
    args.minutes = args.minutes or (1.0 if quick else 10.0)
    if args.soak_warmup is None:
        args.soak_warmup = 30.0 if quick else max(20.0, 12.0 * args.minutes)
    if args.interval is None:
        # The soak's runners beat often enough that there are at most ~1,500 of them (JOBPULSE_MAX_RUNNERS is
        # 2,000) whatever the rate, and that each runner's 60 latency samples fill within half the warm-up (they
        # are kept by design). The other scenarios use fanout's fleet as it is.
        args.interval = round(min(2.0, 1500 / args.rate, 0.5 * args.soak_warmup / 60), 3) if soak else 2.0
    if args.warmup is None:
        args.warmup = 3.0 if quick else 10.0
    args.pairs = args.pairs or (2 if quick else 3)
    args.window = args.window or (8.0 if quick else 20.0)
    if quick and args.stall_timeout is None:
        args.stall_timeout = 4.0
    args.stall_wait = args.stall_wait if args.stall_wait is not None else (40.0 if quick else 300.0)
    args.sample_every = args.sample_every or (2.0 if quick else 5.0)
    if args.timeout is None:
        if soak:
            args.timeout = args.minutes * 60 + 120
        elif args.scenario == "slow":
            args.timeout = 2 * args.pairs * (args.window + 10) + args.pairs * args.stall_wait + 120
        else:
            args.timeout = 180.0 if quick else 300.0
    common.raise_nofile()
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
