"""`/metrics` for Prometheus (jobpulse's own health and the fleet's) and structured logs, on a live server."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from server.redis_server import free_port
from tests.conftest import LiveServer, SimulatedFleet, bearer, users_env
from tests.integration.helpers import LiveClient, serve


def scrape(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers=headers or {}), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_metrics_of_a_live_fleet(live_server: LiveServer, simulated_fleet: SimulatedFleet) -> None:
    deadline = time.monotonic() + 15
    status, text = scrape(live_server.url)
    while "jobpulse_fold_lag_seconds" not in text and time.monotonic() < deadline:
        time.sleep(0.2)  # the fold lag is known from the first live job event on
        status, text = scrape(live_server.url)
    assert status == 200
    for name in ("jobpulse_events_total", "jobpulse_source_up", "jobpulse_clients", "jobpulse_ticks_total",
                 "jobpulse_runners", "jobpulse_channel_queued", "jobpulse_commands_total",
                 "jobpulse_fold_lag_seconds", "jobpulse_ticks_stretched_total"):  # fmt: skip
        assert name in text, name
    assert 'jobpulse_source_up{kind="native",source="native"} 1.0' in text
    assert "jobpulse_tick_interval_seconds 0.025" in text  # a quiet test server keeps the configured tick
    online = [line for line in text.splitlines() if line.startswith('jobpulse_runners{status="online"}')
              or line.startswith('jobpulse_runners{status="busy"}')]  # fmt: skip
    assert sum(float(line.split()[-1]) for line in online) >= 1
    assert 'jobpulse_channel_queued{channel="' in text


@pytest.fixture
def signed_server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    server = LiveServer(redis_url, prefix, env=users_env()).start()
    yield server
    server.stop()
    server.close()


def test_metrics_need_a_token(signed_server: LiveServer) -> None:
    status, _ = scrape(signed_server.url)
    assert status == 401
    status, text = scrape(signed_server.url, bearer("vera"))
    assert status == 200 and "jobpulse_events_total" in text


def test_json_logs_are_one_object_per_line(redis_url: str, prefix: str) -> None:
    """JOBPULSE_LOG_FORMAT=json: every line jobpulse and uvicorn write is a JSON object with the fixed keys."""
    server = LiveServer(redis_url, prefix, env={"JOBPULSE_LOG_FORMAT": "json", "JOBPULSE_LOG_LEVEL": "info"})
    server.start()
    output = server.finish()
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "the server logged nothing at info"
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg", "pid"} <= set(r) for r in records), records
    assert any(r["logger"].startswith("jobpulse") for r in records)
    assert not [r for r in records if r["level"] == "error"], records


@pytest.mark.parametrize("access_log", [False, True])
async def test_upgrade_lines_are_logged_only_with_the_access_log(redis_url: str, prefix: str, access_log: bool) -> None:
    """At the info level uvicorn writes a line per websocket upgrade; like its HTTP access lines they are left out
    unless JOBPULSE_ACCESS_LOG is set (a wall of pages reconnecting at once would write one each)."""
    port = free_port()
    env = {"REDIS_URL": redis_url, "JOBPULSE_PREFIX": prefix, "JOBPULSE_AUTH": "dev", "HOST": "127.0.0.1",
           "PORT": str(port), "JOBPULSE_LOG_LEVEL": "info",
           "JOBPULSE_ACCESS_LOG": "1" if access_log else "0"}  # fmt: skip
    proc = serve(env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = await LiveClient.connect(f"ws://127.0.0.1:{port}/ws", ["counters"])
                break
            except OSError:
                assert time.monotonic() < deadline, "jobpulse serve did not listen"
                await asyncio.sleep(0.2)
        await client.wait_for(lambda c: "counters" in c.data, 5)
        await client.close()
    finally:
        os.killpg(proc.pid, 15)
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
    text = err.decode(errors="replace")
    assert "Application startup complete" in text  # info lines are written
    assert ('"WebSocket /ws" [accepted]' in text) is access_log, text[-2000:]
