"""Folding Celery's events: jobpulse against `celery.events.state.State` (what Flower keeps), in one run.

(Named celery_fold, not celery: run as a script, a bench/celery.py would shadow the celery package.)

Both fold the same recorded stream (../shared/data/celery-events-200k.jsonl.gz: 200,078 events of a
real Celery 5.7 worker running 50,000 tasks), each with the same cap on tasks kept, and must agree at the
end: the number of tasks held and how many ended succeeded and failed. Each side runs `--runs` times in
alternation; the best run counts (the machine is shared). CPU time per event, not wall time.

    python -m bench.celery_fold                 # the whole stream, cap 100,000 tasks
    python -m bench.celery_fold --quick         # 40,000 events
    python -m bench.celery_fold --cap 10000     # Celery's own default cap

jobpulse's side is the Celery connector's translator (`server/streams/sources/celery/events.py`) and the real
reducer, so it keeps more than Celery's State does per task (history, search indexes, per-minute and
per-channel series, runner state); the comparison is the work each does for the same stream.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from server.streams.core.reducer import fold, initial_state
from server.streams.core.state import Limits
from server.streams.sources.celery.events import Translator

_NAME = "shared/data/celery-events-200k.jsonl.gz"
DATA = next(
    (p for p in (Path(__file__).resolve().parents[2] / _NAME, Path("/work") / _NAME) if p.exists()),
    Path("/work") / _NAME,
)


def load(limit: int | None) -> list[dict[str, Any]]:
    events = []
    with gzip.open(DATA, "rt") as lines:
        for line in lines:
            events.append(json.loads(line))
            if limit is not None and len(events) == limit:
                break
    return events


def run_celery(events: list[dict[str, Any]], cap: int) -> tuple[float, dict[str, int]]:
    from celery.events.state import State

    state = State(max_tasks_in_memory=cap, max_workers_in_memory=5000)
    event = state.event
    gc.collect()
    started = time.process_time()
    for e in events:
        event(dict(e))  # State mutates nothing it is given, but copy as a receiver's fresh dict would be
    spent = time.process_time() - started
    states = Counter(task.state for _, task in state.tasks.items())
    return spent, {"tasks": len(state.tasks), "succeeded": states["SUCCESS"], "failed": states["FAILURE"]}


def run_jobpulse(events: list[dict[str, Any]], cap: int) -> tuple[float, dict[str, int]]:
    translator = Translator(max_tasks=cap)
    state = initial_state(Limits(max_jobs=cap))
    translate = translator.translate
    gc.collect()
    started = time.process_time()
    for e in events:
        at = e["local_received"]
        for translated in translate(dict(e)):
            fold(state, translated, at)
    spent = time.process_time() - started
    statuses = Counter(job.status for job in state.jobs.values())
    return spent, {"tasks": len(state.jobs), "succeeded": statuses["completed"], "failed": statuses["failed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the first 40,000 events, 2 runs")
    parser.add_argument("--cap", type=int, default=100_000, help="tasks kept by each side (default 100,000)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: the recorded stream is not on this machine ({DATA})")
        return 0
    events = load(40_000 if args.quick else None)
    runs = 2 if args.quick else args.runs
    print(f"{len(events):,} recorded Celery events; cap {args.cap:,} tasks; best of {runs} runs (CPU time)\n")
    best: dict[str, tuple[float, dict[str, int]]] = {}
    for _ in range(runs):
        for name, run in (("celery State", run_celery), ("jobpulse", run_jobpulse)):
            spent, counts = run(events, args.cap)
            if name not in best or spent < best[name][0]:
                best[name] = (spent, counts)
    base = best["celery State"][0]
    print("| consumer | µs/event | events/s | vs celery State | tasks kept | succeeded | failed |")
    print("|---|---|---|---|---|---|---|")
    for name, (spent, counts) in best.items():
        per = spent / len(events) * 1e6
        print(f"| {name} | {per:.2f} | {len(events) / spent:,.0f} | {base / spent:.2f}x | {counts['tasks']:,} | "
              f"{counts['succeeded']:,} | {counts['failed']:,} |")  # fmt: skip
    same = best["celery State"][1] == best["jobpulse"][1]
    print(f"\ncounts at the end {'match' if same else 'DIFFER'}: {best['celery State'][1]} vs {best['jobpulse'][1]}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
