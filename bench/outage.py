"""Outage goals (docs/reliability.md section 1): how soon a source's outage is said, how soon the truth is back.

The goals: an outage is said (health card, banner, /readyz) within 2 s of the fault, and within 5 s of the
source's return jobpulse's state equals what the source says, changes made meanwhile included. The fault tests run
one round each and hold it to three times the goals (a test on a loaded, shared machine must not fail on speed);
this script runs the very same rounds several times and prints min / median / max of each figure against its goal.

Faults (each round starts what it needs: a private redis-server, a real jobpulse, a fleet, and stops them):

- `redis-crash`: Redis SIGKILLed under a simulated fleet, started again after 1 s (its data from the append-only
  file), a runner removed, one added and a depth changed behind jobpulse's back (tests/outage.py);
- `network-stall`: the same with jobpulse reading Redis through tests/faultproxy.py, which stalls for 1 s;
- `celery-broker-crash`: the Celery broker SIGKILLed under a live worker, the queue's list changed as it returns
  (tests/integration/test_celery.py);
- `postgres-cut`, `postgres-stall`: django-mojo's Postgres cut or stalled while its engine finishes three jobs
  (tests/integration/test_mojo_source.py; Postgres and django-mojo's own environment come from
  tests/provision.py, as for the tests);
- `mojo-event`: not an outage: 5 jobs a round, each from django-mojo's row saying completed to jobpulse counting
  it (goal 1 s).

    python -m bench.outage --quick                   # one round of each fault
    python -m bench.outage                           # 5 rounds of each
    python -m bench.outage --faults redis-crash,network-stall --rounds 10

It exits 1 when a round failed outright (an error, or a bound of the tests passed); a figure over its goal is
reported, not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common

NATIVE = ("redis-crash", "network-stall")
CELERY = ("celery-broker-crash",)
MOJO = ("postgres-cut", "postgres-stall", "mojo-event")
FAULTS = (*NATIVE, *CELERY, *MOJO)
EVENT_JOBS = 5  # jobs per mojo-event round


def goals(faults: list[str]) -> dict[str, float]:
    """Each figure's goal, from the modules whose tests hold a round to three times it."""
    from tests.outage import HEALED_GOAL_S, SAID_GOAL_S

    found = {"said": SAID_GOAL_S, "healed": HEALED_GOAL_S}
    if "mojo-event" in faults:
        from tests.integration.test_mojo_source import EVENT_GOAL_S

        found["counted"] = EVENT_GOAL_S
    return found


def native_round(fault: str, prefix: str) -> dict[str, list[float]]:
    from tests.outage import network_stall_round, redis_crash_round

    run = redis_crash_round if fault == "redis-crash" else network_stall_round
    timings, output = asyncio.run(run(prefix))
    assert "Traceback" not in output, output
    return {"said": [timings["said"]], "healed": [timings["healed"]]}


def celery_round(fault: str, prefix: str) -> dict[str, list[float]]:
    from tests.integration.test_celery import broker_crash_round

    timings = broker_crash_round(prefix)
    return {"said": [timings["said"]], "healed": [timings["healed"]]}


@contextlib.contextmanager
def mojo_rounds() -> Iterator[Callable[[str, str], dict[str, list[float]]]]:
    """django-mojo's deployment (the test module's), up for every mojo round; yields the round function."""
    from tests.conftest import LiveServer
    from tests.integration.test_mojo_source import event_delays, mojo_deployment, postgres_outage_round

    with mojo_deployment() as mojo:

        def run(fault: str, prefix: str) -> dict[str, list[float]]:
            if fault == "mojo-event":
                live = LiveServer(mojo.redis_url, prefix, env=mojo.jobpulse_env()).start()
                try:
                    delays = event_delays(mojo, live, EVENT_JOBS)
                finally:
                    output = live.finish()
                assert "Traceback" not in output, output
                return {"counted": delays}
            timings = postgres_outage_round(mojo, prefix, fault.removeprefix("postgres-"))
            return {"said": [timings["said"]], "healed": [timings["healed"]]}

        yield run


def run_faults(
    faults: list[str], rounds: int, runner: Callable[[str, str], dict[str, list[float]]], result: dict[str, Any]
) -> None:
    """`rounds` rounds of each fault, one after the other, each on a prefix of its own; figures into `result`."""
    for fault in faults:
        entry = result["faults"].setdefault(fault, {"figures": {}, "errors": []})
        for n in range(1, rounds + 1):
            started = time.monotonic()
            try:
                figures = runner(fault, common.unique_prefix("outage"))
            except (AssertionError, TimeoutError, RuntimeError, OSError) as exc:
                entry["errors"].append(f"round {n}: {type(exc).__name__}: {str(exc)[:300]}")
                print(f"{fault} round {n}: FAILED after {time.monotonic() - started:.0f} s: {entry['errors'][-1]}")
                continue
            for name, values in figures.items():
                entry["figures"].setdefault(name, []).extend(values)
            shown = ", ".join(f"{name} {', '.join(f'{v:.2f}' for v in values)} s" for name, values in figures.items())
            print(f"{fault} round {n}: {shown} ({time.monotonic() - started:.0f} s)", flush=True)


def skipped(fault_group: tuple[str, ...], faults: list[str], reason: str, result: dict[str, Any]) -> None:
    for fault in fault_group:
        if fault in faults:
            result["faults"][fault] = {"figures": {}, "errors": [], "skipped": reason}
            print(f"{fault}: skipped: {reason}")


def summarize(result: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    targets = result["goals"]
    for fault, entry in result["faults"].items():
        if entry.get("skipped"):
            rows.append([fault, "-", "-", 0, "-", "-", "-", f"skipped: {entry['skipped'][:60]}"])
            continue
        for name, values in entry["figures"].items():
            goal = targets[name]
            low, mid, high = min(values), statistics.median(values), max(values)
            met = sum(1 for v in values if v < goal)
            entry.setdefault("summary", {})[name] = {
                "n": len(values), "min": low, "median": mid, "max": high, "goal": goal, "under_goal": met,
            }  # fmt: skip
            figures = [f"{low:.2f}", f"{mid:.2f}", f"{high:.2f}"]
            rows.append([fault, name, f"{goal:.0f}", len(values), *figures, f"{met} of {len(values)}"])
        if entry["errors"]:
            rows.append([fault, "failed rounds", "-", len(entry["errors"]), "-", "-", "-", "see above"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each fault (default 5; quick 1)")
    parser.add_argument("--quick", action="store_true", help="one round of each fault")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--timeout", type=float, default=None, help="hard timeout of the whole run, s")
    args = parser.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults: {', '.join(unknown)} (known: {', '.join(FAULTS)})")
    rounds = args.rounds or (1 if args.quick else 5)
    timeout = args.timeout or 180 + 75 * rounds * len(faults)
    common.terminate_on_sigterm()
    facts = common.machine_facts()
    print(f"jobpulse outage goals: {', '.join(faults)}, {rounds} round{'s' if rounds > 1 else ''} each")
    common.print_facts(facts)
    result: dict[str, Any] = {"goals": goals(faults), "rounds": rounds, "faults": {}, "interrupted": None}
    try:
        with common.hard_timeout(timeout):
            run_faults([f for f in faults if f in NATIVE], rounds, native_round, result)
            if any(f in CELERY for f in faults):
                try:
                    import celery  # noqa: F401
                except ImportError:
                    skipped(CELERY, faults, "the celery extra is not installed", result)
                else:
                    run_faults([f for f in faults if f in CELERY], rounds, celery_round, result)
            if any(f in MOJO for f in faults):
                import pytest

                from tests import provision

                try:
                    with mojo_rounds() as mojo_round:
                        run_faults([f for f in faults if f in MOJO], rounds, mojo_round, result)
                except (pytest.fail.Exception, pytest.skip.Exception) as exc:  # tests/provision.py could not bring
                    skipped(MOJO, faults, str(exc), result)  # up Postgres or django-mojo's environment: it says how
                finally:
                    provision.stop_started()  # a private PostgreSQL it started for these rounds
    except (KeyboardInterrupt, SystemExit, common.HardTimeout) as exc:
        result["interrupted"] = f"{type(exc).__name__}: {exc}"
        print(f"\ninterrupted: {result['interrupted']}")
    print()
    print(common.table(["fault", "figure", "goal s", "n", "min s", "median s", "max s", "under the goal"],
                       summarize(result)))  # fmt: skip
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"facts": facts, "args": vars(args), "result": result}, out, indent=1, default=str)
    failed = any(entry["errors"] for entry in result["faults"].values())
    return 1 if failed or result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
