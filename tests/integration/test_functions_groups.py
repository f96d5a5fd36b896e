"""Per-function numbers and failure groups against the truth: the simulator's own events and a real Celery worker.

A real jobpulse (uvicorn) folds what a real fleet publishes; the test hears the same pub/sub channel and
computes the exact numbers itself (runs, failures, runtime and wait percentiles, causes), then checks the
`functions` and `failure_groups` widgets against them: counts exactly, percentiles within the sketch's stated
2%. A restart must bring the same numbers back from Redis. Against a real Celery worker: the groups a person
would name, and a group retried (two phases, over the socket, audited) and muted.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from server.streams.core import sketch
from server.streams.core.fingerprint import cause
from tests.celery_cluster.worker import Worker
from tests.conftest import LiveServer, bearer, users_env
from tests.integration.helpers import LiveClient
from tests.integration.test_simulator import eventually, fleet_running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Obj = dict[str, Any]
QS = (0.5, 0.9, 0.95, 0.99)


def api(server: LiveServer, path: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(server.url + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def view(server: LiveServer, key: str) -> Any:
    """A parametrized widget's data, as a client that subscribes to it gets it."""

    async def get() -> Any:
        client = await LiveClient.connect(server.ws_url, [key])
        try:
            await client.wait_for(lambda c: key in c.data, 10)
            return client.data[key]
        finally:
            await client.close()

    return asyncio.run(get())


def exact(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))]


def close(read: float | None, true: float) -> bool:
    """Within the sketch's bound (and the view's 4 significant digits); under its smallest bucket, 0."""
    if true <= sketch.MIN_VALUE:
        return read == 0.0
    return read is not None and abs(read - true) <= (sketch.ALPHA + 0.0005) * true


class Truth:
    """What the fleet published, folded the simplest way: each attempt's end and start, by function."""

    def __init__(self, objects: list[Obj]) -> None:
        self.runs: dict[str, dict[str, int]] = {}
        self.runtimes: dict[str, list[float]] = {}
        self.waits: dict[str, list[float]] = {}
        self.causes: dict[str, int] = {}
        since: dict[str, float] = {}
        started: dict[tuple[str, int], float] = {}
        seen: set[str] = set()
        for ev in objects:
            if ev.get("type") != "job" or ev["id"] in seen:
                continue
            seen.add(ev["id"])
            name, fn, job = ev["event"], ev["fn"], ev["job"]
            attempt = ev.get("attempt", 1)
            if name == "queued":
                since[job] = ev.get("queued_at") or ev["ts"]
            elif name == "scheduled":
                since[job] = ev.get("run_at") or ev["ts"]
            elif name == "started":
                start = ev.get("started_at") or ev["ts"]
                started[(job, attempt)] = start
                if job in since:
                    self.waits.setdefault(fn, []).append(start - since.pop(job))
            elif name in ("completed", "failed", "retried"):
                counts = self.runs.setdefault(fn, {"completed": 0, "failed": 0, "retried": 0})
                counts[name] += 1
                runtime = ev.get("duration")
                if runtime is None and ev.get("started_at") is not None:
                    runtime = ev["ts"] - ev["started_at"]
                if runtime is None and (job, attempt) in started:
                    runtime = ev["ts"] - started[(job, attempt)]
                if runtime is not None:
                    self.runtimes.setdefault(fn, []).append(runtime)
                if name == "retried":
                    since[job] = ev.get("run_at") or ev["ts"]
                if name == "failed":
                    fp = cause(ev.get("error"), ev.get("traceback")).fingerprint
                    self.causes[fp] = self.causes.get(fp, 0) + 1


@pytest.fixture
def native(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    server = LiveServer(redis_url, prefix, {"JOBPULSE_CLOCK_MS": "250", "JOBPULSE_PERSIST_S": "0.5"}).start()
    yield server
    output = server.finish()
    assert "Traceback" not in output, output


def test_functions_and_failure_groups_match_what_the_simulator_did_and_survive_a_restart(
    native: LiveServer, redis_url: str, prefix: str
) -> None:
    async def run() -> list[Obj]:
        async with fleet_running(redis_url, prefix, rate=60.0, runners=4, channels=4) as (_fleet, feed):
            await eventually(lambda: sum(1 for o in feed.objects if o.get("event") == "failed") >= 3, 30)
            await asyncio.sleep(2.0)
        return feed.objects

    objects = asyncio.run(run())
    truth = Truth(objects)
    total = sum(sum(c.values()) for c in truth.runs.values())
    assert total > 100 and truth.causes

    def caught_up() -> Obj | None:
        data = api(native, "/api/functions")
        runs = sum(row["runs"] for row in data["functions"].values())
        return data if runs == total else None

    data = asyncio.run(_poll(caught_up, 20))
    for fn, counts in truth.runs.items():
        row = data["functions"][fn]
        assert (row["completed"], row["failed"], row["retried"]) == (
            counts["completed"], counts["failed"], counts["retried"]
        ), fn  # fmt: skip
        for q, got in zip(QS, row["runtime"][:4], strict=True):
            assert close(got, exact(truth.runtimes[fn], q)), (fn, q, got, exact(truth.runtimes[fn], q))
        assert row["runtime"][4] == pytest.approx(max(truth.runtimes[fn]), rel=5e-4)  # exact, to 4 digits
        if fn in truth.waits:
            assert close(row["wait"][2], exact(truth.waits[fn], 0.95)), (fn, row["wait"], truth.waits[fn])
    # Each channel's numbers are its functions' together.
    assert sum(r["runs"] for r in data["channels"].values()) == total

    groups = api(native, "/api/failure-groups")
    assert {g: row["count"] for g, row in groups["rows"].items()} == truth.causes

    # A restart brings the same numbers back from Redis: the window, the sketches, the groups.
    busiest = max(truth.runs, key=lambda f: sum(truth.runs[f].values()))
    chart = view(native, f"function?gran=minutes&name={busiest}")
    assert sum(p[0] for p in chart["points"].values()) == sum(truth.runs[busiest].values())
    native.stop()
    native.start()
    after = asyncio.run(_poll(lambda: (d := api(native, "/api/functions"))["functions"] and d, 15))
    assert after["functions"] == data["functions"] and after["channels"] == data["channels"]
    assert {g: row["count"] for g, row in api(native, "/api/failure-groups")["rows"].items()} == truth.causes
    assert view(native, f"function?gran=minutes&name={busiest}")["points"] == chart["points"]
    # The store's whole retention answers for scripts, minute by minute.
    fn = next(iter(truth.runs))
    history = api(native, f"/api/functions/{fn}?res=minute")
    assert sum(p["runs"] for p in history["points"]) == sum(truth.runs[fn].values())


async def _poll(check: Any, within: float) -> Any:
    found: list[Any] = []

    def hit() -> bool:
        value = check()
        if value:
            found.append(value)
        return bool(value)

    await eventually(hit, within)
    return found[-1]


# -- a real Celery worker -------------------------------------------------------------------------------------


def test_a_real_celery_workers_failures_group_by_cause_and_a_group_is_retried_and_muted(
    broker: str, prefix: str
) -> None:
    from tests.celery_cluster.app import Tasks

    tasks = Tasks(broker)
    env = users_env(JOBPULSE_SOURCE="celery", JOBPULSE_CLOCK_MS="250", JOBPULSE_GROUP_NEW_MIN="3")
    server = LiveServer(broker, prefix, env=env).start()
    worker = Worker(broker, f"g-{prefix[-6:]}@test")
    headers = bearer("oscar")
    try:
        results = [tasks.add.delay(i, i) for i in range(10)]
        results += [tasks.charge.delay(f"cus_{i}x{i * 31}") for i in range(5)]
        results += [tasks.import_row.delay(text) for text in ("abc", "12,50", "7 EUR", "x1")]
        results += [tasks.sync_rates.delay(1 + i) for i in range(3)]
        for r in results:
            r.get(timeout=60, propagate=False)

        def grouped() -> Obj | None:
            data = api(server, "/api/failure-groups", headers)
            return data if sorted(r["count"] for r in data["rows"].values()) == [3, 4, 5] else None

        groups = asyncio.run(_poll(grouped, 30))
        by_type = {row["type"]: (gid, row) for gid, row in groups["rows"].items()}
        assert set(by_type) == {"KeyError", "ValueError", "urllib.error.URLError"}
        key_id, key_error = by_type["KeyError"]
        assert key_error["frame"] == "celery_cluster/billing.py in plan_of" and key_error["count"] == 5
        assert key_error["functions"] == [["tests.celery_cluster.app.charge", 5]]
        assert key_error["new"] is True and len(key_error["samples"]) == 5

        # The functions' numbers are drained from the fold each clock tick (250 ms here): wait for the tick.
        def drained() -> Obj | None:
            f = api(server, "/api/functions", headers)["functions"]
            done = f.get("tests.celery_cluster.app.add", {}).get("completed") == 10
            return f if done and f.get("tests.celery_cluster.app.charge", {}).get("failed") == 5 else None

        functions = asyncio.run(_poll(drained, 10))
        assert functions["tests.celery_cluster.app.add"]["completed"] == 10
        assert functions["tests.celery_cluster.app.charge"]["fail_rate"] == 1.0
        assert functions["tests.celery_cluster.app.add"]["runtime"] is not None
        # A new group with three failures or more is a hot issue.
        issues = asyncio.run(_poll(lambda: api(server, "/api/widgets/hot_issues", headers)["data"]["rows"], 10))
        assert f"failure_group:{key_id}" in issues

        value_id, _ = by_type["ValueError"]

        async def operate() -> tuple[Obj, Obj, Obj]:
            client = await LiveClient.connect(server.ws_url, ["failure_groups"], headers=headers)
            try:
                preview = await client.command("group.retry", {"group": value_id}, phase="preview")
                done = await client.command("group.retry", {"group": value_id}, confirm=preview["result"]["confirm"])
                muted = await client.command("group.mute", {"group": key_id, "minutes": 60, "reason": "known"})
                return preview, done, muted
            finally:
                await client.close()

        preview, done, muted = asyncio.run(operate())
        assert preview["ok"] and preview["result"]["count"] == 4, preview
        assert done["ok"] and done["result"]["count"] == 4 and done["audit"], done
        assert muted["ok"], muted
        # The retried tasks ran again and failed again, for the same cause: the group counts them.
        asyncio.run(_poll(lambda: api(server, "/api/failure-groups", headers)["rows"][value_id]["count"] == 8, 30))
        rows = api(server, "/api/failure-groups", headers)["rows"]
        assert rows[key_id]["muted"]["by"] == "oscar-token"  # the token's principal
        asyncio.run(_poll(lambda: f"failure_group:{key_id}" not in
                          api(server, "/api/widgets/hot_issues", headers)["data"]["rows"], 10))  # fmt: skip
        # The mute is in Redis for every process.
        assert redis.Redis.from_url(broker).hexists(f"{prefix}:jp:groups:muted", key_id)
    finally:
        tasks.close()
        worker.stop()
        output = server.finish()
        worker.log.close()
        assert "Traceback" not in output, output


def test_two_processes_folding_one_source_agree_and_share_the_store(redis_url: str, prefix: str) -> None:
    """Two jobpulse processes on the same source and store: the same numbers in both, and one cell each in Redis
    (absolute values: both write the same), so a third process started later reads the same back."""
    env = {"JOBPULSE_CLOCK_MS": "250", "JOBPULSE_PERSIST_S": "0.5"}
    first = LiveServer(redis_url, prefix, env).start()
    second = LiveServer(redis_url, prefix, env).start()
    try:

        async def run() -> list[Obj]:
            async with fleet_running(redis_url, prefix, rate=40.0, runners=3, channels=3) as (_fleet, feed):
                await eventually(lambda: sum(1 for o in feed.objects if o.get("event") == "completed") >= 60, 30)
            return feed.objects

        truth = Truth(asyncio.run(run()))
        total = sum(sum(c.values()) for c in truth.runs.values())

        def settled(server: LiveServer) -> Obj | None:
            data = api(server, "/api/functions")
            return data if sum(r["runs"] for r in data["functions"].values()) == total else None

        one = asyncio.run(_poll(lambda: settled(first), 20))
        two = asyncio.run(_poll(lambda: settled(second), 20))
        assert one["functions"] == two["functions"] and one["channels"] == two["channels"]
        assert api(first, "/api/failure-groups")["rows"] == api(second, "/api/failure-groups")["rows"]
        first.stop()
        second.stop()
        third = LiveServer(redis_url, prefix, env).start()
        try:
            three = asyncio.run(_poll(lambda: settled(third), 15))
            differ = {
                f: (r, three["functions"].get(f)) for f, r in one["functions"].items() if three["functions"].get(f) != r
            }
            assert not differ, differ
        finally:
            third.stop()
            third.close()
    finally:
        for server in (first, second):
            output = server.finish()
            assert "Traceback" not in output, output


async def test_the_store_skips_and_counts_what_does_not_decode_and_keeps_the_rest(redis_url: str, prefix: str) -> None:
    """What Redis hands back is untrusted: bad cells (a bucket index out of range, a negative count, a time past
    MAX_TIME, not JSON), a bad group, bad related names and a bad mute are skipped and counted; good ones load."""
    import redis.asyncio as aredis

    from server.streams.core import functions
    from server.streams.core.reducer import fold, initial_state
    from server.streams.store import Store

    client = aredis.Redis.from_url(redis_url)
    try:
        state = initial_state()
        now = 1_796_000_000.0
        minute = int(now // 60)
        m = f"{prefix}:jp:stats:m:fn:app.ok"
        await client.sadd(f"{prefix}:jp:stats", "fn:app.ok", "nokind", "fn:")
        await client.hset(m, mapping={
            str(minute): json.dumps([3, 1, 0, 2.5, 0.1, [24, 2, 40, 2], [-100, 4]]),  # good
            str(minute - 1): json.dumps([1, 0, 0, 1.0, 0.0, [99999, 1], []]),  # index out of range
            str(minute - 2): json.dumps([-1, 0, 0, 1.0, 0.0, [], []]),  # negative count
            str(minute - 3): json.dumps([1, 0, 0, 1e300, 0.0, [24, 1], []]),  # a time past MAX_TIME
            str(minute - 4): b"not json",
            str(minute - 5): json.dumps([1, 0, 0, 1.0, 0.0, [24], []]),  # odd length
        })  # fmt: skip
        await client.hset(f"{prefix}:jp:groups", mapping={"0123456789abcdef": b'{"id": 5}', "x": b"[]"})
        await client.hset(f"{prefix}:jp:stats:related", "fn:app.ok", json.dumps(["email"] * 500))
        store = Store(client, prefix, 2880, 100)
        restored = await store.load(now, state.limits)
        assert [c.slot for c in restored.stats] == [minute]
        assert restored.groups == () and restored.related == {}
        assert store.corrupt == 2 + 5 + 2 + 1  # two bad names, five bad cells, two bad groups, one bad related
        fold(state, restored, now)
        assert functions.window_summary(state.fn_stats["app.ok"])[:3] == (3, 1, 0)
        await client.hset(f"{prefix}:jp:groups:muted", "0123456789abcdef", b"{]")
        assert await store.mutes() == ()
    finally:
        await client.aclose()
