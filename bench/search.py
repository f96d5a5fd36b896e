"""Job lookup and search with 100,000 jobs in the index (issue #3): jobpulse against a naive scan, in one run.

jobpulse answers the job table's queries from the fold's indexes (server/streams/core/search.py).
The baseline is what a dashboard without indexes does: scan every job with the same
predicate, sort every match, slice the page. Both see the same state, built by folding
a realistic event mix (queued, started, finished; 10% failures; 200 runners; 10
channels; 30 functions; correlation ids) through the real reducer. Each query runs a
few times; the best time counts (the machine is shared).

    python -m bench.search            # 100,000 jobs
    python -m bench.search --quick    # 20,000 jobs
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from server.streams.core import search
from server.streams.core.jobs import Job
from server.streams.core.reducer import fold, initial_state
from server.streams.core.state import Limits, State
from tests.unit.factories import job

QUERIES = [
    ("", "-updated"),
    ("", "-duration"),
    ("status:failed", "-updated"),
    ("status:completed channel:ch3", "-updated"),
    ("func:app.tasks.fn1*", "-duration"),
    ("runner:r1* status:completed", "started"),
    ("status:failed -channel:ch1 attempt:1", "-updated"),
    ("status:running", "started"),
    ("order-777", "-updated"),
]
AIM_MS = 50.0


def build(n: int) -> State:
    state = initial_state(Limits(max_jobs=n))
    t0 = 1_800_000_000.0
    for i in range(n):
        kw: dict[str, Any] = {"channel": f"ch{i % 10}", "fn": f"app.tasks.fn{i % 30}"}
        jid = f"j_{i:08x}"
        at = t0 + i * 0.01
        fold(state, job("queued", jid, ts=at, cid=f"order-{i // 3}", payload={"user": i}, **kw), at)
        fold(state, job("started", jid, ts=at + 1, runner=f"r{i % 200}", started_at=at + 1, **kw), at + 1)
        if i % 10 == 0:
            fold(state, job("failed", jid, ts=at + 2, runner=f"r{i % 200}", duration=1.0, error="ValueError: x", **kw),
                 at + 2)  # fmt: skip
        elif i % 7:
            fold(state, job("completed", jid, ts=at + 2, runner=f"r{i % 200}", duration=1.0 + i % 13, **kw), at + 2)
    return state


def naive(state: State, query: search.Query, sort: str, offset: int, limit: int) -> tuple[list[Job], int]:
    """No indexes: test every job, sort every match."""
    matches = search._matcher(state, query)
    found = [j for j in state.jobs.values() if matches(j)]
    key, descending = search._sort_key(sort)
    found.sort(key=key, reverse=descending)
    return found[offset : offset + limit], len(found)


def best_ms(fn: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 jobs, fewer runs")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = 20_000 if args.quick else args.jobs
    runs = 3 if args.quick else args.runs
    started = time.perf_counter()
    state = build(n)
    gc.collect()
    print(f"built {len(state.jobs):,} jobs in {time.perf_counter() - started:.1f} s; best of {runs} runs per query\n")
    rows = []
    for text, sort in [*QUERIES, ("__find__", "")]:
        if text == "__find__":
            label = "lookup by correlation id (find)"
            ours = best_ms(lambda: search.find(state, "order-777"), runs)
            base = best_ms(
                lambda: [j for j in state.jobs.values() if j.id == "order-777" or j.cid == "order-777"], runs
            )
            total = len(search.find(state, "order-777"))
        else:
            query = search.parse_query(text)
            label = f"{text or '(everything)'} sort {sort}"
            result = search.run_query(state, query, sort, 0, 50)
            _, expected_total = naive(state, query, sort, 0, 50)
            assert result.total == expected_total, (text, result.total, expected_total)
            ours = best_ms(lambda q=query, s=sort: search.run_query(state, q, s, 0, 50), runs)  # type: ignore[misc]
            base = best_ms(lambda q=query, s=sort: naive(state, q, s, 0, 50), runs)  # type: ignore[misc]
            total = result.total
        rows.append((label, total, ours, base))
    width = max(len(r[0]) for r in rows)
    print(f"| {'query':{width}} | matches | jobpulse ms | naive scan ms | naive / jobpulse | under {AIM_MS:.0f} ms |")
    print(f"|{'-' * (width + 2)}|---------|-------------|---------------|------------------|-------------|")
    for label, total, ours, base in rows:
        print(f"| {label:{width}} | {total:7,} | {ours:11.1f} | {base:13.1f} | {base / ours:15.1f}x | "
              f"{'yes' if ours < AIM_MS else 'NO':>11} |")  # fmt: skip
    worst = max(r[2] for r in rows)
    print(f"\nslowest jobpulse answer {worst:.1f} ms with {len(state.jobs):,} jobs (aim: under {AIM_MS:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
