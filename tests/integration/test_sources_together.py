"""Three job systems in one jobpulse: the native simulator, a real Celery worker and a real django-mojo engine.

One jobpulse (a real uvicorn) watches them at once with JOBPULSE_SOURCES: `edge` (the simulated native fleet on
the test's Redis), `pay` (a Celery worker on a private Redis broker) and `media` (django-mojo's engine and
scheduler on their own Redis and Postgres). Each source's runners, channels and counts are checked against that
system's own truth; commands are routed to the source that owns their target; and a fault in one source (its
broker killed) leaves the other two live and exact while the pages name the source that is down.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aredis

from server.redis_server import RedisServer
from tests.celery_cluster.worker import Worker
from tests.conftest import LiveServer, SimulatedFleet
from tests.integration.helpers import LiveClient
from tests.mojo_cluster.cluster import MojoCluster, deployment
from tests.outage import HEALED_BOUND_S, SAID_BOUND_S

pytestmark = [pytest.mark.integration, pytest.mark.mojo, pytest.mark.timeout(300)]

ENGINE = "mojo-t1"
WORKER = "w-together@test"
LIVE = ("online", "busy", "draining")


@dataclass
class Systems:
    server: LiveServer
    prefix: str  # the native source's (and jobpulse's own) prefix
    native: str  # the native source's Redis
    broker: RedisServer  # Celery's
    worker: Worker
    fleet: SimulatedFleet
    mojo: MojoCluster


@pytest.fixture(scope="module")
def mojo() -> Iterator[MojoCluster]:
    with deployment(ENGINE, prefix="media:jobs", channels=("default", "priority", "bulk")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def systems(redis_url: str, mojo: MojoCluster) -> Iterator[Systems]:
    prefix = f"jptest-{uuid.uuid4().hex[:10]}"
    broker = RedisServer(persist=True).start()
    env = {
        "JOBPULSE_SOURCES": f"edge:native,pay:celery:{broker.url},media:mojo:{mojo.redis_url}",
        "JOBPULSE_PAY_RECONCILE_S": "0.5",
        "JOBPULSE_PAY_CELERY_QUEUES": "nobody",
        # django-mojo's settings, for the media source alone (JOBPULSE_MEDIA_<NAME>).
        **{
            f"JOBPULSE_MEDIA_{name.removeprefix('JOBPULSE_')}": value
            for name, value in mojo.jobpulse_env().items()
            if name != "JOBPULSE_SOURCE"
        },
    }
    server = LiveServer(redis_url, prefix, env=env).start(timeout=30)
    worker = Worker(broker.url, WORKER)
    fleet = SimulatedFleet(
        server, "--runners", "3", "--channels", "2", "--rate", "2", "--seed", "11", "--time-scale", "0.3",
        "--silent-after", "never", "--heartbeat", "1",
    )  # fmt: skip
    try:
        yield Systems(server, prefix, redis_url, broker, worker, fleet, mojo)
    finally:
        fleet.stop()
        worker.stop()
        worker.log.close()
        output = server.finish()
        broker.stop()
        with redis.Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        assert "Traceback" not in output, output


KPIS = [f"kpi?metric={m}&source={s}" for m in ("completed", "failed") for s in ("pay", "media")]
VIEWS = [*(f"fleet?source={s}" for s in ("edge", "pay", "media")), *KPIS]


@pytest.fixture
async def console(systems: Systems) -> AsyncIterator[LiveClient]:
    client = await LiveClient.connect(systems.server.ws_url, ["runners", "channels", "health", "service", *VIEWS])
    try:
        await client.wait_for(lambda c: all(_live_ids(c, s) for s in ("edge", "pay", "media")), 60)
        yield client
    finally:
        await client.close()


def _live_ids(c: LiveClient, source: str) -> set[str]:
    rows = c.data[f"fleet?source={source}"]["rows"]
    return {rid for rid, row in rows.items() if row["status"] in LIVE}


def job_health(server: LiveServer, source: str) -> tuple[int, dict[str, Any]]:
    """GET /api/job/health (of one source with `source`): its status code and body."""
    url = f"{server.url}/api/job/health" + (f"?source={source}" if source else "")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def kpi(c: LiveClient, metric: str, source: str) -> int:
    value: int = c.data[f"kpi?metric={metric}&source={source}"]["value"]
    return value


async def test_each_source_shows_its_own_truth(systems: Systems, console: LiveClient) -> None:
    c = console
    # Runners: each source's cards are its own system's runners, labelled with it.
    native = redis.Redis.from_url(systems.native)
    registered = {f"edge:{text(r)}" for r in native.smembers(f"{systems.prefix}:runners")}
    await c.wait_for(lambda c: set(c.data["fleet?source=edge"]["rows"]) == registered, 15)
    assert len(registered) == 3
    assert set(c.data["fleet?source=pay"]["rows"]) == {f"pay:{WORKER}"}
    assert set(c.data["fleet?source=media"]["rows"]) == {f"media:{ENGINE}"}
    for source in ("edge", "pay", "media"):
        rows = c.data[f"fleet?source={source}"]["rows"]
        assert all(row["source"] == source for row in rows.values()), rows
        assert c.data[f"fleet?source={source}"]["sources"] == {"edge": 3, "pay": 1, "media": 1}

    # Counts: Celery's and django-mojo's own results against each source's counters.
    from tests.celery_cluster.app import Tasks

    before = {(m, s): kpi(c, m, s) for m in ("completed", "failed") for s in ("pay", "media")}
    tasks = Tasks(systems.broker.url)
    try:
        sent = [tasks.add.delay(i, i) for i in range(6)] + [tasks.fail.delay(f"boom {i}") for i in range(2)]
        oks = [systems.mojo.publish("demo_jobs.ok_job", {"n": i}) for i in range(4)]
        bad = systems.mojo.publish("demo_jobs.fail_job", {"message": "media boom"})
        outcomes = await asyncio.to_thread(lambda: [r.get(timeout=30, propagate=False) for r in sent])
        assert outcomes[:6] == [2 * i for i in range(6)] and all(isinstance(o, ValueError) for o in outcomes[6:])
        rows = await asyncio.to_thread(systems.mojo.wait_for_jobs, [*oks, bad])
        assert sorted(r["status"] for r in rows.values()) == ["completed"] * 4 + ["failed"]
        want = {("completed", "pay"): 6, ("failed", "pay"): 2, ("completed", "media"): 4, ("failed", "media"): 1}
        await c.wait_for(lambda c: all(kpi(c, m, s) - before[m, s] == n for (m, s), n in want.items()), 20)
    finally:
        tasks.close()

    # Channels: each system's own depths, under its label.
    broker = redis.Redis.from_url(systems.broker.url)
    for i in range(5):
        tasks = Tasks(systems.broker.url)
        tasks.add.apply_async((i, i), queue="nobody")  # no worker consumes it: it waits
        tasks.close()
    await c.wait_for(lambda c: c.data["channels"]["rows"].get("pay:nobody", {}).get("queued") == broker.llen("nobody"))
    assert c.data["channels"]["rows"]["pay:nobody"]["source"] == "pay"

    def native_depths() -> dict[str, int]:
        raw = native.hgetall(f"{systems.prefix}:depth")
        return {f"edge:{text(name)}": msgspec.json.decode(value)["queued"] for name, value in raw.items()}

    await c.wait_for(lambda c: native_depths() == {n: r["queued"] for n, r in c.data["channels"]["rows"].items()
                                                   if r.get("source") == "edge"}, 15)  # fmt: skip

    def media_depths_agree(c: LiveClient) -> bool:
        theirs = systems.mojo.stats()["channels"]
        theirs = theirs if isinstance(theirs, dict) else {t["channel"]: t for t in theirs}
        shown = c.data["channels"]["rows"]
        return all(shown.get(f"media:{name}", {}).get("queued", 0) == theirs[name]["queued_count"]
                   for name in ("default", "priority", "bulk"))  # fmt: skip

    await c.wait_for(media_depths_agree, 15)
    health = c.data["health"]
    assert health["connected"] is True and health["source_order"] == ["edge", "pay", "media"]
    assert {s: v["kind"] for s, v in health["sources"].items()} == {"edge": "native", "pay": "celery", "media": "mojo"}
    native.close()
    broker.close()


async def test_commands_go_to_the_source_that_owns_their_target(systems: Systems, console: LiveClient) -> None:
    c = console
    edge = sorted(_live_ids(c, "edge"))[0]
    # One command, runners of three systems: each source pings its own, by its own means.
    ack = await c.command("runner.ping", {"runners": [edge, f"pay:{WORKER}", f"media:{ENGINE}"]}, within=20)
    assert ack["ok"], ack
    parts = ack["result"]["sources"]
    assert set(parts) == {"edge", "pay", "media"} and all(p["ok"] for p in parts.values()), parts
    assert ack["result"]["count"] == 3

    # A job for each system, sent to the channel it names; each system runs it.
    from tests.celery_cluster.app import Tasks

    ran = await c.command("job.run", {"fn": "tests.celery_cluster.app.add", "channel": "pay:celery",
                                      "payload": {"args": [20, 22]}})  # fmt: skip
    assert ran["ok"] and ran["result"]["job"].startswith("pay:"), ran
    tasks = Tasks(systems.broker.url)
    try:
        task = tasks.app.AsyncResult(ran["result"]["job"].removeprefix("pay:"))
        assert await asyncio.to_thread(task.get, timeout=30) == 42
    finally:
        tasks.close()
    counted = kpi(c, "completed", "media")
    ran = await c.command("job.run", {"fn": "demo_jobs.ok_job", "channel": "media:default", "payload": {"n": 1}})
    assert ran["ok"] and ran["result"]["job"].startswith("media:"), ran
    rows = await asyncio.to_thread(systems.mojo.wait_for_jobs, [ran["result"]["job"].removeprefix("media:")])
    assert next(iter(rows.values()))["status"] == "completed"
    await c.wait_for(lambda c: kpi(c, "completed", "media") == counted + 1, 10)  # and jobpulse counted it, once
    channel = next(n for n, r in c.data["channels"]["rows"].items() if r.get("source") == "edge")
    ran = await c.command("job.run", {"fn": "demo.together", "channel": channel, "cid": "together-1"}, within=15)
    assert ran["ok"] and ran["result"]["job"].startswith("edge:"), ran

    # Each source's own set of actions: a rate limit is Celery's alone, so "every runner" means pay's.
    preview = await c.command("task.rate_limit", {"fn": "tests.celery_cluster.app.add", "rate": "10/m"},
                              phase="preview")  # fmt: skip
    done = await c.command("task.rate_limit", {"fn": "tests.celery_cluster.app.add", "rate": "10/m"},
                           confirm=preview["result"]["confirm"], within=20)  # fmt: skip
    assert done["ok"] and "replies" in done["result"], done  # pay's own answer: one source did it
    assert done["result"]["replies"][0]["src"] == f"pay:{WORKER}"

    # The welcome says which sources cannot do an action that others can, so a page disables it on their rows.
    offered = c.welcome["actions"]
    assert offered["runner.logs"]["ok"] and set(offered["runner.logs"]["unavailable"]) == {"pay", "media"}
    assert offered["task.rate_limit"]["ok"] and set(offered["task.rate_limit"]["unavailable"]) == {"edge", "media"}
    assert "unavailable" not in offered["runner.ping"]
    logs = await c.command("runner.logs", {"runner": f"pay:{WORKER}"})
    assert not logs["ok"] and logs["error"]["code"] == "unavailable" and "pay (celery)" in logs["error"]["message"]

    # A target no source owns is refused, naming the sources.
    lost = await c.command("runner.ping", {"runners": ["nowhere:r1"]})
    assert not lost["ok"] and lost["error"]["code"] == "not_found", lost
    assert "edge, pay, media" in lost["error"]["message"]


async def test_a_fault_in_one_source_leaves_the_others_live_and_exact(systems: Systems, console: LiveClient) -> None:
    c = console
    edge_before = _live_ids(c, "edge")
    systems.broker.kill()  # Celery's broker: the pay source is down
    try:
        broke = time.monotonic()
        await c.wait_for(lambda c: c.data["health"]["sources"]["pay"]["connected"] is False, SAID_BOUND_S)
        said = time.monotonic() - broke
        health = c.data["health"]
        assert health["sources"]["edge"]["connected"] and health["sources"]["media"]["connected"], health
        assert health["connected"] is False  # not every source: the pages warn, naming it
        await c.wait_for(lambda c: "Job system unreachable: pay" in c.data["service"]["rule"]
                         or c.data["service"]["status"] == "critical", 10)  # fmt: skip

        # The health API says which: the whole is critical, pay is (its alert raised at the next clock tick), media
        # is not.
        def pay_down() -> bool:
            code, body = job_health(systems.server, "pay")
            return code == 503 and "Job system unreachable: pay" in [r["title"] for r in body["rules_fired"]]

        deadline = time.monotonic() + SAID_BOUND_S
        while not await asyncio.to_thread(pay_down):
            assert time.monotonic() < deadline, job_health(systems.server, "pay")
            await asyncio.sleep(0.2)
        whole, media = [await asyncio.to_thread(job_health, systems.server, s) for s in ("", "media")]
        assert (whole[0], media[0]) == (503, 200), (whole, media)
        summary = whole[1]["sources"]["pay"]
        assert summary["status"] == "critical" and summary["broker"]["connected"] is False, summary
        assert media[1]["broker"]["connected"] is True and media[1]["source"] == "media"
        assert {"media:default", "media:priority"} <= set(media[1]["channels"]), media[1]["channels"]
        assert all(name.startswith("media:") for name in media[1]["channels"])

        # The others stay live and exact: a django-mojo job is counted while Celery's broker is gone.
        before = kpi(c, "completed", "media")
        job = systems.mojo.publish("demo_jobs.ok_job", {"n": 7})
        await asyncio.to_thread(systems.mojo.wait_for_jobs, [job])
        await c.wait_for(lambda c: kpi(c, "completed", "media") == before + 1, 10)
        assert _live_ids(c, "edge") == edge_before
    finally:
        systems.broker.start()
    await c.wait_for(lambda c: c.data["health"]["connected"] is True, HEALED_BOUND_S)
    await c.wait_for(lambda c: c.data["fleet?source=pay"]["rows"][f"pay:{WORKER}"]["status"] in LIVE, 30)
    assert said <= SAID_BOUND_S


async def test_the_audit_log_records_the_sources_a_command_went_to(systems: Systems, console: LiveClient) -> None:
    """Each audit entry names the source(s) its command was routed to; previews are audited too."""
    one = await console.command("runner.drain", {"runners": [f"pay:{WORKER}"]}, phase="preview")
    every = await console.command("runner.drain", {"runners": "*"}, phase="preview")
    celery_only = await console.command("task.rate_limit", {"fn": "x.y", "rate": "1/s"}, phase="preview")
    assert one["ok"] and every["ok"] and celery_only["ok"], (one, every, celery_only)
    store = aredis.Redis.from_url(systems.native)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await store.xrevrange(  # type: ignore[assignment]
            f"{systems.prefix}:jp:audit", count=10
        )
    finally:
        await store.aclose()
    by_id = {entry_id.decode(): fields for entry_id, fields in entries}
    found = {
        name: (by_id[ack["audit"]][b"target"].decode(), by_id[ack["audit"]][b"source"].decode())
        for name, ack in (("one", one), ("every", every), ("celery_only", celery_only))
    }
    assert found == {
        "one": (f"runner:pay:{WORKER}", "pay"),
        "every": ("runners:*", "edge,pay,media"),
        "celery_only": ("task:x.y", "pay"),
    }
