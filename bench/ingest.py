"""B1, ingest: native events per second jobpulse folds end to end with a fold lag under 1 s, beside a baseline.

What runs (every part its own process, all on loopback):

- publisher(s): `bench/workload.py`'s synthetic fleet (90.6% job events, 7.5%
  heartbeats, 1.9% depth reports; queued events carry a payload) published to
  `P:events` at a target rate, one object per PUBLISH (`--batch 1`) or JSON
  arrays of N objects (`--batch 20`), pipelined on a raw socket. Each object's
  `ts` is the moment it was sent.
- consumer, one of:
  - `baseline`: redis-py asyncio `PubSub.get_message()` in a loop (hiredis
    parser), doing only `orjson.loads` of each message;
  - `jobpulse`: the real intake path of the server: `Aggregator` (its
    `NativeConnector` -> `Subscriber` (hiredis on the raw socket) ->
    `parse_message` -> `fold`, plus its clock, reconcile and persist loops) with
    a real `Hub` attached (`server.app.build_hub`) that projects and diffs all
    seven widgets every 25 ms tick, but has no websocket clients (fan-out is
    `bench/fanout.py`'s job); start-up objects are frozen out of the GC
    (`gc.collect(); gc.freeze()`), as the server's lifespan does.
  Both run under uvloop, as the server does. Both stamp every event's lag
  (receive time taken just before parse and fold, minus the event's `ts`).

For each batch size and consumer the publish rate steps up (a ladder); a step
passes when every event published in its measurement window was folded, the
largest lag was under 1 s and the publisher reached its target rate. The
result is the highest passing rate, beside the baseline's in the same run, plus
the consumer's CPU per event at each step (robust to noise, unlike rates).
On 2 cores the publisher and Redis share the CPU with the consumer, so a
ceiling may be the machine's, not the consumer's: the table shows the CPU of
each process so you can tell.

Usage: python -m bench.ingest [--quick] [--redis-url URL] (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/<script>.py`: make `bench` and `server` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

BASELINE = "baseline"
JOBPULSE = "jobpulse"
VARIANTS = (BASELINE, JOBPULSE)


# -- publisher role ---------------------------------------------------------------------------------


def run_publisher(args: argparse.Namespace) -> None:
    from bench.workload import RawPublisher, Stream, batch

    common.watch_parent(args.deadline)
    stream = Stream(args.tag, payload=not args.no_payload)
    publisher = RawPublisher(args.redis_url, f"{args.prefix}:events")
    rate = args.rate  # events/s; 0 = as fast as possible
    size = max(1, args.batch)
    chunk_cap = max(size, 2000 // size * size)  # events per pipelined write
    cpu0 = time.process_time()
    delay = args.start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    started = time.time()
    end = args.start_at + args.duration
    window = args.window_start
    sent = in_window = messages = 0
    now = started
    while now < end:
        if rate:
            due = int((now - started) * rate) - sent
            if due < size:
                time.sleep(min(0.001, size / rate))
                now = time.time()
                continue
            n = min(due // size * size, chunk_cap)
        else:
            n = chunk_cap
        payloads = batch(stream.take(n, now), size)
        publisher.publish_many(payloads)
        sent += n
        messages += len(payloads)
        ts = float(b"%.6f" % now)  # the `ts` the consumer reads back, so both sides count the same window
        if window <= ts < end:
            in_window += n
        now = time.time()
    elapsed = now - started
    common.say(
        {
            "published": sent,
            "in_window": in_window,
            "messages": messages,
            "elapsed": elapsed,
            "cpu": time.process_time() - cpu0,
            "receivers": publisher.receivers,
            "mix": stream.counts,
        }
    )
    publisher.close()


# -- consumer role ----------------------------------------------------------------------------------


class Recorder:
    """Lags of the events of the current window; counts and CPU since the window was set."""

    def __init__(self) -> None:
        self.start = float("inf")
        self.end = float("inf")
        self.lags: array[float] = array("d")
        self.count = 0  # events in the window
        self.total = 0  # every event since the window command
        self.first_at = 0.0
        self.last_at = 0.0
        self.cpu0 = time.process_time()
        self.stall_max = 0.0  # longest the event loop was blocked (a 5 ms sleep that overslept), wall clock
        self.busy_max = 0.0  # most CPU the process used during one 5 ms sleep: work that blocked the loop
        self.disconnects = 0
        self.gc_pauses: list[float] = []  # durations of gen 2 collections
        self.gc_young_max = 0.0  # longest gen 0 or gen 1 collection
        self.gc_counts = [0, 0, 0]
        self._gc_started = 0.0

    def window(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.lags = array("d")
        self.count = self.total = 0
        self.first_at = self.last_at = 0.0
        self.cpu0 = time.process_time()
        self.stall_max = self.busy_max = 0.0
        self.gc_pauses = []
        self.gc_young_max = 0.0
        self.gc_counts = [0, 0, 0]

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            generation = info["generation"]
            self.gc_counts[generation] += 1
            pause = time.perf_counter() - self._gc_started
            if generation == 2:
                self.gc_pauses.append(pause)
            else:
                self.gc_young_max = max(self.gc_young_max, pause)

    async def watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        cpu = time.process_time
        while True:
            before, cpu_before = loop.time(), cpu()
            await asyncio.sleep(0.005)
            self.stall_max = max(self.stall_max, loop.time() - before - 0.005)
            self.busy_max = max(self.busy_max, cpu() - cpu_before)

    def stats(self) -> dict[str, Any]:
        # Everything is read before the sort below, which blocks the loop itself.
        out = {
            "stall_max_ms": self.stall_max * 1000,
            "busy_max_ms": self.busy_max * 1000,
            "gc_counts": self.gc_counts,
            "gc2_max_ms": max(self.gc_pauses, default=0.0) * 1000,
            "gc2_total_ms": sum(self.gc_pauses) * 1000,
            "gc_young_max_ms": self.gc_young_max * 1000,
            "count": self.count,
            "total": self.total,
            "cpu": time.process_time() - self.cpu0,
            "fold_span": self.last_at - self.first_at,
        }
        lags = sorted(self.lags)
        out["lag_p50"] = common.percentile(lags, 50)
        out["lag_p99"] = common.percentile(lags, 99)
        out["lag_max"] = lags[-1] if lags else float("nan")
        return out


async def _commands(handler: Any) -> None:
    """Read JSON commands from stdin, one a line, and hand them to `handler` (a coroutine function)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        if command["cmd"] == "quit":
            return
        await handler(command)


async def _serve_commands(rec: Recorder, extra: Any = None) -> None:
    gc.callbacks.append(rec.on_gc)
    watcher = asyncio.create_task(rec.watch_loop())

    async def handle(command: dict[str, Any]) -> None:
        if command["cmd"] == "window":
            rec.window(command["start"], command["end"])
            common.say({"ok": True})
        elif command["cmd"] == "report":
            deadline = time.monotonic() + command["timeout"]
            while rec.count < command["expected"] and time.monotonic() < deadline:  # noqa: ASYNC110 - a poll
                await asyncio.sleep(0.01)
            stats = rec.stats()
            stats["behind"] = rec.count < command["expected"]
            stats["waited_until"] = time.time()
            if extra is not None:
                stats.update(extra())
            common.say(stats)

    try:
        await _commands(handle)
    finally:
        watcher.cancel()
        gc.callbacks.remove(rec.on_gc)


async def consume_baseline(args: argparse.Namespace) -> None:
    import orjson
    import redis.asyncio as aredis

    rec = Recorder()
    client = aredis.Redis.from_url(args.redis_url)
    channel = f"{args.prefix}:events"

    async def subscribe() -> Any:
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        while (await pubsub.get_message(timeout=1.0)) is None:  # the subscribe confirmation
            pass
        return pubsub

    pubsubs = [await subscribe()]

    async def loop() -> None:
        clock = time.time
        loads = orjson.loads
        while True:
            get_message = pubsubs[-1].get_message
            try:
                while True:
                    message = await get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    data = loads(message["data"])
                    at = clock()
                    objects = data if type(data) is list else (data,)
                    rec.total += len(objects)
                    start, end, lags = rec.start, rec.end, rec.lags
                    for obj in objects:
                        ts = obj["ts"]
                        if start <= ts < end:
                            lags.append(at - ts)
                            rec.count += 1
                            if not rec.first_at:
                                rec.first_at = at
                            rec.last_at = at
            except (aredis.ConnectionError, ConnectionError):
                # Redis cut us off (the pub/sub output buffer limit): what it held is lost; subscribe again.
                rec.disconnects += 1
                with contextlib.suppress(Exception):
                    await pubsubs[-1].aclose()
                pubsubs.append(await subscribe())

    task = asyncio.create_task(loop())
    common.say({"ready": True})
    try:
        await _serve_commands(rec, lambda: {"disconnects": rec.disconnects})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pubsubs[-1].aclose()
        await client.aclose()


async def consume_jobpulse(args: argparse.Namespace) -> None:
    from server.app import build_hub, freeze_startup
    from server.settings import Settings
    from server.streams.aggregator import Aggregator
    from server.streams.core.events import Depth, Event, Heartbeat, JobEvent, RunnerStopped
    from server.streams.hub import Hub

    rec = Recorder()
    source_types = (JobEvent, Heartbeat, Depth, RunnerStopped)
    aggregator_feed = Aggregator.feed
    clock = time.time

    class MeasuredAggregator(Aggregator):
        """The server's Aggregator; `feed` calls the real one, then takes a lag sample per source event."""

        def feed(self, event: Event, at: float, replay: bool = False) -> None:
            aggregator_feed(self, event, at, replay)
            if type(event) in source_types:
                rec.total += 1
                ts = event.ts  # type: ignore[union-attr]
                if rec.start <= ts < rec.end:
                    rec.lags.append(at - ts)
                    rec.count += 1
                    if not rec.first_at:
                        rec.first_at = at
                    rec.last_at = at

    settings = Settings(redis_url=args.redis_url, prefix=args.prefix, log_level="warning")
    settings.check()
    aggregator = MeasuredAggregator(settings, clock)
    hub: Hub | None = None
    if not args.no_hub:
        hub = build_hub(settings, aggregator)  # as server/app.py builds it
        hub.start()
    await aggregator.start()
    deadline = time.monotonic() + 15
    while not aggregator.ready:
        if time.monotonic() > deadline:
            raise RuntimeError("the aggregator did not become ready within 15 s")
        await asyncio.sleep(0.05)
    # As server/app.py's lifespan does once start-up is done: keep what exists now out of full collections.
    freeze_startup()
    flush0 = [0.0, 0]

    def extra() -> dict[str, Any]:
        health = aggregator.state.health
        out: dict[str, Any] = {
            "rejected": dict(health.rejected),
            "gaps": health.gaps,
            "dupes": health.dupes,
            "jobs": len(aggregator.state.jobs),
            "crashes": aggregator.crashes,
        }
        if hub is not None:
            out["hub_flush_s"] = hub.stats.flush_seconds - flush0[0]
            out["hub_flushes"] = hub.stats.flushes - flush0[1]
            flush0[:] = [hub.stats.flush_seconds, hub.stats.flushes]
        return out

    common.say({"ready": True})
    try:
        await _serve_commands(rec, extra)
    finally:
        if hub is not None:
            await hub.stop()
        await aggregator.stop()


def run_consumer(args: argparse.Namespace) -> None:
    import uvloop

    common.watch_parent(args.deadline)
    body = consume_baseline if args.variant == BASELINE else consume_jobpulse
    if not args.profile:
        uvloop.run(body(args))
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        uvloop.run(body(args))
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)


# -- orchestrator -----------------------------------------------------------------------------------


class Consumer:
    def __init__(self, children: common.Children, args: argparse.Namespace, variant: str, prefix: str) -> None:
        self.children = children
        argv = [
            sys.executable, "-m", "bench.ingest", "--role", "consumer", "--variant", variant,
            "--redis-url", args.redis_url, "--prefix", prefix, "--deadline", str(args.deadline),
        ]  # fmt: skip
        if args.no_hub:
            argv.append("--no-hub")
        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            argv += ["--profile", os.path.join(args.profile, f"ingest-{variant}-{prefix}.prof")]
        self.proc = children.start(argv, stdin=True)
        self.pid = self.proc.pid
        common.read_json(self._out, 30, f"{variant} consumer start")

    @property
    def _out(self) -> Any:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def command(self, wait: float, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return common.read_json(self._out, wait, f"consumer {command['cmd']}")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.flush()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        self.children.stop(self.proc)


def run_step(
    children: common.Children,
    args: argparse.Namespace,
    consumer: Consumer,
    prefix: str,
    rate: int,
    batch: int,
    step: int,
) -> dict[str, Any]:
    """One rung of the ladder: publish at `rate` for warmup + duration; the consumer's numbers for the window."""
    import psutil

    publishers = args.publishers
    start_at = time.time() + args.start_delay
    window_start = start_at + args.warmup
    window_end = window_start + args.duration
    consumer.command(10, cmd="window", start=window_start, end=window_end)
    procs = []
    for i in range(publishers):
        argv = [
            sys.executable, "-m", "bench.ingest", "--role", "publisher", "--redis-url", args.redis_url,
            "--prefix", prefix, "--tag", f"s{step}p{i}", "--rate", str(rate / publishers), "--batch", str(batch),
            "--start-at", str(start_at), "--window-start", str(window_start),
            "--duration", str(args.warmup + args.duration), "--deadline", str(args.deadline),
        ]  # fmt: skip
        if args.no_payload:
            argv.append("--no-payload")
        procs.append(children.start(argv))
    consumer_ps = psutil.Process(consumer.pid)
    time.sleep(max(0.0, window_start - time.time()))
    redis_cpu0 = common.redis_cpu(args.redis_url)
    consumer_cpu0 = sum(consumer_ps.cpu_times()[:2])
    published: list[dict[str, Any]] = []
    for proc in procs:
        assert proc.stdout is not None
        published.append(common.read_json(proc.stdout, args.warmup + args.duration + 30, "publisher"))
        children.stop(proc)
    redis_cpu = common.redis_cpu(args.redis_url) - redis_cpu0
    expected = sum(p["in_window"] for p in published)
    stats = consumer.command(args.drain + 10, cmd="report", expected=expected, timeout=args.drain)
    consumer_cpu = sum(consumer_ps.cpu_times()[:2]) - consumer_cpu0
    window_s = stats["waited_until"] - window_start
    achieved = expected / args.duration
    lag_max = stats["lag_max"]
    if stats["behind"]:
        lag_max = max(lag_max if lag_max == lag_max else 0.0, stats["waited_until"] - window_end)
    publisher_bound = rate > 0 and achieved < 0.95 * rate
    ok = not stats["behind"] and stats["count"] >= expected and lag_max < 1.0 and not publisher_bound
    return {
        "rate": rate,
        "batch": batch,
        "achieved": achieved,
        "expected": expected,
        "folded": stats["count"],
        "lag_p50_ms": stats["lag_p50"] * 1000,
        "lag_p99_ms": stats["lag_p99"] * 1000,
        "lag_max_ms": lag_max * 1000,
        "behind": stats["behind"],
        "publisher_bound": publisher_bound,
        "ok": ok,
        "consumer_cpu_pct": 100 * consumer_cpu / window_s,
        "consumer_us_per_event": 1e6 * stats["cpu"] / max(1, stats["total"]),
        "publisher_cpu_pct": 100 * sum(p["cpu"] for p in published) / (args.warmup + args.duration),
        "redis_cpu_pct": 100 * redis_cpu / window_s,
        "stall_max_ms": stats["stall_max_ms"],
        "busy_max_ms": stats["busy_max_ms"],
        "gc2_max_ms": stats["gc2_max_ms"],
        "gc_young_max_ms": stats["gc_young_max_ms"],
        "gc_counts": stats["gc_counts"],
        "hub_flush_pct": 100 * stats.get("hub_flush_s", 0.0) / window_s,
        "health": {
            k: v for k, v in stats.items() if k in ("rejected", "gaps", "dupes", "crashes", "disconnects") and v
        },
    }


def ladder(children: common.Children, args: argparse.Namespace, result: dict[str, Any], rates: list[int]) -> None:
    """Step the rate up until a step fails twice (or the rates run out), then bisect between the highest pass and
    the lowest failure until they are within 10%; fill `result` as it goes."""
    variant, batch = result["variant"], result["batch"]
    prefix = common.unique_prefix(f"ingest-{variant}")
    steps: list[dict[str, Any]] = result["steps"]
    consumer = Consumer(children, args, variant, prefix)
    try:
        queue = list(rates)
        retried = False
        failed_at: int | None = None  # the lowest rate that failed twice
        while queue:
            if time.monotonic() > args.ladder_deadline:
                print(f"  {variant} batch={batch}: out of time for this ladder", flush=True)
                break
            rate = queue.pop(0)
            step = run_step(children, args, consumer, prefix, rate, batch, len(steps))
            steps.append(step)
            _print_step(variant, step)
            best = result["best"]
            if step["ok"]:
                if best is None or step["achieved"] > best["achieved"]:
                    result["best"] = step
                retried = False
                if failed_at is not None and not queue:
                    queue = _bisect(rate, failed_at)
                continue
            if step["behind"]:  # a backlog: start the next try from a clean consumer
                consumer.close()
                consumer = Consumer(children, args, variant, prefix)
            if step["publisher_bound"]:
                break
            if not retried:  # the machine is noisy: a failed step gets one more try before the ladder ends
                retried = True
                queue.insert(0, rate)
                continue
            retried = False
            failed_at = rate if failed_at is None else min(failed_at, rate)
            queue = _bisect(best["rate"], failed_at) if best is not None else []
    finally:
        consumer.close()
        common.delete_prefix(args.redis_url, prefix)


def _bisect(passed: int, failed: int) -> list[int]:
    """The next rate between the highest pass and the lowest failure, until they are within 10% of each other (the
    quick ladders too, as far as their time goes)."""
    if failed <= passed * 1.1:
        return []
    return [int(round((passed + failed) / 2, -3))]


def _print_step(variant: str, step: dict[str, Any]) -> None:
    verdict = "ok" if step["ok"] else ("PUBLISHER-BOUND" if step["publisher_bound"] else "FAIL")
    print(
        f"  {variant:8} batch={step['batch']:<3} target {step['rate']:>8,} ev/s  got {step['achieved']:>9,.0f}  "
        f"folded {step['folded']:>8,}/{step['expected']:<8,} lag p50 {step['lag_p50_ms']:7.1f} "
        f"p99 {step['lag_p99_ms']:7.1f} max {step['lag_max_ms']:7.1f} ms  "
        f"cpu: consumer {step['consumer_cpu_pct']:3.0f}% ({step['consumer_us_per_event']:.2f} µs/ev) "
        f"publisher {step['publisher_cpu_pct']:3.0f}% redis {step['redis_cpu_pct']:3.0f}% "
        f"hub {step['hub_flush_pct']:2.0f}%; loop blocked max {step['stall_max_ms']:.0f} ms "
        f"({step['busy_max_ms']:.0f} ms CPU), "
        f"gc2 max {step['gc2_max_ms']:.0f} ms, gc0/1 max {step['gc_young_max_ms']:.0f} ms  "
        f"{verdict} {step['health'] or ''}",
        flush=True,
    )


def ladder_rates(start: int, stop: int, factor: float) -> list[int]:
    rates = []
    rate = float(start)
    while rate <= stop:
        rates.append(int(round(rate, -3)))
        rate *= factor
    return rates


def _cpu_split(step: dict[str, Any] | None) -> str:
    if step is None:
        return "-"
    return f"{step['consumer_cpu_pct']:.0f} / {step['publisher_cpu_pct']:.0f} / {step['redis_cpu_pct']:.0f}"


def summarize(results: list[dict[str, Any]]) -> str:
    """One row per (batch, consumer): best passing rate, its lags and CPU, and ratios against the baseline."""
    rows = []
    by_batch: dict[int, dict[str, dict[str, Any]]] = {}
    for result in results:
        by_batch.setdefault(result["batch"], {})[result["variant"]] = result
    for batch, variants in sorted(by_batch.items()):
        base = variants.get(BASELINE)
        passed = {v: {s["rate"]: s for s in r["steps"] if s["ok"]} for v, r in variants.items()}
        common_rates = set.intersection(*(set(p) for p in passed.values())) if passed else set()
        at = max(common_rates, default=None)
        for variant in VARIANTS:
            found = variants.get(variant)
            if found is None:
                continue
            best, steps = found["best"], found["steps"]
            # '>=': the ladder never failed on the consumer's account (it ran out of rates or the publisher lagged).
            open_ended = bool(steps) and not any(not s["ok"] and not s["publisher_bound"] for s in steps)
            base_best = base["best"] if base else None
            cpu = passed[variant][at]["consumer_us_per_event"] if at else None
            base_cpu = passed[BASELINE][at]["consumer_us_per_event"] if at and BASELINE in passed else None
            rows.append(
                [
                    f"{batch}",
                    variant,
                    (">=" if open_ended else "") + (f"{best['achieved']:,.0f}" if best else "none"),
                    best["lag_p50_ms"] if best else None,
                    best["lag_p99_ms"] if best else None,
                    best["lag_max_ms"] if best else None,
                    _cpu_split(best),
                    f"{cpu:.2f} @ {at:,}" if cpu is not None and at else "-",
                    common.ratio(best["achieved"] if best else None, base_best["achieved"] if base_best else None),
                    common.ratio(cpu, base_cpu),
                ]
            )
    return common.table(
        [
            "batch", "consumer", "max ev/s with lag < 1 s", "lag p50 ms", "lag p99 ms", "lag max ms",
            "CPU % consumer / publisher / redis", "consumer CPU µs/event @ ev/s", "rate vs baseline",
            "CPU/event vs baseline",
        ],
        rows,
    )  # fmt: skip


def orchestrate(args: argparse.Namespace) -> int:
    common.terminate_on_sigterm()
    facts = common.machine_facts()
    batches = [int(b) for b in args.batches.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    budget = args.timeout - 6  # leave time to stop children and print
    interrupted = None
    try:
        title = "jobpulse ingest benchmark (B1)" + (" --quick" if args.quick else "")
        with common.session(args, facts, title) as (children, origin):
            url = args.redis_url
            print(
                f"redis {url} ({origin}, {facts.get('redis_version')}); publishers {args.publishers}; "
                f"window {args.duration} s after {args.warmup} s warmup; payload {'off' if args.no_payload else 'on'}"
                f"; jobpulse hub {'off' if args.no_hub else 'on (no clients)'}",
                flush=True,
            )
            plan = [(b, v) for b in batches for v in variants]
            for i, (batch, variant) in enumerate(plan):
                remaining = budget - (time.monotonic() - started)
                args.ladder_deadline = time.monotonic() + remaining / (len(plan) - i)
                result: dict[str, Any] = {"variant": variant, "batch": batch, "steps": [], "best": None}
                results.append(result)
                rates = args.rates_b1 if batch == 1 else args.rates_bn
                ladder(children, args, result, [int(r) for r in rates.split(",")])
    except common.HardTimeout as exc:
        interrupted = str(exc)
    print()
    print(summarize(results))
    print(
        "\nmax ev/s: the highest step where every event of the window was folded with lag < 1 s and the publisher"
        " hit its target ('>=': no step failed on the consumer's account, so the ceiling is higher)."
        " CPU %: of one core, at that step. CPU µs/event: at the highest rate both consumers passed."
        f" Total {time.monotonic() - started:.0f} s."
    )
    if interrupted:
        print(f"INTERRUPTED: {interrupted}; the table holds the steps that finished")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"facts": facts, "args": vars(args), "results": results}, out, indent=1)
        print(f"results written to {args.json}")
    return 1 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else a private redis-server")
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s): coarse ladders, short steps")
    parser.add_argument("--batches", default="1,20", help="objects per PUBLISH to measure (default 1,20)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="consumers (default baseline,jobpulse)")
    parser.add_argument("--rates-b1", default=None, help="ladder of events/s for batch=1 (comma separated)")
    parser.add_argument("--rates-bn", default=None, help="ladder of events/s for batch>1")
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes (default 1)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each window")
    parser.add_argument("--no-payload", action="store_true", help="queued events without a payload")
    parser.add_argument("--no-hub", action="store_true", help="jobpulse consumer without the Hub")
    parser.add_argument("--timeout", type=float, default=None, help="hard timeout of the whole run, s")
    parser.add_argument("--json", default=None, help="also write every step to this JSON file")
    parser.add_argument("--profile", default=None, help="cProfile each consumer into this directory (slows it)")
    # roles (internal)
    parser.add_argument("--role", default="orchestrator", choices=("orchestrator", "publisher", "consumer"))
    parser.add_argument("--variant", default=BASELINE)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--tag", default="p")
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--start-at", type=float, default=0)
    parser.add_argument("--window-start", type=float, default=0)
    parser.add_argument("--deadline", type=float, default=0)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: every `finally` has run; children got it too and exit quietly
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.role == "publisher":
        run_publisher(args)
        return 0
    if args.role == "consumer":
        run_consumer(args)
        return 0
    quick = args.quick
    args.duration = args.duration or (1.5 if quick else 4.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 1.0)
    args.start_delay = 0.7
    args.drain = 1.2
    args.timeout = args.timeout or (59.0 if quick else 900.0)
    full_b1 = ",".join(map(str, ladder_rates(20_000, 400_000, 1.25)))
    full_bn = ",".join(map(str, ladder_rates(40_000, 1_000_000, 1.25)))
    args.rates_b1 = args.rates_b1 or ("40000,80000,120000" if quick else full_b1)
    args.rates_bn = args.rates_bn or ("100000,200000,300000" if quick else full_bn)
    common.raise_nofile()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
