"""Celery's events as jobpulse events: workers become runners, queues channels, tasks jobs.

Pure layer: no I/O, no clock; the shell (`server.streams.sources.celery.connector`) decodes kombu's
envelope, turns ISO times into epoch seconds and hands each event dict here.

Celery's task events after `task-received` carry only the uuid and their own
fields (docs/reference: "the adapter must join by uuid"), so a `Translator`
remembers, for a bounded number of tasks, the name and queue it learnt from
`task-sent` / `task-received`, and per worker the tasks it runs now (so a
heartbeat can list them, as a native runner's does). Memory is bounded by
`max_tasks` (oldest forgotten first) and `max_workers`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from server.streams.core.events import ActiveJob, Heartbeat, JobEvent, RunnerStopped, count, seconds

DEFAULT_QUEUE = "celery"
MAX_ATTEMPTS_KEPT = 50  # task-received clocks remembered per task
# What a late event of an earlier attempt becomes: that attempt started, or it ended in a retry.
_LATE = {"task-started": "started", "task-retried": "retried", "task-failed": "retried"}
MAX_ACTIVE = 100  # jobs a heartbeat lists (the protocol's cap)
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Task:
    name: str
    queue: str  # already a valid channel name (`_channel`): worked out once per task, not per event
    attempt: int = 1
    worker: str | None = None
    # (worker, Lamport clock of its task-received there, attempt): an event that arrives late is put in the
    # attempt it belongs to by Celery's logical clock, not in the newest one. Clocks are compared only
    # within one worker: without gossip, workers' clocks are not kept in step with each other.
    received: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class _Worker:
    boot: float
    pid: int
    failed: int = 0
    running: OrderedDict[str, tuple[str, str, float]] = field(default_factory=OrderedDict)  # uuid -> (queue, fn, t)
    queues: tuple[str, ...] = ()
    concurrency: int = 1
    processed: int | None = None  # its count at the last heartbeat
    finished: int = 0  # task-succeeded/failed/retried events from it since the last heartbeat
    events_off: bool = False


@dataclass
class Inspection:
    """What `celery inspect` answered, per worker host name (the shell asks; ISO times already epoch seconds)."""

    now: float
    stats: dict[str, Any] = field(default_factory=dict)
    active_queues: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    active: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reserved: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    scheduled: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# Celery's numbers, checked before anything is made of them (docs/protocol.md 1.1's ranges; section 6): an event
# with one outside its range is rejected and counted like a malformed one.
_COUNT_FIELDS = ("pid", "clock", "processed", "active", "retries")
_TIME_FIELDS = ("timestamp", "runtime", "freq", "local_received", "eta")  # eta may also be ISO text


def _check_numbers(event: dict[str, Any]) -> None:
    """Raises ValueError when a count or time of `event` is out of its range."""
    for name in _COUNT_FIELDS:
        value = event.get(name)
        if value:
            count(value, name)
    for name in _TIME_FIELDS:
        value = event.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds(value, name)


class Translator:
    """Turns Celery event dicts into jobpulse events; remembers what later events of a task leave out."""

    def __init__(self, max_tasks: int = 100_000, max_workers: int = 5_000, default_queue: str = DEFAULT_QUEUE) -> None:
        self.max_tasks = max_tasks
        self.max_workers = max_workers
        self.default_queue = default_queue
        self.tasks: OrderedDict[str, _Task] = OrderedDict()
        self.workers: OrderedDict[str, _Worker] = OrderedDict()
        self.seqs: dict[str, int] = {}
        self.unknown = 0  # events of a type this translator does not map (counted, not fatal)
        # Workers found sending no task events (their `processed` grew, no task event came), for the shell to
        # say so and turn events on; it empties the list.
        self.newly_off: list[str] = []
        self.orphans = 0  # task events for a uuid never seen sent or received (name and queue unknown)

    # -- what reconciliation learns (inspect active_queues, stats) -----------------------------------

    def worker_queues(self, hostname: str, queues: list[str], concurrency: int | None = None) -> None:
        worker = self.workers.get(hostname)
        if worker is not None:
            worker.queues = tuple(sorted({_channel(q) for q in queues}))[:1000]
            if concurrency:
                worker.concurrency = max(1, concurrency)

    def reconcile(self, found: Inspection) -> list[Heartbeat | JobEvent | RunnerStopped]:
        """Jobs that `inspect` shows and the event stream has not (jobpulse started late, or events were lost).

        A task already known in a later state is left alone; a synthesized event is dated by the task's own
        times, so the reducer's ordering drops it if newer events have passed it meanwhile.
        """
        out: list[Heartbeat | JobEvent | RunnerStopped] = []
        for host, queues in found.active_queues.items():
            pool = found.stats.get(host, {}).get("pool", {}) if isinstance(found.stats.get(host), dict) else {}
            concurrency = pool.get("max-concurrency") if isinstance(pool, dict) else None
            if host not in self.workers:
                continue  # it has not sent a heartbeat: its events are off (the shell turns them on)
            self.worker_queues(host, [str(q.get("name")) for q in queues if isinstance(q, dict) and q.get("name")],
                               concurrency if isinstance(concurrency, int) else None)  # fmt: skip
        for host, requests in found.active.items():
            for request in requests:
                out.extend(self._inspected(host, request, "started", found.now))
        for host, requests in found.reserved.items():
            for request in requests:
                out.extend(self._inspected(host, request, "received", found.now))
        for host, entries in found.scheduled.items():
            for entry in entries:
                inner = entry.get("request") if isinstance(entry, dict) else None
                if isinstance(inner, dict):
                    out.extend(self._inspected(host, {**inner, "eta": entry.get("eta")}, "received", found.now))
        return out

    def _inspected(self, host: str, request: dict[str, Any], phase: str, now: float) -> list[JobEvent]:
        uuid = request.get("id")
        if not isinstance(uuid, str) or not uuid:
            return []
        worker = self.workers.get(host)
        if uuid in self.tasks and (phase == "received" or (worker is not None and uuid in worker.running)):
            return []
        info = request.get("delivery_info")
        delivery: dict[str, Any] = info if isinstance(info, dict) else {}
        started = request.get("time_start")
        at = float(started) if isinstance(started, int | float) else now
        received: dict[str, Any] = {
            "type": "task-received", "uuid": uuid, "hostname": host, "timestamp": at,
            "name": request.get("name") or "?", "routing_key": delivery.get("routing_key") or "",
            "args": str(request.get("args"))[:1000], "kwargs": str(request.get("kwargs"))[:1000],
            "eta": request.get("eta"),
        }  # fmt: skip
        out = []
        if uuid not in self.tasks:
            first = self._task("task-received", received)
            if first is not None:
                out.append(first)
        if phase == "started":
            begun = self._task(
                "task-started", {"type": "task-started", "uuid": uuid, "hostname": host, "timestamp": at}
            )
            if begun is not None:
                out.append(begun)
        return out

    # -- events ---------------------------------------------------------------------------------------

    def translate(self, event: dict[str, Any]) -> list[Heartbeat | JobEvent | RunnerStopped]:
        """The jobpulse events for one Celery event (none for what jobpulse does not show).

        Raises:
            msgspec.ValidationError / KeyError / TypeError / ValueError: the event lacks or mistypes a field;
            the shell counts it as rejected.
        """
        kind = event["type"]
        _check_numbers(event)
        if kind.startswith("worker-"):
            return self._worker(kind, event)
        if kind.startswith("task-"):
            found = self._task(kind, event)
            return [found] if found is not None else []
        self.unknown += 1
        return []

    def _seq(self, src: str) -> int:
        seq = self.seqs.get(src, 0) + 1
        self.seqs[src] = seq
        return seq

    def _worker(self, kind: str, event: dict[str, Any]) -> list[Heartbeat | JobEvent | RunnerStopped]:
        host = str(event["hostname"])
        ts = float(event["timestamp"])
        pid = int(event.get("pid") or 0)
        worker = self.workers.get(host)
        if worker is None or worker.pid != pid or kind == "worker-online":
            # A new process under this name: a new boot (a restart), its old running set gone.
            worker = _Worker(boot=ts, pid=pid, queues=worker.queues if worker else (),
                             concurrency=worker.concurrency if worker else 1)  # fmt: skip
            self.workers[host] = worker
            self.workers.move_to_end(host)
            while len(self.workers) > self.max_workers:
                self.workers.popitem(last=False)
        if kind == "worker-offline":
            worker.running.clear()
            return [RunnerStopped(v=1, src=host, seq=self._seq(host), ts=ts, reason="worker-offline")]
        if kind not in ("worker-online", "worker-heartbeat"):
            self.unknown += 1
            return []
        processed = int(event.get("processed") or 0)
        if worker.processed is not None and processed > worker.processed and worker.finished == 0:
            # It finished tasks and told us nothing of them: task events are off (Celery's default without -E).
            if not worker.events_off:
                worker.events_off = True
                self.newly_off.append(host)
        elif worker.finished:
            worker.events_off = False
        worker.processed, worker.finished = processed, 0
        active = [ActiveJob(job=j, channel=q, fn=f, started=t) for j, (q, f, t) in worker.running.items()]
        node = host.partition("@")[2] or host
        version = f"{event.get('sw_ident') or 'celery'}/{event.get('sw_ver') or '?'}"
        beat = Heartbeat(
            v=1, src=host, seq=self._seq(host), ts=ts, boot=worker.boot,
            interval=max(0.1, min(3600.0, float(event.get("freq") or 2.0))),
            host=node[:200], region="", pid=pid, version=version[:100], state="running",
            # Its pool's size comes with inspect; until then what it runs at once is a floor (never "5 of 1").
            channels=list(worker.queues),
            concurrency=max(worker.concurrency, int(event.get("active") or 0), len(worker.running), 1),
            active=active[-MAX_ACTIVE:], processed=processed, failed=worker.failed,
        )  # fmt: skip
        return [beat]

    def _task(self, kind: str, event: dict[str, Any]) -> JobEvent | None:
        uuid = str(event["uuid"])
        ts = float(event["timestamp"])
        host = str(event.get("hostname") or "")
        task = self.tasks.get(uuid)
        fields: dict[str, Any] = {}
        if kind in ("task-sent", "task-received"):
            name = str(event.get("name") or (task.name if task else "?"))
            named = str(event.get("queue") or event.get("routing_key") or "")
            if named:
                queue = _channel(named)
            elif task is not None:
                queue = task.queue
            else:
                worker = self.workers.get(host)
                only = worker.queues[0] if worker is not None and len(worker.queues) == 1 else self.default_queue
                queue = _channel(only)
            retries = int(event.get("retries") or 0)
            known = task is not None  # its task-sent came first: the payload is already held
            if task is None:
                task = self.tasks[uuid] = _Task(name=name, queue=queue, attempt=retries + 1)
                while len(self.tasks) > self.max_tasks:
                    self.tasks.popitem(last=False)
            else:
                task.name, task.queue, task.attempt = name, queue, retries + 1
                self.tasks.move_to_end(uuid)
            clock = event.get("clock")
            if kind == "task-received" and isinstance(clock, int) and len(task.received) < MAX_ATTEMPTS_KEPT:
                task.received.append((host, clock, retries + 1))
            eta = event.get("eta")
            name_event = "scheduled" if isinstance(eta, int | float) and eta > ts else "queued"
            fields["queued_at"] = ts
            if name_event == "scheduled":
                fields["run_at"] = float(eta)  # type: ignore[arg-type]
            if not known or task.attempt > 1:
                fields["payload"] = msgspec.Raw(_encode({"args": event.get("args"), "kwargs": event.get("kwargs")}))
            if event.get("root_id") and event.get("root_id") != uuid:
                fields["cid"] = str(event["root_id"])[:200]
            if kind == "task-received" and host:
                fields["runner"] = host
            return self._job(name_event, uuid, task, host, ts, fields)
        if task is None:
            # Its sent/received event was before jobpulse listened (or forgotten): name and queue unknown.
            self.orphans += 1
            task = self.tasks[uuid] = _Task(name="?", queue=_channel(self.default_queue))
            while len(self.tasks) > self.max_tasks:
                self.tasks.popitem(last=False)
        worker = self.workers.get(host) if host else None
        attempt = self._attempt_of(task, host, event.get("clock"))
        if attempt != task.attempt:
            # A late event of an earlier attempt (Celery's clock says so): fold it as that attempt's, so the
            # reducer's (attempt, phase) order leaves the newer attempt alone.
            return (
                self._job(
                    _LATE.get(kind, "retried"),
                    uuid,
                    task,
                    host,
                    float(event["timestamp"]),
                    {
                        "runner": host or None,
                        "error": str(event.get("exception") or "")[:2000] or None,
                    },
                    attempt=attempt,
                )
                if kind in _LATE
                else None
            )
        if kind == "task-started":
            task.worker = host or None
            if worker is not None:
                worker.running[uuid] = (task.queue, task.name, ts)
                while len(worker.running) > MAX_ACTIVE:
                    worker.running.popitem(last=False)
            return self._job("started", uuid, task, host, ts, {"runner": host or None, "started_at": ts})
        if worker is not None:
            worker.running.pop(uuid, None)
            if kind in ("task-succeeded", "task-failed", "task-retried"):
                worker.finished += 1
        if kind == "task-succeeded":
            runtime = event.get("runtime")
            if isinstance(runtime, int | float) and runtime >= 0:
                fields["duration"] = float(runtime)
            return self._job("completed", uuid, task, host, ts, {"runner": host or None, **fields})
        if kind in ("task-failed", "task-retried"):
            if kind == "task-failed" and worker is not None:
                worker.failed += 1
            fields = {"runner": host or None, "error": str(event.get("exception") or "")[:2000] or None,
                      "traceback": str(event.get("traceback") or "") or None}  # fmt: skip
            return self._job("failed" if kind == "task-failed" else "retried", uuid, task, host, ts, fields)
        if kind == "task-revoked":
            expired = bool(event.get("expired"))
            reason = "expired" if expired else ("terminated" if event.get("terminated") else "revoked")
            return self._job("expired" if expired else "canceled", uuid, task, host, ts, {"reason": reason})
        if kind == "task-rejected":
            if event.get("requeue"):
                return self._job("queued", uuid, task, host, ts, {"reason": "rejected, requeued"})
            return self._job("canceled", uuid, task, host, ts, {"reason": "rejected"})
        if kind == "task-cancelled":
            return self._job("canceled", uuid, task, host, ts, {"reason": "cancelled"})
        self.unknown += 1
        return None

    @staticmethod
    def _attempt_of(task: _Task, host: str, clock: Any) -> int:
        """The attempt an event from `host` with Lamport `clock` belongs to: the last one `host` received
        before it (the newest attempt when `host` received none, or no clock says)."""
        if not isinstance(clock, int):
            return task.attempt
        attempt = 0
        latest = -1
        for worker, received_at, number in task.received:
            if worker == host and latest < received_at < clock:
                attempt, latest = number, received_at
        return attempt or task.attempt

    def _job(
        self, name: str, uuid: str, task: _Task, host: str, ts: float, fields: dict[str, Any], attempt: int = 0
    ) -> JobEvent:
        src = host or "celery-producer"
        seq = self._seq(src)
        return JobEvent(
            v=1, id=f"{src}:{seq}:{uuid}"[:200], src=src[:200], seq=seq, ts=ts, event=name,  # type: ignore[arg-type]
            job=uuid[:200], channel=task.queue, fn=task.name[:300] or "?", attempt=attempt or task.attempt, **fields,
        )  # fmt: skip


_CHANNEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def _channel(queue: str) -> str:
    """A Celery queue name as a jobpulse channel name (1-100 of A-Z a-z 0-9 _ . : -)."""
    if 0 < len(queue) <= 100 and _CHANNEL_CHARS.issuperset(queue):
        return queue
    cleaned = "".join(c if c in _CHANNEL_CHARS else "_" for c in queue)[:100]
    return cleaned or DEFAULT_QUEUE
