"""B1 in process: the CPU of jobpulse's intake per event, and the collector's pauses, with the job table full.

`bench.ingest` measures the whole consumer behind a real socket, but on 2 cores
the publisher and Redis share the CPU with it, so its figures move with the
machine. This one takes the socket and the other processes away and times
exactly the code jobpulse runs per message, in one process:

- `decode` (the baseline): `parse_message` alone, the typed msgspec decode
  every consumer must do; the floor of any Python intake of this protocol.
- `jobpulse`: the native connector's `_on_message` for each message (parse,
  the source's label, the fold, its indexes), its `_on_chunk_end` once per
  `--chunk` messages (as after one socket read), and the hub's `flush` once
  per `--tick-events` events with one client subscribed to every dashboard
  widget (so every widget is projected, diffed and encoded as it is live), and
  the clock tick (which drains the functions' numbers and runs the rules) once
  per `--clock-events` events (the 1 s JOBPULSE_CLOCK_MS at 100,000 ev/s).

The messages are `bench/workload.py`'s fleet (90.6% job events, with payloads).
Before the measured run, the fold takes `--warm` events, so the job table holds
`--jobs` jobs (the default cap, 100,000) and eviction runs on every new job, as
in a long-lived process. What exists before the warm-up is frozen out of the
collector, as the server's start-up does; the jobs are not (they come later, live).

Reported, as the median and spread of `--repeats` runs: each variant's µs per
event and jobpulse/decode; what issue #19's per-event work (the functions'
numbers and the failure groups) adds an event, measured by a second jobpulse in
the same process with that work switched off, fed the same messages chunk by
chunk in alternation with the first (so the machine's noise falls on both); the
longest collector pause during the jobpulse run (any generation, the server's own
GC policy in force); a forced full collection with the table held (the worst
stall a full collection can cause) and the number of objects the collector tracks.

    python -m bench.fold               # 100,000 jobs, 200,000 events, 5 repeats (about 2 minutes)
    python -m bench.fold --quick       # 20,000 jobs, 50,000 events, 3 repeats (about 20 s)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/<script>.py`: make `bench` and `server` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from tests.unit.factories import Collector  # a hub peer that keeps what it is sent


class _Pauses:
    """The collector's pauses by generation, from gc.callbacks."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pauses: list[tuple[int, float]] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self.started))


def clock_tick(aggregator: Any) -> None:
    """The clock tick the server folds every JOBPULSE_CLOCK_MS (here once a hub tick): it drains the functions'
    numbers the fold noted, and runs the rules."""
    from server.streams.core.events import Tick

    now = time.time()
    aggregator.feed(Tick(now=now), now)
    aggregator.chunk_end()


class _Switch:
    """Issue #19's per-event work (the functions' numbers, the failure groups), switched off or back on."""

    def __init__(self) -> None:
        from server.streams.core import functions, groups

        self.functions: Any = functions
        self.groups: Any = groups
        self.real = (functions.ran, functions.waited, functions.drain, groups.failed)

    def set(self, on: bool) -> None:
        f, g = self.functions, self.groups
        if on:
            f.ran, f.waited, f.drain, g.failed = self.real
        else:
            f.ran = f.waited = lambda *a: None
            f.drain = lambda state: 0
            g.failed = lambda state, job, at: 0


def jobpulse(args: argparse.Namespace) -> tuple[Any, Any, Any, Collector]:
    """A jobpulse as the server builds it (aggregator, hub, the native connector) with one client watching every
    dashboard widget, and that client's sink."""
    from server.app import build_hub
    from server.settings import Settings
    from server.streams.aggregator import Aggregator
    from server.streams.core.widgets import WIDGETS
    from server.streams.sources.native.connector import NativeConnector

    settings = Settings(log_level="warning", max_jobs=args.jobs)
    settings.check()
    aggregator = Aggregator(settings, time.time)
    hub = build_hub(settings, aggregator)
    connector = aggregator.connectors[next(iter(aggregator.connectors))]
    assert isinstance(connector, NativeConnector)
    sink = Collector()
    client = hub.attach(sink)
    assert hub.subscribe(client, [w.name for w in WIDGETS], None, {}) == []
    return aggregator, hub, connector, sink


async def stats_cost(args: argparse.Namespace) -> dict[str, Any]:
    """What the functions' numbers and failure groups add an event: two jobpulses (each with a full job table
    and a client on every dashboard widget), one with that work off, fed the same messages in alternating chunks
    of a hub tick, each chunk's CPU time added to its own."""
    from bench.workload import Stream

    switch = _Switch()

    sides = {"with": jobpulse(args)[:3], "without": jobpulse(args)[:3]}
    chunk, tick, channel = args.chunk, args.tick_events, b"bench:events"

    def feed(side: str, messages: Sequence[bytes], tick_clock: bool) -> None:
        aggregator, hub, connector = sides[side]
        switch.set(side == "with")
        for i in range(0, len(messages), chunk):
            for data in messages[i : i + chunk]:
                connector._on_message(channel, data)
            connector._on_chunk_end()
        if tick_clock:
            clock_tick(aggregator)
        hub.flush()

    # The clock ticks every JOBPULSE_CLOCK_MS (1 s): once every `--clock-events` events (the rate it stands for).
    per_clock = max(1, args.clock_events // tick)

    stream = Stream("f", payload=True)
    for n, _ in enumerate(range(0, args.warm, tick)):
        part = tuple(stream.take(tick, time.time()))
        feed("with", part, n % per_clock == 0)
        feed("without", part, n % per_clock == 0)
    spent = {"with": 0.0, "without": 0.0}
    measured = 0
    for k in range(max(1, args.events // tick)):
        part = tuple(stream.take(tick, time.time()))
        measured += len(part)
        for side in ("with", "without") if k % 2 == 0 else ("without", "with"):
            started = time.process_time()
            feed(side, part, (k + 1) % per_clock == 0)
            spent[side] += time.process_time() - started
    switch.set(True)
    with_us, without_us = (spent[s] / measured * 1e6 for s in ("with", "without"))
    return {"with_us": with_us, "without_us": without_us, "added_us": with_us - without_us}


async def one_run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.workload import Stream
    from server.app import freeze_startup
    from server.streams.core.events import parse_message

    aggregator, hub, connector, sink = jobpulse(args)
    settings = aggregator.settings
    on_message, on_chunk_end = connector._on_message, connector._on_chunk_end
    channel = b"bench:events"
    stream = Stream("f", payload=True)
    freeze_startup()  # as the server's lifespan does once start-up is done: before any job arrives

    chunk, tick = args.chunk, args.tick_events

    def feed(messages: Sequence[bytes]) -> None:
        for i in range(0, len(messages), chunk):
            for data in messages[i : i + chunk]:
                on_message(channel, data)
            on_chunk_end()
            done = (i // chunk + 1) * chunk
            if done % args.clock_events < chunk:
                clock_tick(aggregator)
            if done % tick < chunk:
                hub.flush()

    now = time.time()
    for _ in range(0, args.warm, 50_000):
        feed(stream.take(50_000, now))
    hub.flush()
    # A tuple, not a list: the collector untracks a tuple of bytes, so the benchmark's own input adds nothing to
    # the pauses it measures (a list of 200,000 messages did: 10 ms a full collection).
    measured = tuple(stream.take(args.events, time.time()))
    gc.collect(1)  # the young pass that untracks it, before the clock starts
    jobs = len(aggregator.state.jobs)

    started = time.process_time()
    for data in measured:
        parse_message(data, settings.message_max)
    decode_us = (time.process_time() - started) / len(measured) * 1e6

    pauses = _Pauses()
    gc.callbacks.append(pauses)
    try:
        started = time.process_time()
        feed(measured)
        hub.flush()
        jobpulse_us = (time.process_time() - started) / len(measured) * 1e6
        longest = max((p for _, p in pauses.pauses), default=0.0)
        collections = [sum(1 for g, _ in pauses.pauses if g == gen) for gen in range(3)]
        tracked = len(gc.get_objects())
        pauses.pauses.clear()
        gc.collect()
        full_ms = pauses.pauses[-1][1] * 1000
    finally:
        gc.callbacks.remove(pauses)
        gc.unfreeze()
    rejected = sum(aggregator.state.health.rejected.values())
    if rejected:
        raise RuntimeError(f"{rejected} messages rejected: the workload and the protocol disagree")
    return {
        "decode_us": decode_us,
        "jobpulse_us": jobpulse_us,
        "ratio": jobpulse_us / decode_us,
        "longest_pause_ms": longest * 1000,
        "collections": collections,
        "full_gc_ms": full_ms,
        "tracked_objects": tracked,
        "jobs_held": jobs,
        "bytes_to_client": sum(len(m) for m in sink.messages),
    }


def run_child(args: argparse.Namespace) -> None:
    """One run in a fresh interpreter (so no run inherits another's heap), result as JSON on stdout."""
    import uvloop

    print(json.dumps(uvloop.run(stats_cost(args) if args.stats_cost else one_run(args))))


STATS_FIGURES = (
    ("with_us", "jobpulse µs/event, the functions' numbers and failure groups on", 2),
    ("without_us", "jobpulse µs/event, them off (same process, same messages)", 2),
    ("added_us", "added by them, µs/event (goal: at most 0.5)", 2),
)
FIGURES = (
    ("decode_us", "decode µs/event (baseline)", 2),
    ("jobpulse_us", "jobpulse µs/event", 2),
    ("ratio", "jobpulse / decode", 2),
    ("longest_pause_ms", "longest GC pause in the run, ms", 1),
    ("full_gc_ms", "forced full GC, ms", 1),
    ("tracked_objects", "objects the GC tracks", 0),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 jobs, 50,000 events, 3 repeats")
    parser.add_argument("--jobs", type=int, default=None, help="job table cap, held full (default 100,000)")
    parser.add_argument("--events", type=int, default=None, help="events in the measured run (default 200,000)")
    parser.add_argument("--repeats", type=int, default=None, help="runs, each in a fresh process (default 5)")
    parser.add_argument("--chunk", type=int, default=20, help="messages per socket read (default 20)")
    parser.add_argument(
        "--clock-events",
        type=int,
        default=100_000,
        help="events per clock tick (default 100,000: 100,000 ev/s at the 1 s JOBPULSE_CLOCK_MS)",
    )
    parser.add_argument("--tick-events", type=int, default=5000,
                        help="events per hub tick (default 5,000: 200,000 ev/s at the 25 ms tick)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats-cost", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (20_000 if args.quick else 100_000)
    args.events = args.events or (50_000 if args.quick else 200_000)
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.warm = args.jobs * 4  # a workload job lives through ~3.3 events: 4 per job fills the table
    if args.child:
        run_child(args)
        return 0

    import subprocess

    facts = common.machine_facts()
    common.print_facts(facts)
    print(f"{args.jobs:,} jobs held, {args.events:,} events measured, chunk {args.chunk}, "
          f"a hub tick every {args.tick_events:,} events, {args.repeats} runs")  # fmt: skip
    runs = []
    child = [sys.executable, "-m", "bench.fold", "--child", "--jobs", str(args.jobs), "--events", str(args.events),
             "--chunk", str(args.chunk), "--tick-events", str(args.tick_events),
             "--clock-events", str(args.clock_events)]  # fmt: skip
    for n in range(args.repeats):
        done = subprocess.run(child, capture_output=True, text=True, timeout=600, cwd=common.REPO)
        if done.returncode:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"run {n + 1} failed")
        runs.append(json.loads(done.stdout.splitlines()[-1]))
        print(f"  run {n + 1}: " + ", ".join(f"{k} {common.fmt(runs[-1][k], d)}" for k, _, d in FIGURES), flush=True)
    costs = []
    for n in range(args.repeats):
        done = subprocess.run([*child, "--stats-cost"], capture_output=True, text=True, timeout=900, cwd=common.REPO)
        if done.returncode:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"stats cost run {n + 1} failed")
        costs.append(json.loads(done.stdout.splitlines()[-1]))
        print(f"  stats cost run {n + 1}: " + ", ".join(f"{k} {common.fmt(costs[-1][k], d)}" for k, _, d in
                                                        STATS_FIGURES), flush=True)  # fmt: skip
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for key, label, digits in FIGURES + STATS_FIGURES:
        values = [float(run[key]) for run in (costs if (key, label, digits) in STATS_FIGURES else runs)]
        median = statistics.median(values)
        summary[key] = {"median": median, "min": min(values), "max": max(values)}
        spread = f"{common.fmt(min(values), digits)}-{common.fmt(max(values), digits)}"
        rows.append([label, common.fmt(median, digits), spread])
    print()
    print(common.table(["figure", "median", "spread (min-max)"], rows))
    print(f"\njobs held {runs[0]['jobs_held']:,}; collections in a run (gen 0/1/2): {runs[0]['collections']}")
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "args": {k: v for k, v in vars(args).items() if k != "json"},
                                         "runs": runs, "stats_cost": costs, "summary": summary}, indent=1,
                                        default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
