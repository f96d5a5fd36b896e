"""The django-mojo harness runs the real thing: its engine and scheduler run jobs, and its keys and rows are as
docs/mojo.md says.

Each test drives a real django-mojo 1.39.10 deployment (tests/mojo_cluster) on a private Redis and a Postgres
database of its own, and checks what the mojo connector will read and do against django-mojo's own stats, Redis keys
and Postgres rows: heartbeats and runner registries, the control and broadcast channels, the job lifecycle in
jobs_jobevent (and that its ids commit out of order), the metrics counters and their hour buckets, the publish contract
without Django, and what clear-stuck, the reaper, purge, cancel, retry and shutdown really do.

The suite brings up a PostgreSQL and django-mojo's environment first (tests/provision.py); `-m "not mojo"` leaves
these tests out.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from tests.mojo_cluster.cluster import MojoCluster, by_writer, deployment

pytestmark = [pytest.mark.integration, pytest.mark.mojo, pytest.mark.timeout(180)]

PREFIX = "acme:jobs"  # not django-mojo's default: the prefix is a setting, and the broadcast channel ignores it
RUNNER = "e2e-engine"
BROADCAST = "mojo:jobs:runners:broadcast"
# django-mojo's metrics: publish() buckets by the UTC hour it passes; the engine passes no time, so its counters are
# bucketed in METRICS_TIMEZONE (unset: America/Los_Angeles).
ENGINE_METRICS_TZ = ZoneInfo("America/Los_Angeles")
METRICS = "{mets:global}:mets:global::"


@pytest.fixture(scope="module")
def mojo() -> Iterator[MojoCluster]:
    """django-mojo with one engine on default and priority and its scheduler; "bulk" is left for the tests' own."""
    # The reaper takes a lease after 5 s instead of 30.
    with deployment(RUNNER, prefix=PREFIX, channels=("default", "priority", "bulk"),
                    settings={"JOBS_VISIBILITY_TIMEOUT_MS": 5000}) as cluster:  # fmt: skip
        yield cluster


def ask(client: redis.Redis, channel: str, message: dict[str, Any], reply_prefix: str, timeout: float = 5.0) -> Any:
    """Publish a control message with a fresh reply channel, as a connector would; the first reply (None if none)."""
    reply_channel = f"{reply_prefix}:{uuid.uuid4().hex[:8]}"
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(reply_channel)
        client.publish(channel, json.dumps({**message, "reply_channel": reply_channel}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = pubsub.get_message(timeout=0.2)
            if reply is not None:
                return reply["data"]
        return None
    finally:
        pubsub.close()


def events(mojo: MojoCluster, job_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = mojo.call("events", job_id=job_id)
    return result


def names(mojo: MojoCluster, job_id: str) -> list[str]:
    return [event["event"] for event in events(mojo, job_id)]


def counters(client: redis.Redis, slug: str) -> dict[str, int]:
    """Every hour bucket of one metric slug: key -> count."""
    keys = sorted(client.scan_iter(match=f"{METRICS}{slug}:hr:*", count=1000))
    return {key: int(value or 0) for key, value in zip(keys, client.mget(keys) if keys else [], strict=True)}


def hour_keys(slug: str, tz: Any, *moments: datetime) -> set[str]:
    return {f"{METRICS}{slug}:hr:{moment.astimezone(tz):%Y-%m-%dT%H}" for moment in moments}


def heartbeat(mojo: MojoCluster, runner: str = RUNNER) -> dict[str, Any] | None:
    raw = mojo.client.get(mojo.key(f"runner:{runner}:hb"))
    return json.loads(raw) if raw else None


def test_a_runner_beats_in_redis_and_answers_on_its_control_channels(mojo: MojoCluster) -> None:
    client = mojo.client
    doc = heartbeat(mojo)
    assert doc is not None
    assert doc["runner_id"] == RUNNER and doc["channels"] == ["default", "priority", RUNNER]
    assert {"hostname", "jobs_processed", "jobs_failed", "started", "last_heartbeat", "draining"} <= set(doc)
    assert doc["draining"] is False
    assert 0 < client.ttl(mojo.key(f"runner:{RUNNER}:hb")) <= 3  # 3 x JOBS_RUNNER_HEARTBEAT_SEC
    for channel in ("default", "priority", RUNNER):  # one registry per consumed channel, the runner's own included
        registry = mojo.key(f"runner_registry:{channel}")
        score = client.zscore(registry, RUNNER)
        assert score is not None and abs(score - time.time()) < 5  # epoch seconds of its last beat
        assert 0 < client.ttl(registry) <= 6  # 6 x JOBS_RUNNER_HEARTBEAT_SEC
    assert client.zscore(mojo.key("runner_registry:bulk"), RUNNER) is None

    lock = client.get(mojo.key("lock:scheduler"))
    assert isinstance(lock, str) and re.fullmatch(r"[0-9a-f]{32}", lock)  # a random uuid hex, not a host name
    assert 0 < client.pttl(mojo.key("lock:scheduler")) <= 5000
    mojo.wait_for(lambda: client.exists(mojo.key("scheduler:progress")) == 1, 10, "the scheduler's progress key")
    progress = json.loads(client.get(mojo.key("scheduler:progress")) or "{}")
    assert progress["lease"] == hashlib.sha256(lock.encode()).hexdigest()
    assert progress["scheduler_id"].endswith("-scheduler")

    # The per-runner control channel carries the prefix; the broadcast channel does not.
    channels = set(client.pubsub_channels())
    assert {f"{PREFIX}:runner:{RUNNER}:ctl", BROADCAST} <= channels
    assert f"{PREFIX}:runners:broadcast" not in channels

    stats = mojo.stats()  # django-mojo's own view: GET /api/jobs/stats
    assert stats["scheduler"] == {"active": True, "lock_holder": lock}
    assert [(r["runner_id"], r["alive"]) for r in stats["runners"]] == [(RUNNER, True)]

    # The wire a connector uses, by hand: ping on the runner's ctl channel answers the bare string "pong", status on
    # the broadcast channel answers a JSON document per runner.
    assert ask(client, f"{PREFIX}:runner:{RUNNER}:ctl", {"command": "ping"}, "mojo:jobs:ping") == "pong"
    status = json.loads(ask(client, BROADCAST, {"command": "status", "data": {}}, "mojo:jobs:replies"))
    assert status["runner_id"] == RUNNER and status["channels"] == doc["channels"]
    assert {"jobs_processed", "jobs_failed", "started", "timestamp"} <= set(status)
    assert ask(client, BROADCAST, {"command": "pause"}, "mojo:jobs:replies", timeout=1.0) is None  # not implemented
    assert mojo.call("ping", runner_id=RUNNER) is True
    assert [r["runner_id"] for r in mojo.call("broadcast_command", command="status", timeout=2.0)] == [RUNNER]


def test_jobs_run_through_the_engine_and_land_in_postgres_redis_and_the_metrics(mojo: MojoCluster) -> None:
    client = mojo.client
    slugs: dict[str, Any] = {
        "jobs.published": UTC, "jobs.published.default": UTC,
        "jobs.completed": ENGINE_METRICS_TZ, "jobs.failed": ENGINE_METRICS_TZ, "jobs.retried": ENGINE_METRICS_TZ,
        "jobs.channel.default.completed": ENGINE_METRICS_TZ, "jobs.channel.default.failed": ENGINE_METRICS_TZ,
    }  # fmt: skip
    before = {slug: counters(client, slug) for slug in slugs}
    stats_before = mojo.stats()["totals"]
    processed_before = (heartbeat(mojo) or {})["jobs_processed"]
    started = datetime.now(UTC)

    ok = mojo.publish("demo_jobs.ok_job", {"n": 1})
    bad = mojo.publish("demo_jobs.fail_job", {"message": "boom for jobpulse"})
    # publish() re-decides "delayed" after its commit, and a busy machine can take a second: 3 s keeps it delayed.
    later = mojo.publish("demo_jobs.ok_job", {"n": 2}, delay=3)
    flaky = mojo.publish("demo_jobs.fail_job", {"message": "again"}, max_retries=2, backoff_base=1.5)
    assert all(re.fullmatch(r"[0-9a-f]{32}", job) for job in (ok, bad, later, flaky))
    rows = mojo.wait_for_jobs([ok, bad, later, flaky])
    finished = datetime.now(UTC)

    assert {job: (rows[job]["status"], rows[job]["attempt"]) for job in (ok, bad, later, flaky)} == {
        ok: ("completed", 1),
        bad: ("failed", 1),
        later: ("completed", 1),
        flaky: ("failed", 2),
    }
    assert rows[ok]["metadata"] == {"result": {"echo": {"n": 1}}} and rows[ok]["runner_id"] == RUNNER
    assert rows[bad]["last_error"] == "boom for jobpulse"
    # jobs_job.modified is no change cursor: the engine's claim (a queryset update) and its saves leave it as created.
    assert rows[ok]["modified"] < rows[ok]["started_at"] < rows[ok]["finished_at"]

    # jobs_jobevent: the lifecycle, with bigint ids that grow per job.
    queue = mojo.queue_key("default")
    assert by_writer(names(mojo, ok), ["created", "queued"], ["running", "completed"])
    assert by_writer(names(mojo, bad), ["created", "queued"], ["running", "failed"])
    assert by_writer(names(mojo, later), ["created", "scheduled"], ["queued"], ["running", "completed"])
    trail = events(mojo, flaky)
    assert [e["id"] for e in trail] == sorted(e["id"] for e in trail)  # the agent reads in id order
    # The scheduler RPUSHes a due retry before it writes its `queued` event (scheduler.py:417-431), so the engine can
    # claim the job and write `running` (even `failed`) first: that event lands anywhere after `retry`.
    requeued = next(e for e in trail[4:] if e["event"] == "queued")
    trail.remove(requeued)
    trail.insert(4, requeued)
    assert [e["event"] for e in trail] == ["created", "queued", "running", "retry", "queued", "running", "failed"]
    assert [e["attempt"] for e in trail] == [0, 0, 1, 1, 0, 2, 2]
    assert trail[0]["details"] == {"func": "demo_jobs.fail_job", "channel": "default"}
    assert trail[1]["details"] == {"queue": queue} and trail[2]["runner_id"] == RUNNER
    assert trail[3]["details"]["reason"] == "failure" and "next_run_at" in trail[3]["details"]
    assert requeued["details"]["queue"] == queue and requeued["details"]["scheduler_id"].endswith("-scheduler")
    assert trail[6]["details"] == {"error": "again"}
    assert events(mojo, later)[1]["details"].keys() == {"run_at"}
    assert all(isinstance(e["id"], int) for e in trail)
    assert [(log["kind"], log["message"]) for log in mojo.call("logs", job_id=bad)] == [
        ("error", "Failed to complete job: boom for jobpulse")
    ]

    # Redis: nothing left waiting; retried and delayed work registered its channel for the scheduler.
    assert client.exists(queue, mojo.key("sched:default"), mojo.key("sched_broadcast:default")) == 0
    assert "default" in client.smembers(mojo.key("sched_registry"))
    # An in-flight entry can outlive its job (the heartbeat re-touches it); the reaper drops it once the lease lapses.
    mojo.wait_for(lambda: client.zcard(mojo.key("processing:default")) == 0, 20, "an empty processing set")

    # django-mojo's own stats agree.
    stats = mojo.stats()
    assert stats["totals"]["completed"] - stats_before["completed"] == 2
    assert stats["totals"]["failed"] - stats_before["failed"] == 2
    assert stats["channels"]["default"]["queued_count"] == 0 and stats["totals"]["runners_active"] == 1
    # The heartbeat counts every finished attempt; its jobs_failed is never incremented.
    mojo.wait_for(lambda: (heartbeat(mojo) or {}).get("jobs_processed") == processed_before + 5, 10, "5 processed")
    assert (heartbeat(mojo) or {})["jobs_failed"] == 0

    # Metrics: hour counters, in UTC for publishes and in METRICS_TIMEZONE for the engine's.
    want = {"jobs.published": 4, "jobs.published.default": 4, "jobs.completed": 2, "jobs.failed": 2,
            "jobs.retried": 1, "jobs.channel.default.completed": 2, "jobs.channel.default.failed": 2}  # fmt: skip
    for slug, tz in slugs.items():
        after = counters(client, slug)
        changed = {key for key, value in after.items() if value != before[slug].get(key, 0)}
        assert sum(after.values()) - sum(before[slug].values()) == want[slug], slug
        assert changed <= hour_keys(slug, tz, started, finished), (slug, changed)
    assert {"jobs.published", "jobs.published.default"} <= client.smembers("mets:global:c:jobs")
    assert "jobs.channel.default.completed" in client.smembers("mets:global:c:jobs_channels")
    assert "jobs.channel.default.failed" not in client.smembers("mets:global:c:jobs_channels")  # no category
    assert set(slugs) <= client.smembers("mets:global:slugs")
    hours = mojo.call("metrics", slugs=["jobs.completed"])["jobs.completed"]  # django-mojo's own fetch
    assert sum(hours[-2:]) >= 2


def test_a_job_published_without_django_runs_the_publish_contract(mojo: MojoCluster) -> None:
    """The row and its created event in one statement, then RPUSH, then the queued event: the engine runs it."""
    job_id, queue = uuid.uuid4().hex, mojo.queue_key("default")
    inserted = mojo.call(
        "sql",
        statement="""
        WITH job AS (
            INSERT INTO jobs_job (id, channel, func, payload, status, run_at, expires_at, attempt, max_retries,
                backoff_base, backoff_max_sec, broadcast, cancel_requested, max_exec_seconds, runner_id, last_error,
                stack_trace, metadata, created, modified, started_at, finished_at, idempotency_key)
            VALUES (%s, 'default', 'demo_jobs.ok_job', %s::jsonb, 'pending', NULL, now() + interval '900 seconds', 0, 0,
                2.0, 3600, false, false, NULL, NULL, '', '', '{}'::jsonb, now(), now(), NULL, NULL, NULL)
            RETURNING id, channel)
        INSERT INTO jobs_jobevent (job_id, channel, event, at, runner_id, attempt, details, created, modified)
        SELECT id, channel, 'created', now(), NULL, 0, json_build_object('func', 'demo_jobs.ok_job',
            'channel', channel)::jsonb, now(), now() FROM job
        """,
        params=[job_id, json.dumps({"via": "sql"})],
    )
    assert inserted == 1
    mojo.client.rpush(queue, job_id)
    mojo.call(
        "sql",
        statement="""INSERT INTO jobs_jobevent (job_id, channel, event, at, runner_id, attempt, details, created,
            modified) VALUES (%s, 'default', 'queued', now(), NULL, 0, %s::jsonb, now(), now())""",
        params=[job_id, json.dumps({"queue": queue})],
    )
    row = mojo.wait_for_jobs([job_id])[job_id]
    assert (row["status"], row["attempt"], row["metadata"]) == ("completed", 1, {"result": {"echo": {"via": "sql"}}})
    # The RPUSH comes before the queued event, so the engine may claim the job and write running first (seen on this
    # 2-core machine in a parallel suite; django-mojo's own publish has the same window).
    assert by_writer(names(mojo, job_id), ["created", "queued"], ["running", "completed"])


def test_event_ids_commit_out_of_order(mojo: MojoCluster) -> None:
    """A publish inside a caller's transaction takes its event id at once and commits it later."""
    last = mojo.call("sql", statement="SELECT coalesce(max(id), 0) FROM jobs_jobevent")[0][0]
    holder = mojo.new_agent()
    holder.send("publish_held", hold_s=5.0, func="demo_jobs.ok_job", payload={"held": True})
    idle_in_transaction = """SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND state = 'idle in transaction'"""
    # Its row and created event are inserted, uncommitted, once its session waits inside the transaction.
    mojo.wait_for(lambda: mojo.call("sql", statement=idle_in_transaction)[0][0] == 1, 5, "the held transaction")
    quick = mojo.publish("demo_jobs.ok_job", {"quick": True})
    seen = [e["id"] for e in mojo.call("events", after_id=last)]
    held = holder.result(timeout=30)
    held_created = next(e for e in events(mojo, held) if e["event"] == "created")
    assert held_created["id"] not in seen and held_created["id"] < max(seen), (held_created, seen)
    assert held_created["id"] > last
    # The RPUSH waited for the commit (on_commit), so the held job still runs.
    rows = mojo.wait_for_jobs([held, quick])
    assert rows[held]["status"] == rows[quick]["status"] == "completed"
    holder.stop()


def test_stuck_jobs_the_reaper_purge_cancel_and_retry_do_what_docs_mojo_md_says(mojo: MojoCluster) -> None:
    client = mojo.client
    processing, queue = mojo.key("processing:bulk"), mojo.queue_key("bulk")
    crash = mojo.engine("e-crash", channels=("bulk",))
    slow = {"seconds": 60, "first_attempt_only": True}
    retryable = mojo.publish("demo_jobs.sleep_job", slow, channel="bulk", max_retries=2)
    final = mojo.publish("demo_jobs.sleep_job", slow, channel="bulk")  # max_retries=0: one attempt only
    mojo.wait_for_jobs([retryable, final], {"running"})
    crash.kill()  # kill -9 mid-job: the rows say running, the in-flight entries stay

    mojo.wait_for(lambda: heartbeat(mojo, "e-crash") is None, 10, "the dead runner's heartbeat to expire")
    assert set(client.zrange(processing, 0, -1)) == {retryable, final}
    assert mojo.stats()["totals"]["running_stale"] == 2  # running rows whose runner is not alive

    # django-mojo's clear-stuck (POST control/clear-stuck) requeues the ids but leaves the rows running...
    cleared = mojo.call("clear_stuck", channel="bulk", idle_threshold_ms=0)
    assert cleared["cleared"] == 2 and set(client.lrange(queue, 0, -1)) == {retryable, final}
    assert events(mojo, retryable)[-1]["details"] == {"reason": "manual_clear_stuck"}
    assert names(mojo, retryable)[-1] == "retry"
    # ... so an engine pops them and drops them (its pending-only claim), and nothing will ever run them again.
    mojo.engine("e-bulk", channels=("bulk",))
    mojo.wait_for(lambda: client.exists(queue, processing) == 0, 20, "the requeued ids to be dropped")
    assert {row["status"] for row in mojo.jobs([retryable, final]).values()} == {"running"}

    # Handing the leases to django-mojo's reaper (an in-flight entry scored long ago) does what an operator expects:
    # the retryable job is reset to pending and requeued, the other is failed.
    client.zadd(processing, {retryable: 0, final: 0})
    rows = mojo.wait_for_jobs([retryable, final], timeout=40)
    assert (rows[retryable]["status"], rows[retryable]["attempt"]) == ("completed", 2)
    assert rows[final]["status"] == "failed"
    assert rows[final]["last_error"] == "in-flight lease expired and the job is not retryable"
    assert {"reason": "reaper_timeout"} in [e["details"] for e in events(mojo, retryable)]
    assert events(mojo, final)[-1]["details"] == {"reason": "reaper_max_retries_exceeded"}
    mojo.engines["e-bulk"].stop()  # a clean stop removes its heartbeat and registry entries
    assert heartbeat(mojo, "e-bulk") is None and client.zscore(mojo.key("runner_registry:bulk"), "e-bulk") is None

    # Purge (POST control/clear-queue): the channel's lists and sets go, its pending rows become canceled, no events.
    waiting = [mojo.publish("demo_jobs.ok_job", {"i": i}, channel="bulk") for i in range(3)]
    delayed = mojo.publish("demo_jobs.ok_job", {}, channel="bulk", delay=300)
    assert client.llen(queue) == 3 and client.zscore(mojo.key("sched:bulk"), delayed) is not None
    purged = mojo.call("clear_channel", channel="bulk")
    assert purged["deleted"]["queue"] and purged["deleted"]["scheduled"] and purged["db_pending_canceled"] == 4
    assert client.exists(queue, mojo.key("sched:bulk"), mojo.key("channel:bulk:paused")) == 0
    rows = mojo.jobs([*waiting, delayed])
    assert {row["status"] for row in rows.values()} == {"canceled"} and all(r["finished_at"] for r in rows.values())
    assert names(mojo, delayed) == ["created", "scheduled"]  # no canceled event

    # Cancel (POST job/<id> {"cancel_request": true}) of a scheduled job: canceled, out of the sched set, an event.
    parked = mojo.publish("demo_jobs.ok_job", {}, delay=300)
    assert mojo.call("cancel", job_id=parked)["status"] is True
    assert mojo.jobs([parked])[parked]["status"] == "canceled"
    assert client.zscore(mojo.key("sched:default"), parked) is None
    assert events(mojo, parked)[-1]["details"]["previous_status"] == "pending"
    # POST cancel (jobs.cancel) only sets the cooperative flag, yet writes a canceled event: the row stays pending.
    flagged = mojo.publish("demo_jobs.ok_job", {}, delay=300)
    assert mojo.call("cancel_flag", job_id=flagged) is True
    row = mojo.jobs([flagged])[flagged]
    assert (row["status"], row["cancel_requested"], names(mojo, flagged)[-1]) == ("pending", True, "canceled")

    # Retry (POST retry) publishes a replacement with a new id; the original stays failed and links to it.
    failed = mojo.publish("demo_jobs.fail_job", {"message": "retry me"})
    mojo.wait_for_jobs([failed])
    retried = mojo.call("retry", job_id=failed)
    replacement = retried["new_job_id"]
    assert retried["status"] is True and replacement != failed
    assert mojo.wait_for_jobs([replacement])[replacement]["status"] == "failed"
    original = mojo.jobs([failed])[failed]
    assert original["status"] == "failed" and original["metadata"]["retried_as"] == replacement
    assert events(mojo, failed)[-1]["details"]["retry_requested"] is True


def test_shutdown_drains_the_engine_then_it_exits(mojo: MojoCluster) -> None:
    """{"command": "shutdown"} on a runner's ctl channel: no new claims, running jobs finish, then the process ends."""
    client = mojo.client
    engine = mojo.engine("e-drain", channels=("bulk",))
    job = mojo.publish("demo_jobs.sleep_job", {"seconds": 5}, channel="bulk")
    mojo.wait_for_jobs([job], {"running"})
    client.publish(mojo.key("runner:e-drain:ctl"), json.dumps({"command": "shutdown"}))
    mojo.wait_for(lambda: (heartbeat(mojo, "e-drain") or {}).get("draining") is True, 5, "draining: true")
    later = mojo.publish("demo_jobs.ok_job", {}, channel="bulk")
    mojo.wait_for(lambda: not engine.alive, 30, "the drained engine to exit")
    assert engine.process.returncode == 0
    assert mojo.jobs([job])[job]["status"] == "completed"
    assert mojo.jobs([later])[later]["status"] == "pending" and client.lrange(mojo.queue_key("bulk"), 0, -1) == [later]
    assert heartbeat(mojo, "e-drain") is None and client.zscore(mojo.key("runner_registry:bulk"), "e-drain") is None
