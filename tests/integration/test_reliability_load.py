"""Slow and stalled clients, a mass reconnect and a soak, short (issue #6; docs/reliability.md 3, 4 and 5).

Each test runs bench/reliability.py's --quick mode (200 websocket clients in
child processes, the real server, the test's Redis) with a hard timeout and
checks the JSON it writes: what must happen (who is closed, resynced,
resumed, sent a snapshot; memory, tasks and descriptors flat), not how fast.
The only bare time is a functional deadline, with three times its goal as
margin: a stalled client closed within the stall rule's allowance (the hub's
stall bound from the moment it stopped reading, docs/protocol.md 3.5).
The speed goals (the healthy clients' p99 with 5% misbehaving within 1.1 of
without, p99 back within 500 ms after a reconnect, the stall allowance
itself) are measured by `python -m bench.reliability`, whose `checks:` line
holds them and whose full runs docs/reliability.md sections 3 and 4 record;
a short run on a shared machine is too noisy for them (a 6 s window's p99
B/A read 1.9 here with the suite running beside it), so the tests print them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import REPO

pytestmark = [pytest.mark.integration, pytest.mark.load]

STALL_BOUND_FACTOR = 3  # a stalled client must be closed within three times the stall rule's allowance (its goal)


def run_scenario(redis_url: str, tmp_path: Path, scenario: str, *extra: str, timeout: float) -> dict[str, Any]:
    """Run one scenario in a child process; return its result (the script stops everything it started)."""
    out = tmp_path / f"{scenario}.json"
    argv = [
        sys.executable, "-m", "bench.reliability", "--scenario", scenario, "--quick", "--redis-url", redis_url,
        "--json", str(out), "--timeout", str(timeout - 15), *extra,
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report["interrupted"] is None, report["interrupted"]
    result: dict[str, Any] = report["result"]
    return result


@pytest.mark.timeout(210)
def test_slow_and_stalled_clients_cost_the_healthy_ones_nothing(redis_url: str, tmp_path: Path) -> None:
    """5% of 200 clients read slowly or stop reading, in B windows between A windows where they read: the healthy
    clients keep receiving; every stalled client is closed by the hub's stall rule, in time; slow readers stay, with
    their backlog dropped for a snapshot; the server's memory in B is that of A."""
    # About 110 s alone: each B window lasts until its slow readers have had a snapshot (their buffers fill first).
    r = run_scenario(redis_url, tmp_path, "slow", "--window", "6", timeout=210)
    assert r["connected"] == r["healthy"] and r["checks"]["healthy_stayed_open"]
    # Healthy clients kept receiving in every window, B ones included. How fast (their p99 with the misbehaving 5%
    # against without them, aim 1.1) is the bench's figure: a 6 s window on a shared machine is too noisy for it.
    assert all(w["samples"] > 0 for w in r["windows"]), [(w["phase"], w["samples"]) for w in r["windows"]]
    print(f"healthy p99 B/A {r['p99_ratio']:.2f} (the bench's aim 1.1)")
    # Stalled: every one closed by the hub's stall rule (4408, not uvicorn's keepalive), in time: the goal is the
    # rule's allowance from the moment it stopped reading (the bench's check); the bound three times that.
    assert r["stalled_total"] == 2 * r["stalled"] and r["stalled_closed"] == r["stalled_total"]
    assert r["hub_stalled_closed"] >= r["stalled_total"]
    print(f"stalled clients closed {r['stop_to_close_max_s']:.1f} s at most after they stopped reading "
          f"(goal: the allowance, {r['stall_allowance_s']:.1f} s)")  # fmt: skip
    bound = STALL_BOUND_FACTOR * r["stall_allowance_s"]
    assert r["stop_to_close_max_s"] <= bound, (r["stop_to_close_max_s"], r["stall_allowance_s"])
    # The server's kernel buffer per websocket is bounded (JOBPULSE_WS_SNDBUF): a stalled socket shows in seconds.
    assert r["kernel_kib_max"] < 512, r["kernel_kib_max"]
    # Slow readers: resynced (outbox dropped for a snapshot), never closed.
    assert r["slow_closed"] == 0 and r["hub_resyncs"] >= r["slow_total"] + r["stalled_total"]
    # Memory: what B windows add over their A neighbours stays small.
    assert max(r["rss_excess_mib"]) <= 0.15 * r["rss_mib"]["before"], (r["rss_excess_mib"], r["rss_mib"])


@pytest.mark.timeout(120)
def test_mass_reconnect_resumes_and_encodes_snapshots_once(redis_url: str, tmp_path: Path) -> None:
    """Every connection dropped at once: every client resumes (no snapshot, no seq gap). The server restarted: every
    client gets snapshots, encoded once per widget version however many clients take them."""
    r = run_scenario(redis_url, tmp_path, "reconnect", timeout=120)
    n = r["clients"]
    cases = r["cases"]
    for name in ("drop", "drop_jitter"):
        case = cases[name]
        assert (case["resumed"], case["snapshot"], case["failed"], case["gaps"]) == (n, 0, 0, 0), case
        assert case["snapshots_encoded"] <= case["widget_versions"], case
    for name in ("restart", "restart_jitter"):
        case = cases[name]
        assert (case["snapshot"], case["failed"]) == (n, 0), case
        assert case["snapshots_encoded"] <= case["widget_versions"], case
        assert case["snapshot_frames"] >= 5 * case["snapshots_encoded"], case  # shared, not encoded per client
    assert cases["restart"]["epoch"] != cases["drop"]["epoch"]
    # Every client back (`failed` 0 above) within its own reconnect deadline (10 s, twenty times the goal). How fast
    # (the goal: p99 within 500 ms as pages reconnect, with full jitter over 500 ms) is the bench's figure, measured
    # and checked by `python -m bench.reliability --scenario reconnect` and recorded in docs/reliability.md 4.
    print(
        "first frame p99: " + ", ".join(f"{name} {case['first_frame_p99_ms']:.0f} ms" for name, case in cases.items())
    )


@pytest.mark.timeout(120)
def test_soak_keeps_memory_tasks_and_descriptors_flat(redis_url: str, tmp_path: Path) -> None:
    """A minute of 1,000 events/s to 200 clients: after a 30 s warm-up, RSS stays within 10%, asyncio tasks and
    open file descriptors do not grow, the intake keeps up and every client stays connected."""
    r = run_scenario(redis_url, tmp_path, "soak", timeout=120)
    checks = r["checks"]
    assert checks["clients_stayed_open"] and checks["intake_kept_up_95pct"], checks
    assert checks["tasks_do_not_grow"] and checks["fds_do_not_grow"], checks
    assert r["rss_steady_max_mib"] <= 1.1 * r["rss_steady_min_mib"], r["samples"]
    # Two tasks per client (its socket's and its writer) plus a fixed few: nothing accumulates per message.
    assert r["tasks_last_third_max"] <= 2 * r["clients"] + 50
