"""Celery's events translated for the pure core, on real recorded events (../shared/data) and on examples."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

from server.streams.core.events import Heartbeat, JobEvent, RunnerStopped
from server.streams.core.reducer import fold, initial_state
from server.streams.core.state import Limits
from server.streams.sources.celery.events import Translator

# The first 12,000 events of the recording in ../shared/data (celery-events-200k.jsonl.gz: a real Celery 5.7 worker on a
# Redis broker), kept in the repository so the test runs on any clone; the benchmarks fold the whole recording.
DATA = Path(__file__).resolve().parents[1] / "fixtures" / "celery-events-12k.jsonl.gz"
T0 = 1_795_882_924.0


def recorded(limit: int) -> list[dict[str, Any]]:
    out = []
    with gzip.open(DATA, "rt") as lines:
        for line in lines:
            out.append(json.loads(line))
            if len(out) == limit:
                break
    return out


def test_recorded_stream_folds_to_celerys_own_counts() -> None:
    """12,000 real events: every task ends in the status Celery says, on the worker that ran it."""
    events = recorded(12_000)
    translator = Translator()
    state = initial_state(Limits(max_jobs=100_000))
    finals: dict[str, str] = {}
    for event in events:
        for translated in translator.translate(event):
            fold(state, translated, event["local_received"])
        if event["type"] in ("task-succeeded", "task-failed"):
            finals[event["uuid"]] = "completed" if event["type"] == "task-succeeded" else "failed"
    assert translator.unknown == 0 and translator.orphans == 0
    assert finals and all(state.jobs[uuid].status == status for uuid, status in finals.items())
    received = {e["uuid"]: e for e in events if e["type"] == "task-received"}
    sample = next(iter(finals))
    job = state.jobs[sample]
    assert job.fn == received[sample]["name"] and job.runner == received[sample]["hostname"]
    assert Counter(j.status for j in state.jobs.values())["failed"] == Counter(finals.values())["failed"]
    worker = state.runners["w1@vm"]
    assert worker.version == "py-celery/5.7.0" and worker.interval == 2.0 and worker.host == "vm"


def beat(kind: str = "worker-heartbeat", ts: float = T0, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "hostname": "w1@host", "pid": 7, "clock": 1, "freq": 2.0, "active": 0, "processed": 0,
            "sw_ident": "py-celery", "sw_ver": "5.7.0", "timestamp": ts, **fields}  # fmt: skip


def task(kind: str, uuid: str = "t1", ts: float = T0, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "uuid": uuid, "hostname": "w1@host", "pid": 7, "clock": 2, "timestamp": ts, **fields}


def test_join_by_uuid_active_jobs_and_restarts() -> None:
    translator = Translator()
    translator.translate(beat("worker-online"))
    translator.worker_queues("w1@host", ["emails"], concurrency=4)
    sent = translator.translate(task("task-sent", name="mail.send", queue="emails", args="(1,)", kwargs="{}"))
    assert isinstance(sent[0], JobEvent) and (sent[0].event, sent[0].channel, sent[0].fn) == (
        "queued",
        "emails",
        "mail.send",
    )
    started = translator.translate(task("task-started", ts=T0 + 1))[0]
    assert isinstance(started, JobEvent) and started.fn == "mail.send" and started.runner == "w1@host"
    hb = translator.translate(beat(ts=T0 + 2))[0]
    assert isinstance(hb, Heartbeat) and [a.job for a in hb.active] == ["t1"] and hb.channels == ["emails"]
    assert hb.concurrency == 4
    failed = translator.translate(task("task-failed", ts=T0 + 3, exception="KeyError('x')", traceback="Traceback ..."))[
        0
    ]
    assert isinstance(failed, JobEvent) and failed.event == "failed" and failed.error == "KeyError('x')"
    hb = translator.translate(beat(ts=T0 + 4))[0]
    assert isinstance(hb, Heartbeat) and hb.active == [] and hb.failed == 1
    # A new pid under the same name is a restart: a new boot.
    restarted = translator.translate(beat(ts=T0 + 10, pid=8))[0]
    assert isinstance(restarted, Heartbeat) and restarted.boot == T0 + 10
    assert isinstance(translator.translate(beat("worker-offline", ts=T0 + 11, pid=8))[0], RunnerStopped)


def test_revoked_expired_rejected_and_orphans() -> None:
    translator = Translator(max_tasks=2)
    translator.translate(task("task-received", "a", name="x.y"))
    revoked = translator.translate(task("task-revoked", "a", terminated=True))[0]
    assert isinstance(revoked, JobEvent) and (revoked.event, revoked.reason) == ("canceled", "terminated")
    expired = translator.translate(task("task-revoked", "a", expired=True))[0]
    assert isinstance(expired, JobEvent) and expired.event == "expired"
    requeued = translator.translate(task("task-rejected", "a", requeue=True))[0]
    assert isinstance(requeued, JobEvent) and requeued.event == "queued"
    orphan = translator.translate(task("task-succeeded", "never-seen", runtime=0.5))[0]
    assert isinstance(orphan, JobEvent) and orphan.fn == "?" and translator.orphans == 1
    for n in range(5):
        translator.translate(task("task-received", f"more-{n}", name="x.y"))
    assert len(translator.tasks) == 2  # bounded
    assert translator.translate({"type": "something-else"}) == [] and translator.unknown == 1


def test_reconcile_from_inspect_and_task_events_off() -> None:
    from server.streams.sources.celery.events import Inspection

    translator = Translator()
    translator.translate(beat("worker-online", processed=4))
    found = Inspection(
        now=T0 + 5,
        stats={"w1@host": {"pool": {"max-concurrency": 8}}},
        active_queues={"w1@host": [{"name": "emails"}, {"name": "bad name!"}]},
        active={
            "w1@host": [
                {
                    "id": "a1",
                    "name": "mail.send",
                    "time_start": T0 + 1,
                    "delivery_info": {"routing_key": "emails"},
                    "args": [1],
                    "kwargs": {},
                }
            ]
        },
        reserved={"w1@host": [{"id": "r1", "name": "mail.send", "delivery_info": {"routing_key": "emails"}}]},
        scheduled={"w1@host": [{"eta": T0 + 60, "request": {"id": "s1", "name": "mail.later"}}]},
    )
    events = translator.reconcile(found)
    seen = [(e.job, e.event) for e in events if isinstance(e, JobEvent)]
    assert seen == [("a1", "queued"), ("a1", "started"), ("r1", "queued"), ("s1", "scheduled")]
    assert translator.reconcile(found) == []  # known now: nothing again
    hb = translator.translate(beat(ts=T0 + 6, processed=4))[0]
    assert isinstance(hb, Heartbeat) and hb.concurrency == 8 and hb.channels == ["bad_name_", "emails"]
    assert [a.job for a in hb.active] == ["a1"]
    # `processed` grows with no task event from it: task events are off, said once.
    translator.translate(beat(ts=T0 + 8, processed=7))
    translator.translate(beat(ts=T0 + 10, processed=9))
    assert translator.newly_off == ["w1@host"]


def test_a_late_event_of_an_earlier_attempt_stays_in_that_attempt() -> None:
    """Celery's logical clock puts a retry that arrives after the next attempt began back in its own attempt."""
    translator = Translator()
    state = initial_state()
    events = [
        task("task-received", "t", ts=T0, name="x.y", clock=5, retries=0),
        task("task-started", "t", ts=T0 + 1, clock=6),
        # Attempt 2, received and started on another worker (its own clock), before attempt 1's retry arrives.
        {**task("task-received", "t", ts=T0 + 3, name="x.y", clock=40, retries=1), "hostname": "w2@host"},
        {**task("task-started", "t", ts=T0 + 4, clock=41), "hostname": "w2@host"},
        task("task-retried", "t", ts=T0 + 2, clock=7, exception="E()", traceback="tb"),
    ]
    for event in events:
        for translated in translator.translate(event):
            fold(state, translated, T0 + 5)
    job = state.jobs["t"]
    assert (job.status, job.attempt, job.runner) == ("running", 2, "w2@host")
    late = [h for h in job.history if h[1] == "retried"]
    assert late and late[0][2] == 1  # kept in the history as attempt 1's retry


def test_a_workers_concurrency_is_never_below_what_it_runs() -> None:
    """Before inspect says its pool's size, a worker's slots are at least the tasks it is seen running."""
    translator = Translator()
    translator.translate(beat("worker-online"))
    for n in range(5):
        translator.translate(task("task-received", uuid=f"t{n}", name="demo.work", queue="celery"))
        translator.translate(task("task-started", uuid=f"t{n}", ts=T0 + 1))
    hb = translator.translate(beat(ts=T0 + 2, active=3))[0]
    assert isinstance(hb, Heartbeat) and len(hb.active) == 5 and hb.concurrency == 5
    translator.worker_queues("w1@host", ["celery"], concurrency=8)  # inspect's answer wins once it is in
    hb = translator.translate(beat(ts=T0 + 4))[0]
    assert isinstance(hb, Heartbeat) and hb.concurrency == 8
