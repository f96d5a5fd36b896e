"""django-mojo's own API, driven by the test harness: one JSON request per line in, one JSON reply per line out.

`serve` sets Django up once and answers requests on stdin until it closes: publish a job through `jobs.publish`, read
django-mojo's own stats (`JobManager.get_stats`, `get_queue_state`, `get_runners`), job rows and their events through
its models, and run its own actions (ping, status broadcast, shutdown, cancel, retry, clear stuck, clear a channel).
Nothing here re-implements django-mojo: each op calls the function its REST endpoints call.

`createdb`, `dropdb`, `renamedb` and `listdb` manage the per-run Postgres databases with psycopg (which django-mojo
brings); they need no Django.

Replies go to a private copy of the original stdout; the process's own stdout is pointed at stderr, so whatever
django-mojo prints cannot corrupt the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

Handler = Callable[..., Any]


def _models() -> Any:
    return importlib.import_module("mojo.apps.jobs.models")


def _manager() -> Any:
    return importlib.import_module("mojo.apps.jobs.manager").get_manager()


def _job_row(job: Any) -> dict[str, Any]:
    fields = (
        "id", "channel", "func", "payload", "status", "run_at", "expires_at", "attempt", "max_retries", "broadcast",
        "cancel_requested", "runner_id", "last_error", "metadata", "created", "modified", "started_at", "finished_at",
    )  # fmt: skip
    return {name: getattr(job, name) for name in fields}


def op_publish(func: str, payload: dict[str, Any] | None = None, **options: Any) -> Any:
    """`mojo.apps.jobs.publish`: the job row, its created event, then RPUSH (or ZADD when delayed); returns the id."""
    return importlib.import_module("mojo.apps.jobs").publish(func, payload or {}, **options)


def op_publish_held(hold_s: float, func: str, payload: dict[str, Any] | None = None, **options: Any) -> Any:
    """`publish` inside a caller's transaction held open `hold_s` s: its row and created event commit late (with
    ids taken early), and django-mojo defers the RPUSH to the commit (transaction.on_commit)."""
    with importlib.import_module("django.db").transaction.atomic():
        job_id = op_publish(func, payload, **options)
        time.sleep(hold_s)
    return job_id


def op_sql(statement: str, params: list[Any] | None = None) -> Any:
    """Raw SQL on django-mojo's database (autocommit), not through its models; the rows, if any."""
    with importlib.import_module("django.db").connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else cursor.rowcount


def op_stats() -> Any:
    """`JobManager.get_stats()`: what GET /api/jobs/stats returns in `data`."""
    return _manager().get_stats()


def op_queue_state(channel: str) -> Any:
    """`JobManager.get_queue_state(channel)`: LLEN queue, ZCARD processing, ZCARD sched + sched_broadcast."""
    return _manager().get_queue_state(channel)


def op_channel_health(channel: str) -> Any:
    """`JobManager.get_channel_health(channel)`: what GET /api/jobs/health/<channel> returns."""
    return _manager().get_channel_health(channel)


def op_runners(channel: str | None = None) -> Any:
    """`JobManager.get_runners(channel)`: heartbeat documents with `alive`."""
    return _manager().get_runners(channel)


def op_jobs(ids: list[str]) -> Any:
    """The rows of these jobs, by id (missing ids are left out)."""
    return {job.id: _job_row(job) for job in _models().Job.objects.filter(id__in=ids)}


def op_job_counts() -> Any:
    """Jobs per (channel, status), straight from jobs_job."""
    rows = _models().Job.objects.values_list("channel", "status")
    counts: dict[str, dict[str, int]] = {}
    for channel, status in rows:
        counts.setdefault(channel, {}).setdefault(status, 0)
        counts[channel][status] += 1
    return counts


def op_events(job_id: str | None = None, after_id: int = 0) -> Any:
    """Rows of jobs_jobevent in id order, for one job or all, after an id."""
    query = _models().JobEvent.objects.filter(id__gt=after_id).order_by("id")
    if job_id is not None:
        query = query.filter(job_id=job_id)
    fields = ("id", "job_id", "channel", "event", "at", "runner_id", "attempt", "details")
    return [dict(zip(fields, row, strict=True)) for row in query.values_list(*fields)]


def op_logs(job_id: str) -> Any:
    """Rows of jobs_joblog for one job, oldest first."""
    query = _models().JobLog.objects.filter(job_id=job_id).order_by("id")
    return list(query.values("id", "kind", "message", "meta", "created"))


def op_ping(runner_id: str, timeout: float = 2.0) -> Any:
    """`JobManager.ping`: `{"command":"ping","reply_channel":...}` on the runner's ctl channel; True on "pong"."""
    return _manager().ping(runner_id, timeout)


def op_broadcast_command(command: str, data: dict[str, Any] | None = None, timeout: float = 2.0) -> Any:
    """`JobManager.broadcast_command`: POST /api/jobs/runners/broadcast; the replies collected."""
    return _manager().broadcast_command(command, data=data, timeout=timeout)


def op_shutdown(runner_id: str) -> Any:
    """`JobManager.shutdown`: POST /api/jobs/runners/shutdown (fire and forget)."""
    return _manager().shutdown(runner_id)


def op_cancel(job_id: str) -> Any:
    """`JobActionsService.cancel_job`: POST /api/jobs/job/<id> {"cancel_request": true}."""
    job = _models().Job.objects.get(id=job_id)
    return importlib.import_module("mojo.apps.jobs.services").JobActionsService.cancel_job(job)


def op_cancel_flag(job_id: str) -> Any:
    """`mojo.apps.jobs.cancel`: POST /api/jobs/cancel (sets cancel_requested only; the status is unchanged)."""
    return importlib.import_module("mojo.apps.jobs").cancel(job_id)


def op_retry(job_id: str, delay: int | None = None) -> Any:
    """`JobActionsService.retry_job`: POST /api/jobs/retry; publishes a replacement job with a new id."""
    job = _models().Job.objects.get(id=job_id)
    return importlib.import_module("mojo.apps.jobs.services").JobActionsService.retry_job(job, delay=delay)


def op_clear_stuck(channel: str, idle_threshold_ms: int = 60_000) -> Any:
    """`JobManager.clear_stuck_jobs`: POST /api/jobs/control/clear-stuck."""
    return _manager().clear_stuck_jobs(channel, idle_threshold_ms=idle_threshold_ms)


def op_clear_channel(channel: str) -> Any:
    """`JobManager.clear_channel(cancel_db_pending=True)`: POST /api/jobs/control/clear-queue {"confirm": "yes"}."""
    return _manager().clear_channel(channel, cancel_db_pending=True)


def op_metrics(slugs: list[str], granularity: str = "hours") -> Any:
    """`mojo.apps.metrics.fetch` for these slugs (account "global"): GET /api/metrics/fetch."""
    fetch = importlib.import_module("mojo.apps.metrics").fetch
    return {slug: fetch(slug, granularity=granularity) for slug in slugs}


def op_record_metric(slug: str, hours_ago: float, count: int = 1, clock: str = "engine") -> Any:
    """`mojo.apps.metrics.record` as django-mojo's own writers call it, `hours_ago` in the past: publish passes an
    aware UTC time (`clock="utc"`), the engine passes none, so its buckets are in METRICS_TIMEZONE ("engine").
    History for the hours chart that a test cannot wait hours for."""
    from datetime import UTC, datetime, timedelta

    metrics = importlib.import_module("mojo.apps.metrics")
    utils = importlib.import_module("mojo.apps.metrics.utils")
    now = datetime.now(UTC) if clock == "utc" else utils.normalize_datetime(None)
    return metrics.record(slug, when=now - timedelta(hours=hours_ago), count=count)


def op_setting(name: str) -> Any:
    """A Django setting as django-mojo's settings helper sees it (None when unset)."""
    return getattr(importlib.import_module("mojo.helpers.settings").settings, name)


OPS: dict[str, Handler] = {
    name.removeprefix("op_"): value for name, value in dict(globals()).items() if name.startswith("op_")
}


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


def serve() -> int:
    """Answer requests ({"op": name, "args": {...}}) until stdin closes."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    importlib.import_module("django").setup()
    replies.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            result = OPS[request["op"]](**request.get("args", {}))
            reply = {"ok": True, "result": result}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        finally:
            importlib.import_module("django.db").close_old_connections()
        replies.write(json.dumps(reply, default=_json_default) + "\n")
    return 0


def _admin(url: str, statement: str) -> None:
    psycopg = importlib.import_module("psycopg")
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(statement)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve()
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "createdb" and len(args) in (2, 3):
        template = _quote(args[2]) if len(args) == 3 else "template0"
        _admin(args[0], f"CREATE DATABASE {_quote(args[1])} ENCODING 'UTF8' TEMPLATE {template}")
    elif command == "dropdb" and len(args) == 2:
        _admin(args[0], f"DROP DATABASE IF EXISTS {_quote(args[1])} WITH (FORCE)")
    elif command == "renamedb" and len(args) == 3:
        _admin(args[0], f"ALTER DATABASE {_quote(args[1])} RENAME TO {_quote(args[2])}")
    elif command == "listdb" and len(args) == 2:
        psycopg = importlib.import_module("psycopg")
        with psycopg.connect(args[0], autocommit=True, connect_timeout=5) as connection:
            rows = connection.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (args[1],)).fetchall()
        sys.stdout.write("".join(f"{name}\n" for (name,) in rows))
    else:
        sys.stderr.write(
            "usage: agent.py serve | createdb URL NAME [TEMPLATE] | dropdb URL NAME | renamedb URL OLD NEW"
            " | listdb URL LIKE\n"
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
