"""The Runners Console at 1,000 runners, in Chromium: how long a filter, a page or a search takes to render.

The goal: with 1,000 runners beating, each of the operator's steps renders within 2 s. The browser test
(tests/e2e/test_runners.py::test_a_thousand_runners) runs the steps once and holds each to three times the goal;
this script runs the very same steps (`filter_and_page`) on a fresh page several times against one real server,
and prints min / median / max per step against the goal, and the page's long tasks (main-thread work of 50 ms or
more: how long the page could not answer the operator).

    python -m bench.pages --quick        # one round
    python -m bench.pages                # 5 rounds

Chromium comes from tests/provision.py (JOBPULSE_CHROMIUM, /usr/bin/chromium, or Debian's package), as for the
browser tests; Redis from --redis-url, REDIS_URL, or a private redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common


def run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    from tests import provision
    from tests.conftest import LiveServer
    from tests.e2e.conftest import CHROMIUM_ARGS
    from tests.e2e.support import Source, expect
    from tests.e2e.test_runners import filter_and_page, open_console, thousand_beats

    executable = provision.chromium()
    prefix = common.unique_prefix("pages")
    server = LiveServer(args.redis_url, prefix).start()
    manager = sync_playwright().start()
    try:
        browser = manager.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        with Source.connect(args.redis_url, prefix, broker="e2e-broker", interval=60.0, region="e2e-region") as src:
            src.beats(*thousand_beats(src, 0))
            for n in range(1, args.rounds + 1):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.set_default_timeout(10_000)
                try:
                    page = context.new_page()
                    started = time.monotonic()
                    open_console(page, server)
                    expect(page.locator("#fleet [data-f=all]")).to_have_text("1,000", timeout=15_000)
                    expect(page.locator("#fleet .rcard")).to_have_count(60)
                    result["first_draw_s"].append(time.monotonic() - started)
                    figures = filter_and_page(page, src, bound_ms=args.step_timeout * 1000)
                except AssertionError as exc:  # a step did not render within --step-timeout
                    result["errors"].append(f"round {n}: {str(exc)[:300]}")
                    print(f"round {n}: FAILED: {result['errors'][-1]}", flush=True)
                    continue
                finally:
                    context.close()
                for name, seconds in figures["steps"].items():
                    result["steps"].setdefault(name, []).append(seconds)
                result["long_task_max_ms"].append(max(figures["long_tasks_ms"], default=0))
                steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in figures["steps"].items())
                print(f"round {n}: {steps} s; longest task {result['long_task_max_ms'][-1]} ms", flush=True)
        browser.close()
    finally:
        manager.stop()
        server.finish()
        common.delete_prefix(args.redis_url, prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds, each on a fresh page (default 5; quick 1)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--step-timeout", type=float, default=30.0, help="give up on a step after this, s (30)")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else a private redis-server")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--timeout", type=float, default=None, help="hard timeout of the whole run, s")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.timeout = args.timeout or 120 + 60 * args.rounds
    from tests.e2e.test_runners import FILTER_GOAL_S

    result: dict[str, Any] = {"goal_s": FILTER_GOAL_S, "first_draw_s": [], "steps": {}, "long_task_max_ms": [],
                              "errors": [], "interrupted": None}  # fmt: skip
    facts = common.machine_facts()
    common.terminate_on_sigterm()
    from tests.provision import Missing

    title = f"jobpulse pages: the Runners Console at 1,000 runners, {args.rounds} round(s)"
    try:
        with common.session(args, facts, title):
            run(args, result)
    except Missing as exc:  # no Chromium, and it could not be installed from here: it says how
        result["errors"].append(str(exc))
        print(f"no browser: {exc}")
    except (KeyboardInterrupt, SystemExit, common.HardTimeout) as exc:
        result["interrupted"] = f"{type(exc).__name__}: {exc}"
        print(f"\ninterrupted: {result['interrupted']}")
    rows: list[list[Any]] = []
    for name, values in [("first draw (not a filter step)", result["first_draw_s"]), *result["steps"].items()]:
        if not values:
            continue
        figures = [f"{min(values):.2f}", f"{statistics.median(values):.2f}", f"{max(values):.2f}"]
        under = f"{sum(1 for v in values if v < FILTER_GOAL_S)} of {len(values)}" if name in result["steps"] else "-"
        rows.append([name, len(values), *figures, under])
    print()
    print(common.table(["step", "n", "min s", "median s", "max s", f"under {FILTER_GOAL_S:.0f} s"], rows))
    tasks = result["long_task_max_ms"]
    if tasks:
        print(f"longest task per round: {', '.join(str(t) for t in tasks)} ms")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"facts": facts, "args": vars(args), "result": result}, out, indent=1, default=str)
    return 1 if result["errors"] or result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
