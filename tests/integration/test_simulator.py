"""The fleet simulator against a real Redis: what it publishes, the keys it keeps, and each command really acting.

Every test runs a small, fast fleet (time_scale 0.05, heartbeats every 0.2 s)
under the test's own prefix, and listens to `P:events` and `P:replies` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import math
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aredis

from server.simulator import Fleet, FleetConfig
from server.simulator.layout import RunnerSpec
from server.simulator.queue import Job, JobQueue

pytestmark = pytest.mark.integration

INTERVAL = 0.2
FAST = FleetConfig(
    redis_url="",
    runners=4,
    channels=4,
    rate=40.0,
    seed=7,
    heartbeat_interval=INTERVAL,
    silent_after=None,
    time_scale=0.05,
)
PHASE = {"queued": 0, "scheduled": 0, "started": 1, "retried": 2}
# Waits are functional deadlines, each three times its goal (what the fleet's own rules take at FAST): the tests
# wait for what they count instead of counting what a fixed sleep caught, so a loaded machine only makes them slower.
BEATS_GOAL_S = 3 * INTERVAL  # three heartbeats of every runner
JOBS_GOAL_S = 1.0  # ten jobs through their lifecycle at 40 jobs/s (time_scale 0.05: each runs for ~0.1 s)
SEEDED_GOAL_S = 20 / FAST.rate  # the producer's first 20 jobs
DEPTH_EVERY_GOAL_S = 2.0  # depth goes out at least every 2 s (on change at most every 250 ms)
SETTLE_GOAL_S = 2 * INTERVAL  # a runner lets go of hung attempts; the outbox writes a stopped runner's cleanup

Obj = dict[str, Any]


class Feed:
    """Everything published on `P:events` (objects, batches unrolled) and `P:replies`, in arrival order."""

    def __init__(self, client: aredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.objects: list[Obj] = []
        self.replies: list[Obj] = []
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._pubsub.subscribe(f"{self.prefix}:events", f"{self.prefix}:replies")
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] != "message":
                continue
            data = json.loads(message["data"])
            if message["channel"] == f"{self.prefix}:replies":
                self.replies.append(data)
                continue
            batch = data if isinstance(data, list) else [data]
            self.objects.extend(batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()

    async def wait_for(self, pred: Callable[[Obj], bool], within: float = 5.0, start: int = 0) -> Obj:
        """The first object from index `start` on that matches `pred`, waiting for it to arrive."""
        deadline = time.monotonic() + within
        index = start
        while True:
            while index < len(self.objects):
                if pred(self.objects[index]):
                    return self.objects[index]
                index += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching object within {within}s ({len(self.objects)} seen)")
            await asyncio.sleep(0.01)

    def jobs(self, job_id: str) -> list[Obj]:
        """The job events of one job, in arrival order."""
        return [o for o in self.objects if o["type"] == "job" and o["job"] == job_id]

    async def wait_job(self, job_id: str, event: str, attempt: int | None = None, within: float = 5.0) -> Obj:
        return await self.wait_for(
            lambda o: (
                o["type"] == "job"
                and o["job"] == job_id
                and o["event"] == event
                and (attempt is None or o["attempt"] == attempt)
            ),
            within,
        )

    async def command(self, action: str, to: str = "system", args: Any = None, cid: str | None = None) -> str:
        """Publish a command; return its id."""
        cid = cid or f"c_{uuid.uuid4().hex[:10]}"
        command = {
            "v": 1,
            "type": "command",
            "id": cid,
            "action": action,
            "to": to,
            "args": {} if args is None else args,
            "ts": time.time(),
            "reply_to": f"{self.prefix}:replies",
        }
        await self.client.publish(f"{self.prefix}:control", json.dumps(command))
        return cid

    async def replies_to(self, cid: str, count: int = 1, within: float = 5.0) -> list[Obj]:
        deadline = time.monotonic() + within
        while True:
            found = [r for r in self.replies if r["id"] == cid]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} replies to {cid} within {within}s")
            await asyncio.sleep(0.01)

    async def ask(self, action: str, to: str = "system", args: Any = None) -> Obj:
        """Send a command and return its one reply."""
        return (await self.replies_to(await self.command(action, to, args)))[0]


@contextlib.asynccontextmanager
async def fleet_running(redis_url: str, prefix: str, **changes: Any) -> AsyncIterator[tuple[Fleet, Feed]]:
    """A ready fleet with a feed that subscribed before it started; stopped (and checked stopped) on exit."""
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    feed = Feed(client, prefix)
    await feed.start()
    fleet = Fleet(replace(FAST, redis_url=redis_url, prefix=prefix, **changes))
    task = asyncio.create_task(fleet.run())
    try:
        await asyncio.wait_for(fleet.wait_ready(), 10)
        yield fleet, feed
    finally:
        fleet.stop()
        await asyncio.wait_for(task, 15)
        await asyncio.sleep(0.05)
        await feed.close()
        await client.aclose()


async def eventually(cond: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until `cond()` holds (a coroutine's result is awaited)."""
    deadline = time.monotonic() + within
    while True:
        found = cond()
        if await found if inspect.isawaitable(found) else found:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within}s")
        await asyncio.sleep(0.02)


async def stream_entries(redis_url: str, prefix: str) -> list[Obj]:
    """The objects in P:stream, oldest first."""
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        rows: list[tuple[str, dict[str, str]]] = await client.xrange(f"{prefix}:stream")  # type: ignore[assignment]
    finally:
        await client.aclose()
    return [json.loads(fields["m"]) for _, fields in rows]


def general_runner(fleet: Fleet) -> RunnerSpec:
    """A runner that rotates over several channels (not the dedicated reports pool)."""
    return next(spec for spec in fleet.layout.runners if not spec.strict_order)


async def test_heartbeats_register_runners_with_expiring_keys(redis_url: str, prefix: str) -> None:
    """Every runner beats each interval on P:events, is in P:runners, and keeps P:runner:<id> with a TTL."""
    async with fleet_running(redis_url, prefix) as (fleet, feed):
        ids = {spec.id for spec in fleet.layout.runners}
        beats: dict[str, list[Obj]] = defaultdict(list)

        def three_each() -> bool:
            beats.clear()
            for obj in feed.objects:
                if obj["type"] == "heartbeat":
                    beats[obj["src"]].append(obj)
            return set(beats) == ids and all(len(b) >= 3 for b in beats.values())

        await eventually(three_each, within=3 * BEATS_GOAL_S)
        assert set(beats) == ids
        assert set(await feed.client.smembers(f"{prefix}:runners")) == ids
        hosts: dict[str, set[str]] = defaultdict(set)
        for runner_id in ids:
            stored = json.loads(await feed.client.get(f"{prefix}:runner:{runner_id}") or "null")
            assert 0 < await feed.client.ttl(f"{prefix}:runner:{runner_id}") <= math.ceil(3 * INTERVAL)
            assert stored["type"] == "heartbeat" and stored["src"] == runner_id
            assert stored["interval"] == INTERVAL and stored["state"] == "running"
            assert stored["region"] in FAST.regions and stored["version"].startswith("sim/")
            assert 1 <= stored["concurrency"] <= 8 and stored["channels"]
            assert len(stored["active"]) <= stored["concurrency"]
            assert {"boot", "pid", "processed", "failed", "host"} <= stored.keys()
            hosts[stored["host"]].add(runner_id)
        assert all(2 <= len(members) <= 3 for members in hosts.values())
        assert len({spec.region for spec in fleet.layout.runners}) >= 2


async def test_envelopes_seq_and_job_event_order(redis_url: str, prefix: str) -> None:
    """Objects carry the envelope, seq grows by one per src from 0, and each job's events run in lifecycle order."""
    async with fleet_running(redis_url, prefix) as (_, feed):

        def completions() -> int:
            return sum(1 for o in feed.objects if o["type"] == "job" and o["event"] == "completed")

        await eventually(lambda: completions() >= 10, within=3 * JOBS_GOAL_S)
        objects = list(feed.objects)
    last: dict[str, int] = {}
    for obj in objects:
        assert obj["v"] == 1 and isinstance(obj["ts"], float)
        assert obj["type"] in {"heartbeat", "depth", "runner.stopped", "job"}
        assert obj["seq"] == last.get(obj["src"], -1) + 1, obj
        last[obj["src"]] = obj["seq"]
        if obj["type"] == "job":
            src, boot, seq = obj["id"].rsplit(":", 2)
            assert (src, int(seq)) == (obj["src"], obj["seq"]) and boot.isdigit()
    by_job: dict[str, list[Obj]] = defaultdict(list)
    for obj in objects:
        if obj["type"] == "job":
            by_job[obj["job"]].append(obj)
    completed = 0
    for events in by_job.values():
        assert events[0]["event"] in ("queued", "scheduled"), events
        keys = [(e["attempt"], PHASE.get(e["event"], 3)) for e in events]
        # Interrupted attempts at the stop may be requeued out of order; everything before is strict.
        steady = [k for k, e in zip(keys, events, strict=True) if e.get("reason") != "shutdown"]
        assert steady == sorted(steady), events
        completed += sum(e["event"] == "completed" for e in events)
        for e in events:
            if e["event"] in ("started", "completed"):
                assert e["runner"] and e["started_at"]
    assert completed >= 10


async def test_failed_attempts_retry_with_backoff_then_fail(redis_url: str, prefix: str) -> None:
    """A failing job is retried after a backoff, fails for good at max_attempts, and `retry` queues it again."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (_, feed):
        args = {"fn": "mail.send_welcome", "channel": "email", "payload": {"_sim": {"fail": 9}}, "max_attempts": 2}
        reply = await feed.ask("run", args=args)
        job = reply["result"]["job"]
        retried = await feed.wait_job(job, "retried", 1)
        assert retried["run_at"] > retried["ts"] and retried["error"].count("\n") == 0
        assert retried["traceback"].startswith("Traceback (most recent call last):")
        assert retried["traceback"].count("\n") >= 4
        failed = await feed.wait_job(job, "failed", 2)
        assert failed["max_attempts"] == 2 and failed["error"]
        assert [e["event"] for e in feed.jobs(job)] == ["queued", "started", "retried", "queued", "started", "failed"]
        assert feed.jobs(job)[3]["src"] == "sim-broker"
        again = await feed.ask("retry", args={"job": job})
        assert again["ok"] and again["result"] == {"job": job, "attempt": 3}
        await feed.wait_job(job, "failed", 3)
        stored = await feed.client.hgetall(f"{prefix}:sim:job:{job}")
        assert stored["status"] == "failed" and await feed.client.ttl(f"{prefix}:sim:job:{job}") > 0


async def test_run_now_and_scheduled_jobs_complete(redis_url: str, prefix: str) -> None:
    """`run` queues a job that runs to completion, and with run_at schedules one that is queued when due."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (_, feed):
        now_job = await feed.ask(
            "run", args={"fn": "reports.render_pdf", "channel": "reports", "payload": {"_sim": {}}}
        )
        job = now_job["result"]["job"]
        done = await feed.wait_job(job, "completed")
        assert done["fn"] == "reports.render_pdf" and done["duration"] >= 0
        run_at = time.time() + 0.6
        args = {"fn": "mail.send_digest", "channel": "email", "payload": {"_sim": {}}, "run_at": run_at, "cid": "c-1"}
        later = (await feed.ask("run", args=args))["result"]["job"]
        scheduled = await feed.wait_job(later, "scheduled")
        assert scheduled["run_at"] == pytest.approx(run_at) and scheduled["cid"] == "c-1"
        queued = await feed.wait_job(later, "queued")
        assert queued["ts"] >= run_at - 0.01 and queued["src"] == "sim-broker"
        await feed.wait_job(later, "completed")


async def test_depth_reports_and_depth_hash(redis_url: str, prefix: str) -> None:
    """Depth goes out on change at most every 250 ms and at least every 2 s, and P:depth holds each channel."""
    async with fleet_running(redis_url, prefix) as (fleet, feed):
        legacy = await feed.ask("run", args={"fn": "legacy.webhooks.deliver_v1", "channel": "webhooks-legacy"})
        assert legacy["ok"]
        await asyncio.sleep(2.6)  # a window of more than one full report (every 2 s)

        def reports() -> list[Obj]:
            return [obj for obj in feed.objects if obj["type"] == "depth"]

        # The busy fleet changes its queues all the time, so reports come on change, ~4 a second.
        await eventually(lambda: len(reports()) >= 4, within=3 * 4 * DEPTH_EVERY_GOAL_S)
        depths = reports()
        stored = await feed.client.hgetall(f"{prefix}:depth")
    times = [obj["ts"] for obj in depths]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # The 250 ms spacing is a rule of the sender's own clock (the reports' ts), which no load can shorten; the
    # "at least every 2 s" is a deadline, held to three times its goal.
    assert min(gaps) >= 0.2, gaps
    assert max(gaps) < 3 * DEPTH_EVERY_GOAL_S, gaps
    assert any(set(obj["channels"]) == set(fleet.layout.channels) for obj in depths)
    for obj in depths:
        for depth in obj["channels"].values():
            assert set(depth) == {"queued", "inflight", "scheduled", "oldest", "paused"}
    assert set(stored) >= set(fleet.layout.channels)
    legacy_depth = json.loads(stored["webhooks-legacy"])
    assert legacy_depth["queued"] >= 1 and legacy_depth["inflight"] == 0 and legacy_depth["oldest"] is not None
    assert legacy_depth["ts"] > 0


async def test_stream_mirrors_published_objects(redis_url: str, prefix: str) -> None:
    """Every object published on P:events is also in P:stream (field m), in the same order."""
    async with fleet_running(redis_url, prefix) as (_, feed):
        await asyncio.sleep(1.0)
    entries = await stream_entries(redis_url, prefix)
    published = [(o["src"], o["seq"]) for o in feed.objects]
    assert published and [(e["src"], e["seq"]) for e in entries] == published


async def test_drain_stops_new_jobs_until_undrain(redis_url: str, prefix: str) -> None:
    """Drain reports draining then drained and starts nothing more on that runner; undrain takes jobs again."""
    async with fleet_running(redis_url, prefix) as (fleet, feed):
        runner = general_runner(fleet).id
        mark = len(feed.objects)
        reply = await feed.ask("drain", f"runner:{runner}")
        assert reply["ok"] and reply["src"] == runner and reply["result"]["state"] in ("draining", "drained")

        def is_beat(state: str) -> Callable[[Obj], bool]:
            return lambda o: o["type"] == "heartbeat" and o["src"] == runner and o["state"] == state

        await feed.wait_for(is_beat("draining"), start=mark)
        await feed.wait_for(is_beat("drained"), start=mark)
        drained_at = next(i for i in range(mark, len(feed.objects)) if is_beat("drained")(feed.objects[i]))
        await asyncio.sleep(0.6)
        after = feed.objects[drained_at:]
        assert not [o for o in after if o["type"] == "job" and o["event"] == "started" and o["runner"] == runner]
        assert all(o["active"] == [] for o in after if o["type"] == "heartbeat" and o["src"] == runner)
        reply = await feed.ask("undrain", f"runner:{runner}")
        assert reply["result"] == {"state": "running"}
        await feed.wait_for(lambda o: o.get("event") == "started" and o["runner"] == runner, start=len(feed.objects))


async def test_purge_empties_the_queue_and_cancels_each_job(redis_url: str, prefix: str) -> None:
    """Purge deletes the channel's list and publishes canceled (reason purged) for every job that was in it."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (_, feed):
        jobs = []
        for n in range(5):
            args = {"fn": "legacy.webhooks.deliver_v1", "channel": "webhooks-legacy", "payload": {"n": n}}
            jobs.append((await feed.ask("run", args=args))["result"]["job"])
        assert await feed.client.llen(f"{prefix}:sim:queue:webhooks-legacy") == 5
        reply = await feed.ask("purge", args={"channel": "webhooks-legacy"})
        assert reply["ok"] and reply["result"] == {"purged": 5}
        assert await feed.client.llen(f"{prefix}:sim:queue:webhooks-legacy") == 0
        for job in jobs:
            canceled = await feed.wait_job(job, "canceled")
            assert canceled["reason"] == "purged"
            assert await feed.client.hget(f"{prefix}:sim:job:{job}", "status") == "canceled"
        await feed.wait_for(
            lambda o: o["type"] == "depth" and o["channels"].get("webhooks-legacy", {}).get("queued") == 0
        )


async def test_clear_stuck_takes_back_hung_jobs(redis_url: str, prefix: str) -> None:
    """clear_stuck requeues hung jobs as their next attempt (or expires them), and the hung attempts stop."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (fleet, feed):
        hung = {"fn": "webhooks.deliver", "channel": "webhooks", "payload": {"_sim": {"hang": True}}}
        retryable = [(await feed.ask("run", args=hung | {"max_attempts": 3}))["result"]["job"] for _ in range(2)]
        last_chance = (await feed.ask("run", args=hung | {"max_attempts": 1}))["result"]["job"]
        for job in [*retryable, last_chance]:
            await feed.wait_job(job, "started", 1)
        young = await feed.ask("clear_stuck", args={"channel": "webhooks", "older_than": 60})
        assert young["result"] == {"cleared": 0, "requeued": 0, "expired": 0}
        await asyncio.sleep(0.3)
        reply = await feed.ask("clear_stuck", args={"channel": "webhooks", "older_than": 0.2})
        assert reply["result"] == {"cleared": 3, "requeued": 2, "expired": 1}
        for job in retryable:
            retried = await feed.wait_job(job, "retried", 1)
            assert retried["reason"] == "stuck" and retried["runner"]
            await feed.wait_job(job, "completed", 2)
        expired = await feed.wait_job(last_chance, "expired", 1)
        assert expired["reason"] == "stuck"
        await eventually(lambda: all(runner.holds() == 0 for runner in fleet.runners.values()), 3 * SETTLE_GOAL_S)


async def test_cancel_queued_and_running_jobs(redis_url: str, prefix: str) -> None:
    """Cancel removes a queued job from its list, and has the runner abort a running one."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (_, feed):
        queued = await feed.ask("run", args={"fn": "legacy.webhooks.deliver_v1", "channel": "webhooks-legacy"})
        job = queued["result"]["job"]
        reply = await feed.ask("cancel", args={"job": job})
        assert reply["result"] == {"job": job, "was": "queued"}
        assert (await feed.wait_job(job, "canceled"))["reason"] == "operator"
        assert await feed.client.llen(f"{prefix}:sim:queue:webhooks-legacy") == 0
        args = {"fn": "mail.send_welcome", "channel": "email", "payload": {"_sim": {"hang": True}}}
        running = (await feed.ask("run", args=args))["result"]["job"]
        started = await feed.wait_job(running, "started")
        reply = await feed.ask("cancel", args={"job": running})
        assert reply["result"] == {"job": running, "was": "running"}
        canceled = await feed.wait_job(running, "canceled")
        assert canceled["src"] == started["runner"] == canceled["runner"]
        assert await feed.client.hget(f"{prefix}:sim:job:{running}", "status") == "canceled"
        again = await feed.ask("cancel", args={"job": running})
        assert not again["ok"] and again["error"].startswith("job:")


async def test_pause_holds_a_channel_until_resume(redis_url: str, prefix: str) -> None:
    """A paused channel keeps its jobs queued and reports paused; resume lets them run."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (_, feed):
        reply = await feed.ask("pause", args={"channel": "email"})
        assert reply["result"] == {"channel": "email", "paused": True}
        job = await feed.ask("run", args={"fn": "mail.send_receipt", "channel": "email", "payload": {"_sim": {}}})
        job_id = job["result"]["job"]
        await feed.wait_for(lambda o: o["type"] == "depth" and o["channels"].get("email", {}).get("paused") is True)
        await asyncio.sleep(0.5)
        assert [e["event"] for e in feed.jobs(job_id)] == ["queued"]
        reply = await feed.ask("resume", args={"channel": "email"})
        assert reply["result"] == {"channel": "email", "paused": False}
        await feed.wait_job(job_id, "completed")


async def test_shutdown_takes_a_runner_away_for_good(redis_url: str, prefix: str) -> None:
    """Shutdown publishes runner.stopped (shutdown), deletes its key, leaves P:runners, and it answers no more."""
    async with fleet_running(redis_url, prefix) as (fleet, feed):
        runner = general_runner(fleet).id
        reply = await feed.ask("shutdown", f"runner:{runner}", {"timeout": 1})
        assert reply["result"] == {"state": "stopping"}
        stopped = await feed.wait_for(lambda o: o["type"] == "runner.stopped" and o["src"] == runner)
        assert stopped["reason"] == "shutdown"

        async def forgotten() -> bool:
            key = await feed.client.exists(f"{prefix}:runner:{runner}")
            return not key and runner not in await feed.client.smembers(f"{prefix}:runners")

        await eventually(forgotten, 3 * SETTLE_GOAL_S)  # the outbox writes the cleanup after runner.stopped
        position = feed.objects.index(stopped)
        assert not [o for o in feed.objects[position + 1 :] if o["src"] == runner]
        pings = await feed.replies_to(await feed.command("ping", "*"), count=len(fleet.layout.runners) - 1)
        await asyncio.sleep(0.2)
        assert runner not in {r["src"] for r in pings} and len(feed.replies) == len(pings) + 1


async def test_restart_comes_back_with_a_new_boot(redis_url: str, prefix: str) -> None:
    """Restart publishes runner.stopped (restart), then the runner beats again with a new boot and seq from 0."""
    async with fleet_running(redis_url, prefix) as (fleet, feed):
        runner = general_runner(fleet).id
        before = await feed.ask("ping", f"runner:{runner}")
        reply = await feed.ask("restart", f"runner:{runner}", {"timeout": 0.5})
        assert reply["result"] == {"state": "restarting"}
        stopped = await feed.wait_for(lambda o: o["type"] == "runner.stopped" and o["src"] == runner)
        assert stopped["reason"] == "restart"
        beat = await feed.wait_for(
            lambda o: o["type"] == "heartbeat" and o["src"] == runner, start=feed.objects.index(stopped)
        )
        assert beat["seq"] == 0
        assert beat["boot"] > before["result"]["boot"] and beat["processed"] == 0
        assert runner in await feed.client.smembers(f"{prefix}:runners")
        assert await feed.client.exists(f"{prefix}:runner:{runner}")


async def test_duplicate_command_id_acts_once(redis_url: str, prefix: str) -> None:
    """A command id seen again is answered again with the same reply, and nothing happens twice."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (_, feed):
        args = {"fn": "legacy.webhooks.deliver_v1", "channel": "webhooks-legacy", "payload": {}}
        cid = await feed.command("run", args=args)
        await feed.replies_to(cid)
        await feed.command("run", args=args, cid=cid)
        first, second = await feed.replies_to(cid, count=2)
        assert first == second and first["ok"]
        await asyncio.sleep(0.3)
        assert await feed.client.llen(f"{prefix}:sim:queue:webhooks-legacy") == 1
        assert len([o for o in feed.objects if o["type"] == "job" and o["event"] == "queued"]) == 1


async def test_bad_arguments_and_unknown_actions_are_refused(redis_url: str, prefix: str) -> None:
    """Bad arguments get ok:false naming the argument; unknown actions get `unsupported: <action>`."""
    async with fleet_running(redis_url, prefix, rate=0.0) as (fleet, feed):
        runner = f"runner:{general_runner(fleet).id}"
        cases = [
            ("purge", "system", {}, "channel:"),
            ("purge", "system", {"channel": "no spaces"}, "channel:"),
            ("clear_stuck", "system", {"older_than": -1}, "older_than:"),
            ("run", "system", {"channel": "email"}, "fn:"),
            ("retry", "system", {"job": "j_missing"}, "job:"),
            ("logs", runner, {"lines": 9999}, "lines:"),
            ("restart", runner, {"timeout": "soon"}, "timeout:"),
            ("frobnicate", "system", {}, "unsupported: frobnicate"),
            ("drain", "system", {}, "unsupported: drain"),
            ("purge", runner, {"channel": "email"}, "unsupported: purge"),
            ("run", "system", {"fn": "f", "channel": "email", "payload": "x" * 20_000}, "payload:"),
            ("pause", "system", ["email"], "args: must be an object"),
        ]
        for action, to, args, error in cases:
            reply = await feed.ask(action, to, args)
            assert not reply["ok"] and reply["result"] is None and reply["error"].startswith(error), reply
        logs = await feed.ask("logs", runner, {"lines": 5})
        lines = logs["result"]["lines"]
        assert logs["ok"] and 1 <= len(lines) <= 5 and {"ts", "level", "msg"} == set(lines[0])


async def test_silent_runner_stops_beating_and_keeps_its_jobs(redis_url: str, prefix: str) -> None:
    """The silent runner stops beating without runner.stopped, its key expires, and clear_stuck frees its jobs."""
    async with fleet_running(redis_url, prefix, silent_after=0.3) as (fleet, feed):
        silent = fleet.layout.silent
        assert silent is not None
        await eventually(lambda: fleet.runners[silent].silent, within=8)
        beats = sum(1 for o in feed.objects if o["src"] == silent and o["type"] == "heartbeat")
        await asyncio.sleep(math.ceil(3 * INTERVAL) + 0.3)
        assert sum(1 for o in feed.objects if o["src"] == silent and o["type"] == "heartbeat") == beats
        assert not await feed.client.exists(f"{prefix}:runner:{silent}")
        assert silent in await feed.client.smembers(f"{prefix}:runners")
        assert not [o for o in feed.objects if o["type"] == "runner.stopped"]
        held = []
        for channel in fleet.layout.channels:
            members: list[str] = await feed.client.zrange(f"{prefix}:sim:inflight:{channel}", 0, -1)  # type: ignore[assignment]
            for job in members:
                if await feed.client.hget(f"{prefix}:sim:job:{job}", "runner") == silent:
                    held.append(job)
        assert held, "the silent runner froze holding no job"
        reply = await feed.ask("clear_stuck", args={"older_than": 3600})
        assert reply["result"]["cleared"] == len(held)
        for job in held:
            assert (await feed.wait_job(job, "retried"))["runner"] == silent


async def test_same_seed_publishes_the_same_jobs(redis_url: str, prefix: str) -> None:
    """Two fleets with one seed publish the same first jobs (fn, channel, payload); another seed does not."""

    def published(feed: Feed) -> list[tuple[Any, ...]]:
        return [
            (o["fn"], o["channel"], json.dumps(o["payload"], sort_keys=True), o["cid"])
            for o in feed.objects
            if o["type"] == "job" and o["src"] == "sim-producer"
        ]

    async with (
        fleet_running(redis_url, f"{prefix}:a", runners=2, seed=11) as (_, first),
        fleet_running(redis_url, f"{prefix}:b", runners=2, seed=11) as (_, second),
        fleet_running(redis_url, f"{prefix}:c", runners=2, seed=12) as (_, other),
    ):
        await eventually(lambda: min(len(published(f)) for f in (first, second, other)) >= 20, 3 * SEEDED_GOAL_S)
        a, b, c = published(first)[:20], published(second)[:20], published(other)[:20]
    assert len(a) == len(b) == 20
    assert a == b and a != c


async def test_stop_cleans_up_and_leaves_no_tasks(redis_url: str, prefix: str) -> None:
    """stop() publishes runner.stopped for every live runner, removes their keys, and leaves no task behind."""
    before = asyncio.all_tasks()
    async with fleet_running(redis_url, prefix) as (fleet, feed):
        await asyncio.sleep(0.5)
    stopped = {o["src"] for o in feed.objects if o["type"] == "runner.stopped" and o["reason"] == "shutdown"}
    assert stopped == {spec.id for spec in fleet.layout.runners}
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert not await client.smembers(f"{prefix}:runners")
        assert not await client.exists(*(f"{prefix}:runner:{spec.id}" for spec in fleet.layout.runners))
        assert sum(json.loads(v)["inflight"] for v in (await client.hgetall(f"{prefix}:depth")).values()) == 0
    finally:
        await client.aclose()
    assert asyncio.all_tasks() <= before


async def test_stop_during_a_claim_requeues_what_the_claim_took(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that cancels a claim whose script already ran in Redis still requeues the jobs it took.

    The reply is held back after the script ran, the window a loaded machine opens at random: cancelling the claim
    then used to leave its jobs in flight for good, and a stopped fleet reported them in P:depth.
    """
    claimed = asyncio.Event()
    real_claim = JobQueue.claim

    async def slow_reply(self: JobQueue, runner: str, channels: Any, count: int, now: float) -> list[Job]:
        jobs = await real_claim(self, runner, channels, count, now)
        if jobs:
            claimed.set()
            await asyncio.sleep(0.5)
        return jobs

    monkeypatch.setattr(JobQueue, "claim", slow_reply)
    async with fleet_running(redis_url, prefix) as (_, feed):
        await asyncio.wait_for(claimed.wait(), 10)
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert sum(json.loads(v)["inflight"] for v in (await client.hgetall(f"{prefix}:depth")).values()) == 0
        assert not [key async for key in client.scan_iter(f"{prefix}:sim:inflight:*") if await client.zcard(key)]
    finally:
        await client.aclose()
    assert any(o["type"] == "job" and o["event"] == "retried" and o.get("reason") == "shutdown" for o in feed.objects)


async def test_unreachable_redis_is_retried_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """With Redis unreachable the fleet keeps retrying (and logs it) instead of dying, and still stops cleanly."""
    fleet = Fleet(replace(FAST, redis_url="redis://127.0.0.1:1/0", prefix="nowhere"))
    task = asyncio.create_task(fleet.run())
    await eventually(lambda: any("again in" in r.getMessage() or "retrying in" in r.getMessage()
                                 for r in caplog.records), within=5)  # fmt: skip
    await asyncio.sleep(0.8)
    assert not task.done()
    fleet.stop()
    await asyncio.wait_for(task, 10)
    with pytest.raises(RuntimeError):
        await fleet.wait_ready()


# ---- the story scenario ------------------------------------------------------------------------------------------

STORY_CYCLE = 24.0
"""The story compressed 12.5x: one cycle runs in 24 s (every phase at least 3 s)."""
CALM_QUEUE = 25
"""Queued jobs a channel may hold outside its incidents (40 jobs/s, ~0.1 s each: it is near 0 when healthy)."""
REPORTS_BACKLOG = 15
"""Queued reports the stall must build (about 8 reports/s during its 6.8 s, a few held by the stalled slots)."""
DRAIN_GOAL_S = 5.0  # the reports pool runs ~3x the usual arrivals: the backlog is gone within a few seconds


def depth_series(objects: list[Obj], channel: str) -> list[tuple[float, int]]:
    """(ts, queued) of every depth report that carried `channel`."""
    return [
        (o["ts"], o["channels"][channel]["queued"])
        for o in objects
        if o["type"] == "depth" and channel in o["channels"]
    ]


@pytest.mark.timeout(120)  # one 24 s cycle; the deadlines (3x each wait) may take longer on a loaded machine
async def test_story_scenario_runs_incidents_that_come_and_go(redis_url: str, prefix: str) -> None:
    """One compressed story cycle: calm, then each incident begins and ends, and the queues come back down.

    A runner goes silent and comes back with a new boot (requeueing what it held); webhooks-legacy gets a backlog
    with no runner, then a runner that consumes it; reports backs up while stalled and drains; webhooks fail with
    401 during the burst only; a deploy restarts every runner onto a new version. Outside its incidents no queue grows.
    """
    from server.simulator import scenario

    async with fleet_running(redis_url, prefix, scenario="story", cycle=STORY_CYCLE) as (fleet, feed):
        director = fleet.director
        assert director is not None and director.started is not None
        silent, legacy_runner = director.silent_id, director.legacy_id
        assert silent and legacy_runner and silent != legacy_runner

        def at(kind: str, edge: int) -> float:
            """Wall-clock time a phase of the first cycle begins (edge 0) or ends (edge 1)."""
            assert director.started is not None
            return director.started + scenario.window(scenario.phase_of(kind), STORY_CYCLE)[edge]

        def within(moment: float, goal: float = 1.0) -> float:
            """A deadline three times the wait for `moment` plus what the fleet takes to act on it."""
            return 3 * (max(0.0, moment - time.time()) + goal)

        # The silent runner freezes (holding jobs), its held jobs stay in flight, then it boots again.
        await eventually(lambda: fleet.runners[silent].silent, within(at(scenario.SILENT_RUNNER, 0)))
        held = []
        for channel in fleet.layout.channels:
            members: list[str] = await feed.client.zrange(f"{prefix}:sim:inflight:{channel}", 0, -1)  # type: ignore[assignment]
            held += [job for job in members if await feed.client.hget(f"{prefix}:sim:job:{job}", "runner") == silent]
        assert held, "the silent runner froze holding no job"
        first_boot = next(o for o in feed.objects if o["type"] == "heartbeat" and o["src"] == silent)["boot"]
        back = await feed.wait_for(
            lambda o: o["type"] == "heartbeat" and o["src"] == silent and o["boot"] > first_boot,
            within(at(scenario.SILENT_RUNNER, 1)),
        )
        assert back["seq"] == 0 and back["ts"] >= at(scenario.SILENT_RUNNER, 1)
        for job in held:
            retried = await feed.wait_job(job, "retried", within=3 * SETTLE_GOAL_S + 3)
            assert retried["reason"] == "restart" and retried["src"] == silent and retried["runner"] == silent

        # webhooks-legacy: a backlog nobody consumes, then a runner that takes it on and empties it.
        legacy = "webhooks-legacy"
        consumer = await feed.wait_for(
            lambda o: o["type"] == "heartbeat" and o["src"] == legacy_runner and legacy in o["channels"],
            within(at(scenario.LEGACY_RUNNER, 0)),
        )
        assert consumer["seq"] == 0 and consumer["ts"] >= at(scenario.LEGACY_RUNNER, 0)
        backlog_end = at(scenario.LEGACY_BACKLOG, 1)
        legacy_empty = await feed.wait_for(
            lambda o: (
                o["type"] == "depth" and o["ts"] > backlog_end and o["channels"].get(legacy, {}).get("queued") == 0
            ),
            within(backlog_end, DRAIN_GOAL_S),
        )

        # reports: stalled, it backs up; released, it drains.
        stall_end = at(scenario.REPORTS_STALL, 1)
        drained = await feed.wait_for(
            lambda o: (
                o["type"] == "depth" and o["ts"] > stall_end and o["channels"].get("reports", {}).get("queued", 99) <= 2
            ),
            within(stall_end, DRAIN_GOAL_S),
        )

        # The cycle ends: the legacy runner goes back to its usual channels (after the deploy).
        cycle_end = director.started + STORY_CYCLE
        usual = await feed.wait_for(
            lambda o: o["type"] == "heartbeat" and o["src"] == legacy_runner and o["ts"] >= cycle_end and o["seq"] == 0,
            within(cycle_end),
        )
        assert legacy not in usual["channels"]
        objects = list(feed.objects)

    def phase(kind: str) -> tuple[float, float]:
        return at(kind, 0), at(kind, 1)

    # Calm start: every runner beats, nothing is published to webhooks-legacy before its phase, queues are low.
    calm_end = at(scenario.SILENT_RUNNER, 0)
    beaters = {o["src"] for o in objects if o["type"] == "heartbeat" and o["ts"] < calm_end}
    assert beaters == {spec.id for spec in fleet.layout.runners}
    backlog_start = at(scenario.LEGACY_BACKLOG, 0)
    legacy_jobs = [o for o in objects if o["type"] == "job" and o["channel"] == legacy and o["src"] == "sim-producer"]
    assert legacy_jobs and all(backlog_start - 0.1 <= o["ts"] < backlog_end + 0.5 for o in legacy_jobs)

    # The silent runner's heartbeats stop for most of its phase, then resume with the new boot.
    beats = [o for o in objects if o["type"] == "heartbeat" and o["src"] == silent]
    before, after = max(itertools.pairwise(beats), key=lambda pair: pair[1]["ts"] - pair[0]["ts"])
    silent_start, silent_end = phase(scenario.SILENT_RUNNER)
    assert after["ts"] - before["ts"] >= (silent_end - silent_start) / 2 and after is back

    # The legacy backlog rose while no runner consumed it, stayed low once one did, and is gone after.
    legacy_depth = depth_series(objects, legacy)
    assert max(q for ts, q in legacy_depth if ts < consumer["ts"]) >= 3
    assert all(q <= CALM_QUEUE for ts, q in legacy_depth if ts > consumer["ts"] + DRAIN_GOAL_S)
    assert all(q == 0 for ts, q in legacy_depth if ts < backlog_start - 0.1 or ts >= legacy_empty["ts"])

    # reports rose during the stall and fell back after it.
    stall_start = at(scenario.REPORTS_STALL, 0)
    reports = depth_series(objects, "reports")
    assert max(q for ts, q in reports if stall_start <= ts <= stall_end + 0.5) >= REPORTS_BACKLOG
    assert drained["channels"]["reports"]["queued"] <= 2

    # Webhooks failed with the burst's 401, for good, during the burst only.
    burst_start, burst_end = phase(scenario.WEBHOOKS_FAILING)
    rejected = [o for o in objects if o["type"] == "job" and o["event"] == "failed" and "401" in o.get("error", "")]
    assert len(rejected) >= 5
    assert all(o["channel"] == "webhooks" and burst_start <= o["ts"] <= burst_end + 1.0 for o in rejected)

    # The deploy restarted every runner, one at a time, onto a new version.
    deploy_start, deploy_end = phase(scenario.DEPLOY)
    restarts = [o for o in objects if o["type"] == "runner.stopped" and deploy_start <= o["ts"] <= deploy_end + 1.0]
    assert {o["src"] for o in restarts} == {spec.id for spec in fleet.layout.runners}
    assert all(o["reason"] == "restart" for o in restarts)
    new_version = {o["src"] for o in objects if o["type"] == "heartbeat" and o["version"] == "sim/0.1.1"}
    assert new_version == {spec.id for spec in fleet.layout.runners}

    # Outside its incidents no channel's queue grows; reports only backs up from its stall to its drain.
    for channel in fleet.layout.channels:
        for ts, queued in depth_series(objects, channel):
            in_incident = (channel == "reports" and stall_start <= ts <= drained["ts"]) or (
                channel == legacy and backlog_start <= ts <= consumer["ts"] + DRAIN_GOAL_S
            )
            assert in_incident or queued <= CALM_QUEUE, (channel, ts - director.started, queued)
