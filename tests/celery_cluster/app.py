"""Tasks that succeed, fail, retry and run long, on a Redis broker given by CELERY_BROKER_URL.

Run a worker with events on: `celery -A tests.celery_cluster.app worker -E -Q celery,emails -n w1@test`.
"""

from __future__ import annotations

import os
import time

from celery import Celery

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")  # tests set it before the worker starts
app = Celery("jobpulse_tests", broker=BROKER, backend=BROKER)
app.conf.update(
    task_send_sent_event=True,  # task-sent carries the queue: the job's channel from the start
    # A worker with events off (the default in Celery): jobpulse must turn them on itself.
    worker_send_task_events=not os.environ.get("CELERY_EVENTS_OFF"),
    task_track_started=True,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    task_routes={"tests.celery_cluster.app.send_mail": {"queue": "emails"}},
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def send_mail(to: str) -> str:
    return f"sent to {to}"


@app.task(bind=True, max_retries=2, default_retry_delay=0.2)
def flaky(self, key: str) -> str:
    if self.request.retries < 2:
        raise self.retry(exc=RuntimeError(f"{key}: not yet"))
    return key
