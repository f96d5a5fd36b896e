"""The mojo source's operator actions do what django-mojo's own code does, proven against its real engine.

Each test drives `server.streams.sources.mojo.actions.MojoActions` against a real django-mojo 1.39.10 deployment
(tests/mojo_cluster: a private Redis, a Postgres database of its own, django-mojo's engines and scheduler) and checks
the outcome where django-mojo keeps it: its engine answers the ping and drains, the jobs jobpulse publishes are run
by its engine (and the delayed one queued by its scheduler), purge, cancel and retry leave the rows and events its
own services leave, and the stuck jobs handed over are requeued or failed by its own reaper.

The suite brings up a PostgreSQL and django-mojo's environment first (tests/provision.py); `-m "not mojo"` leaves
these tests out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aredis

from server import actions
from server.routing import known
from server.streams.connector import CommandError
from server.streams.core.events import Heartbeat, RunnerRemoved, Tick
from server.streams.core.reducer import fold, initial_state
from server.streams.core.state import State
from server.streams.sources.mojo.actions import APPLICATION_NAME, UNSUPPORTED, WRITE_ACTIONS, MojoActions
from server.streams.sources.mojo.keys import MojoKeys
from tests.mojo_cluster.cluster import MojoCluster, by_writer, deployment

pytestmark = [pytest.mark.integration, pytest.mark.mojo, pytest.mark.timeout(120)]

PREFIX = "acme:jobs"
ENGINE = "e-main"
KEYS = MojoKeys(PREFIX)
SLOW = {"seconds": 60, "first_attempt_only": True}  # sleep_job: a minute on its first attempt, at once after


@pytest.fixture(scope="module")
def mojo() -> Iterator[MojoCluster]:
    """django-mojo with one engine on default and priority, and its scheduler; "bulk" is consumed by nobody."""
    with deployment(ENGINE, prefix=PREFIX, channels=("default", "priority", "bulk")) as cluster:
        yield cluster


@dataclass
class Console:
    """What the connector hands MojoActions, and what it fed back."""

    actions: MojoActions
    state: State
    fed: list[Any]
    redis: aredis.Redis

    async def do(self, action: str, **args: Any) -> Any:
        return await act(self.actions, self.state, action, **args)


async def act(performer: MojoActions, state: State, action: str, **args: Any) -> Any:
    """What the commander does: check the arguments, then hand them over with what the fold knows."""
    parsed = actions.parse_args(action, args)
    return await performer.perform(action, parsed, known(state, parsed, ""))


def beat(state: State, runner: str, at: float, channels: tuple[str, ...] = ("default", "priority")) -> None:
    """Fold a heartbeat of `runner` as the mojo connector would translate django-mojo's hb document."""
    heartbeat = Heartbeat(v=1, src=runner, seq=int(at * 1000), ts=at, boot=at, interval=1.0, channels=list(channels))
    fold(state, heartbeat, at)


@pytest.fixture
async def console(mojo: MojoCluster) -> AsyncIterator[Console]:
    client = aredis.Redis.from_url(mojo.redis_url)  # bytes replies, as the connector's client
    state = initial_state()
    beat(state, ENGINE, time.time())
    fed: list[Any] = []
    performer = MojoActions(KEYS, client, mojo.pg_url, fed.append, lambda: 3.0)
    try:
        yield Console(performer, state, fed, client)
    finally:
        await performer.close()
        await client.aclose()


def events(mojo: MojoCluster, job_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = mojo.call("events", job_id=job_id)
    return result


def names(mojo: MojoCluster, job_id: str) -> list[str]:
    return [event["event"] for event in events(mojo, job_id)]


def published(mojo: MojoCluster, slug: str) -> int:
    """Every hour bucket of a publish counter, summed (publish buckets by UTC hour)."""
    keys = list(mojo.client.scan_iter(match=KEYS.metric(slug, "hr:*"), count=1000))
    return sum(int(value or 0) for value in mojo.client.mget(keys)) if keys else 0


async def test_unsupported_actions_and_a_missing_write_url_are_refused_with_the_reason(
    mojo: MojoCluster, console: Console
) -> None:
    samples: dict[str, dict[str, Any]] = {
        "runner.undrain": {"runners": [ENGINE]}, "runner.restart": {"runners": [ENGINE]},
        "runner.logs": {"runner": ENGINE}, "broadcast": {"message": "hello"}, "channel.pause": {"channel": "default"},
        "channel.resume": {"channel": "default"}, "task.rate_limit": {"fn": "demo_jobs.ok_job", "rate": "1/s"},
    }  # fmt: skip
    assert set(UNSUPPORTED) == set(samples)
    for action, args in samples.items():
        with pytest.raises(CommandError, match="django-mojo"):
            await console.do(action, **args)
    assert set(WRITE_ACTIONS) == {"job.run", "job.batch", "job.retry", "job.run_now", "job.cancel", "channel.purge"}
    assert set(WRITE_ACTIONS | UNSUPPORTED.keys()) <= set(actions.SPECS)

    read_only = MojoActions(KEYS, console.redis, "", console.fed.append, lambda: 3.0)
    queue = KEYS.queue("default")
    before = await console.redis.llen(queue)
    writes: dict[str, dict[str, Any]] = {
        "job.run": {"fn": "demo_jobs.ok_job", "channel": "default"}, "job.batch": {"channels": ["default"]},
        "job.retry": {"job": "0" * 32}, "job.cancel": {"job": "0" * 32}, "channel.purge": {"channel": "default"},
    }  # fmt: skip
    for action, args in writes.items():
        with pytest.raises(CommandError, match="JOBPULSE_MOJO_WRITE_DATABASE_URL"):
            await act(read_only, console.state, action, **args)
    assert await console.redis.llen(queue) == before  # nothing published
    # The reaper hand-off is Redis only; without the URL it says what it could not look for.
    done = await act(read_only, console.state, "channel.clear_stuck", channel="default")
    assert done.count == 0 and "JOBPULSE_MOJO_WRITE_DATABASE_URL" in done.message
    await read_only.close()

    with pytest.raises(CommandError, match="no ':'"):  # jobpulse's channel names allow ':', django-mojo's do not
        await console.do("job.run", fn="demo_jobs.ok_job", channel="a:b")
    with pytest.raises(CommandError, match="no job"):
        await console.do("job.cancel", job="f" * 32)


async def test_a_publish_redis_does_not_confirm_stays_pending_and_marked_as_django_mojo_marks_it(
    mojo: MojoCluster, console: Console
) -> None:
    gone = aredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens there
    blind = MojoActions(KEYS, gone, mojo.pg_url, console.fed.append, lambda: 1.0)
    try:
        with pytest.raises(CommandError, match="did not confirm") as raised:
            await act(blind, console.state, "job.run", fn="demo_jobs.ok_job", channel="bulk")
        job = re.findall(r"[0-9a-f]{32}", str(raised.value))[0]  # the message names the job
        row = mojo.jobs([job])[job]
        assert (row["status"], row["last_error"]) == ("pending", "Redis publish not confirmed")
        assert [log["message"] for log in mojo.call("logs", job_id=job)] == ["Redis publish not confirmed"]
        assert names(mojo, job) == ["created"]
        with pytest.raises(CommandError, match="Redis failed"):
            await act(blind, console.state, "runner.ping", runners=[ENGINE])
    finally:
        await blind.close()
        await gone.aclose()
    await console.do("channel.purge", channel="bulk")


async def test_ping_is_answered_by_the_real_engine(mojo: MojoCluster, console: Console) -> None:
    done = await console.do("runner.ping", runners=[ENGINE])
    assert done.count == 1 and [r["src"] for r in done.result["replies"]] == [ENGINE]
    assert done.result["replies"][0]["result"]["reply"] == "pong" and done.result["missing"] == []
    everyone = await console.do("runner.ping", runners="*")  # the live runners of jobpulse's state
    assert [r["src"] for r in everyone.result["replies"]] == [ENGINE]
    partly = await console.do("runner.ping", runners=[ENGINE, "e-ghost"])
    assert partly.count == 1 and partly.result["missing"] == ["e-ghost"] and "1 did not answer" in partly.message
    with pytest.raises(CommandError, match="no engine listens"):
        await console.do("runner.ping", runners=["e-ghost"])


async def test_run_and_batch_publish_jobs_the_engine_runs_as_django_mojos_own(
    mojo: MojoCluster, console: Console
) -> None:
    before = {slug: published(mojo, slug) for slug in ("jobs.published", "jobs.published.default")}
    ok = (await console.do("job.run", fn="demo_jobs.ok_job", channel="default", payload={"n": 1}, cid="c-1")).result
    assert ok["scheduled"] is False
    later = await console.do("job.run", fn="demo_jobs.ok_job", channel="default", payload={"n": 2},
                             run_at=time.time() + 3)  # fmt: skip
    assert later.result["scheduled"] is True and "Scheduled" in later.message
    assert await console.redis.zscore(KEYS.sched("default"), later.result["job"]) is not None
    assert b"default" in await console.redis.smembers(KEYS.sched_registry)
    flaky = await console.do("job.run", fn="demo_jobs.fail_job", channel="default", payload={"message": "again"},
                             max_attempts=2)  # fmt: skip
    theirs = mojo.publish("demo_jobs.ok_job", {"n": 3})  # django-mojo's own publish, to compare the rows with
    ids = [ok["job"], later.result["job"], flaky.result["job"], theirs]
    rows = mojo.wait_for_jobs(ids, timeout=40)

    assert (rows[ok["job"]]["status"], rows[ok["job"]]["attempt"], rows[ok["job"]]["runner_id"]) == (
        "completed", 1, ENGINE)  # fmt: skip
    assert rows[ok["job"]]["metadata"] == {"cid": "c-1", "result": {"echo": {"n": 1}}}
    assert rows[later.result["job"]]["status"] == "completed"
    assert (rows[flaky.result["job"]]["status"], rows[flaky.result["job"]]["attempt"]) == ("failed", 2)
    # The lifecycle django-mojo's publish gives, event for event and detail for detail.
    for job in (ok["job"], theirs):
        assert by_writer(names(mojo, job), ["created", "queued"], ["running", "completed"])
    mine, its = ([e for e in events(mojo, job) if e["event"] in ("created", "queued")] for job in (ok["job"], theirs))
    assert [e["details"] for e in mine] == [e["details"] for e in its]
    assert [(e["attempt"], e["runner_id"]) for e in mine] == [(0, None), (0, None)]
    # The order holds per writer, not across writers: django-mojo's scheduler RPUSHes a due job before it writes its
    # `queued` event (scheduler.py:417-431), so the engine's `running` (even `completed`) may commit first
    # (docs/mojo.md, "event order is not causal order").
    trail = events(mojo, later.result["job"])
    assert by_writer([e["event"] for e in trail], ["created", "scheduled"], ["queued"], ["running", "completed"])
    step = {e["event"]: e for e in trail}
    assert step["scheduled"]["details"].keys() == {"run_at"}
    assert step["queued"]["details"]["scheduler_id"].endswith("-scheduler")
    assert "retry" in names(mojo, flaky.result["job"])  # max_attempts is django-mojo's max_retries: 2 attempts
    columns = """channel, func, status, max_retries, backoff_base, backoff_max_sec, broadcast, cancel_requested,
        max_exec_seconds, last_error, idempotency_key, extract(epoch from expires_at - created)::int"""
    same = mojo.call("sql", statement=f"SELECT {columns} FROM jobs_job WHERE id = ANY(%s) ORDER BY id",
                     params=[[ok["job"], theirs]])  # fmt: skip
    assert same[0] == same[1] and same[0][-1] == 900

    batch = await console.do("job.batch", channels=["default", "priority"], count=2, fn="demo_jobs.ok_job")
    assert batch.count == 4 and len(batch.result["jobs"]) == 4
    rows = mojo.wait_for_jobs(batch.result["jobs"], timeout=30)
    assert sorted((r["channel"], r["status"], r["payload"]["n"]) for r in rows.values()) == [
        ("default", "completed", 0), ("default", "completed", 1),
        ("priority", "completed", 0), ("priority", "completed", 1),
    ]  # fmt: skip
    # publish's metrics: every job counted once, in the UTC hour (5 of ours and django-mojo's one).
    assert published(mojo, "jobs.published") - before["jobs.published"] == 8
    assert published(mojo, "jobs.published.default") - before["jobs.published.default"] == 6
    assert b"jobs.published.priority" in await console.redis.smembers("mets:global:c:jobs")


async def test_purge_cancels_the_waiting_jobs_of_a_channel_with_an_event_each(
    mojo: MojoCluster, console: Console
) -> None:
    processing = KEYS.processing("bulk")
    await console.redis.zadd(processing, {"a-running-job": time.time() * 1000})  # purge leaves in-flight work alone
    waiting = [(await console.do("job.run", fn="demo_jobs.ok_job", channel="bulk", payload={"i": i})).result["job"]
               for i in range(2)]  # fmt: skip
    waiting.append(mojo.publish("demo_jobs.ok_job", {"i": 2}, channel="bulk"))
    delayed = (await console.do("job.run", fn="demo_jobs.ok_job", channel="bulk", run_at=time.time() + 300)).result
    assert await console.redis.llen(KEYS.queue("bulk")) == 3

    done = await console.do("channel.purge", channel="bulk")
    assert done.count == 4 and done.result == {"channel": "bulk", "canceled": 4, "queued": 3, "scheduled": 1}
    assert await console.redis.exists(KEYS.queue("bulk"), KEYS.sched("bulk")) == 0
    assert await console.redis.zscore(processing, "a-running-job") is not None
    rows = mojo.jobs([*waiting, delayed["job"]])
    assert {row["status"] for row in rows.values()} == {"canceled"} and all(r["finished_at"] for r in rows.values())
    for job in [*waiting, delayed["job"]]:
        last = events(mojo, job)[-1]
        assert last["event"] == "canceled" and last["details"]["previous_status"] == "pending"
    again = await console.do("channel.purge", channel="bulk")
    assert again.count == 0
    await console.redis.delete(processing)

    # A write connection the server dropped fails one action cleanly (nothing half-done), then is opened again.
    kill = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = %s"""
    assert mojo.call("sql", statement=kill, params=[APPLICATION_NAME]) == [[1]]
    with pytest.raises(CommandError, match="Postgres"):
        await console.do("channel.purge", channel="bulk")
    assert (await console.do("channel.purge", channel="bulk")).count == 0


async def test_cancel_does_what_django_mojos_cancel_job_does(mojo: MojoCluster, console: Console) -> None:
    parked = (await console.do("job.run", fn="demo_jobs.ok_job", channel="default", run_at=time.time() + 300)).result
    done = await console.do("job.cancel", job=parked["job"])
    assert done.result["canceled"] is True and done.result["was"] == "pending"
    row = mojo.jobs([parked["job"]])[parked["job"]]
    assert (row["status"], row["cancel_requested"], row["runner_id"]) == ("canceled", True, None)
    assert await console.redis.zscore(KEYS.sched("default"), parked["job"]) is None
    last = events(mojo, parked["job"])[-1]
    assert last["event"] == "canceled" and last["details"].keys() == {"requested_at", "forced", "previous_status"}
    assert (last["details"]["forced"], last["details"]["previous_status"]) == (False, "pending")

    # A running job on a live engine: django-mojo only flags it (cooperative), and the engine finishes it.
    running = (await console.do("job.run", fn="demo_jobs.sleep_job", channel="default", payload={"seconds": 3})).result
    mojo.wait_for_jobs([running["job"]], {"running"}, timeout=20)
    flagged = await console.do("job.cancel", job=running["job"])
    assert flagged.result["canceled"] is False and "cooperative" in flagged.message
    row = mojo.jobs([running["job"]])[running["job"]]
    assert (row["status"], row["cancel_requested"]) == ("running", True)
    assert mojo.wait_for_jobs([running["job"]], timeout=20)[running["job"]]["status"] == "completed"
    with pytest.raises(CommandError, match="already completed"):
        await console.do("job.cancel", job=running["job"])


async def test_run_now_has_django_mojos_scheduler_queue_a_delayed_job_at_once(
    mojo: MojoCluster, console: Console
) -> None:
    parked = (await console.do("job.run", fn="demo_jobs.ok_job", channel="default", payload={"n": 9},
                               run_at=time.time() + 600)).result  # fmt: skip
    done = await console.do("job.run_now", job=parked["job"])
    assert done.result == {"job": parked["job"], "was": "scheduled"} and "due now" in done.message
    # Ten minutes early: django-mojo's own scheduler queues it and the engine runs it, as any job that comes due.
    row = mojo.wait_for_jobs([parked["job"]], timeout=30)[parked["job"]]
    assert row["status"] == "completed"
    assert by_writer(names(mojo, parked["job"]), ["created", "scheduled"], ["queued"], ["running", "completed"])
    with pytest.raises(CommandError, match="only a scheduled job"):
        await console.do("job.run_now", job=parked["job"])


async def test_retry_publishes_a_replacement_the_engine_runs(mojo: MojoCluster, console: Console) -> None:
    failed = (await console.do("job.run", fn="demo_jobs.fail_job", channel="default",
                               payload={"message": "retry me"})).result["job"]  # fmt: skip
    mojo.wait_for_jobs([failed], timeout=20)
    done = await console.do("job.retry", job=failed)
    replacement = done.result["job"]
    assert replacement != failed and done.result["of"] == failed
    row = mojo.wait_for_jobs([replacement], timeout=20)[replacement]
    assert (row["status"], row["attempt"], row["runner_id"], row["last_error"]) == ("failed", 1, ENGINE, "retry me")
    assert row["metadata"] == {"retried_from": failed} and row["payload"] == {"message": "retry me"}
    original = mojo.jobs([failed])[failed]
    assert original["status"] == "failed" and original["metadata"]["retried_as"] == replacement
    last = events(mojo, failed)[-1]
    assert last["event"] == "retry" and last["details"] == {
        "retry_requested": True, "new_job_id": replacement, "delay": None, "previous_status": "failed"}  # fmt: skip
    assert by_writer(names(mojo, replacement), ["created", "queued"], ["running", "failed"])

    # A canceled job is retried too, and once only while its replacement lives (here: completed).
    parked = (await console.do("job.run", fn="demo_jobs.ok_job", channel="default", run_at=time.time() + 300)).result
    await console.do("job.cancel", job=parked["job"])
    second = (await console.do("job.retry", job=parked["job"])).result["job"]
    assert mojo.wait_for_jobs([second], timeout=20)[second]["status"] == "completed"
    with pytest.raises(CommandError, match="already retried"):
        await console.do("job.retry", job=parked["job"])
    with pytest.raises(CommandError, match="only failed, canceled or expired"):
        await console.do("job.retry", job=second)


async def test_clear_stuck_hands_abandoned_jobs_to_django_mojos_reaper(mojo: MojoCluster, console: Console) -> None:
    client, processing = mojo.client, KEYS.processing("stuck")
    crash = mojo.engine("e-crash", channels=("stuck",))
    retryable, final, doomed = [
        (await console.do("job.run", fn="demo_jobs.sleep_job", channel="stuck", payload=SLOW, **extra)).result["job"]
        for extra in ({"max_attempts": 2}, {}, {})
    ]  # fmt: skip
    mojo.wait_for_jobs([retryable, final, doomed], {"running"}, timeout=20)
    crash.kill()  # kill -9 mid-job: the rows say running, the in-flight entries stay
    mojo.wait_for(lambda: client.exists(KEYS.runner_hb("e-crash")) == 0, 10, "the dead engine's heartbeat to expire")

    # A running job whose engine is gone is canceled outright (forced), as cancel_job does.
    done = await console.do("job.cancel", job=doomed)
    assert done.result["forced"] is True and "no heartbeat" in done.message
    assert mojo.jobs([doomed])[doomed]["status"] == "canceled"
    assert events(mojo, doomed)[-1]["details"]["previous_status"] == "running"
    # One entry abandoned 15 s ago (older than older_than, younger than django-mojo's 30 s lease, so its reaper
    # would leave it alone for a while yet); one running row with no entry at all, as django-mojo's own
    # clear-stuck leaves its victims; and a young entry, as a live engine's are (re-scored every heartbeat).
    now_ms = time.time() * 1000
    client.zadd(processing, {retryable: now_ms - 15_000, doomed: now_ms})
    client.zrem(processing, final)

    handed = await console.do("channel.clear_stuck", channel="stuck", older_than=10)
    assert handed.count == 2 and sorted(handed.result["jobs"]) == sorted([retryable, final])
    assert handed.result["orphans"] == 1 and handed.result["unwatched"] == ["stuck"]
    assert "No live engine consumes stuck" in handed.message and "reaper" in handed.message
    assert client.zscore(processing, retryable) == 0 and client.zscore(processing, final) == 0
    assert client.zscore(processing, doomed) == now_ms  # young: left alone
    assert {row["status"] for row in mojo.jobs([retryable, final]).values()} == {"running"}  # the reaper decides

    mojo.engine("e-reaper", channels=("stuck",))  # its reaper takes the channel's entries within 5 s
    rows = mojo.wait_for_jobs([retryable, final], timeout=30)
    assert (rows[retryable]["status"], rows[retryable]["attempt"]) == ("completed", 2)
    assert {"reason": "reaper_timeout"} in [e["details"] for e in events(mojo, retryable)]
    assert (rows[final]["status"], rows[final]["last_error"]) == (
        "failed", "in-flight lease expired and the job is not retryable")  # fmt: skip
    assert events(mojo, final)[-1]["details"] == {"reason": "reaper_max_retries_exceeded"}


async def test_cleanup_forgets_offline_engines_in_jobpulse_only(console: Console) -> None:
    now = time.time()
    beat(console.state, "e-gone", now - 1000)
    fold(console.state, Tick(now=now), now)
    done = await console.do("runners.cleanup", older_than=300)
    assert done.count == 1 and [(e.runner, e.reason) for e in console.fed] == [("e-gone", "cleanup")]
    assert all(isinstance(e, RunnerRemoved) for e in console.fed)


async def test_drain_and_shutdown_stop_the_real_engines(mojo: MojoCluster, console: Console) -> None:
    """Last: it stops the module's engines."""
    client = mojo.client
    engine = mojo.engines.get("e-reaper")
    if engine is None or not engine.alive:
        engine = mojo.engine("e-reaper", channels=("stuck",))
    job = (await console.do("job.run", fn="demo_jobs.sleep_job", channel="stuck", payload={"seconds": 3})).result
    mojo.wait_for_jobs([job["job"]], {"running"}, timeout=20)
    drained = await console.do("runner.drain", runners=["e-reaper"])
    assert drained.result["delivered"] == ["e-reaper"] and "cannot undrain" in drained.message
    mojo.wait_for(lambda: json.loads(str(client.get(KEYS.runner_hb("e-reaper")) or "{}")).get("draining") is True,
                  5, "draining: true")  # fmt: skip
    mojo.wait_for(lambda: not engine.alive, 30, "the drained engine to exit")
    assert engine.process.returncode == 0 and client.exists(KEYS.runner_hb("e-reaper")) == 0
    assert mojo.jobs([job["job"]])[job["job"]]["status"] == "completed"  # it finished its running job first

    done = await console.do("runner.shutdown", runners="*")  # jobpulse's live runners: the main engine
    assert done.result["delivered"] == [ENGINE]
    main = mojo.engines[ENGINE]
    mojo.wait_for(lambda: not main.alive, 30, "the main engine to exit")
    assert main.process.returncode == 0 and client.exists(KEYS.runner_hb(ENGINE)) == 0
    with pytest.raises(CommandError, match="no engine listens"):
        await console.do("runner.shutdown", runners=[ENGINE])
