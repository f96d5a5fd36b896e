"""Tasks that succeed, fail, retry and run long, on a Redis broker.

A worker: `CELERY_BROKER_URL=redis://... celery -A tests.celery_cluster.app worker -E -Q celery,emails`.
Tests send tasks through `Tasks(broker)`: an app of their own per broker, because a Celery app keeps its
broker and result-backend connections once made, and each test module has its own private Redis.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from tests.celery_cluster import billing

NAME = __name__


def make_app(broker: str) -> Celery:
    app = Celery("jobpulse_tests", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_send_sent_event=True,  # task-sent carries the queue: the job's channel from the start
        # A worker with events off (the default in Celery): jobpulse must turn them on itself.
        worker_send_task_events=not os.environ.get("CELERY_EVENTS_OFF"),
        task_track_started=True,
        result_extended=True,  # the backend keeps a task's name and arguments: what job.retry re-sends
        result_expires=600,
        broker_connection_retry_on_startup=True,
        task_routes={f"{NAME}.send_mail": {"queue": "emails"}},
    )

    @app.task(shared=False, name=f"{NAME}.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(shared=False, name=f"{NAME}.fail")
    def fail(message: str) -> None:
        raise ValueError(message)

    @app.task(shared=False, name=f"{NAME}.sleep")
    def sleep(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @app.task(shared=False, name=f"{NAME}.send_mail")
    def send_mail(to: str) -> str:
        return f"sent to {to}"

    @app.task(shared=False, name=f"{NAME}.flaky", bind=True, max_retries=2, default_retry_delay=0.2)
    def flaky(self: Any, key: str) -> str:
        if self.request.retries < 2:
            raise self.retry(exc=RuntimeError(f"{key}: not yet"))
        return key

    @app.task(shared=False, name=f"{NAME}.charge")
    def charge(customer: str) -> str:
        return billing.plan_of(customer)

    @app.task(shared=False, name=f"{NAME}.import_row")
    def import_row(text: str) -> int:
        return billing.amount_of(text)

    @app.task(shared=False, name=f"{NAME}.sync_rates")
    def sync_rates(port: int) -> int:
        return len(billing.fetch_rates(port))

    return app


class Tasks:
    """The tasks, as a test sends them, on an app of its own for `broker` (close it afterwards)."""

    def __init__(self, broker: str) -> None:
        self.app = make_app(broker)
        for name in ("add", "fail", "sleep", "send_mail", "flaky", "charge", "import_row", "sync_rates"):
            setattr(self, name, self.app.tasks[f"{NAME}.{name}"])

    def __getattr__(self, name: str) -> Any:  # the task attributes set above, for the type checker
        raise AttributeError(name)

    def close(self) -> None:
        self.app.close()


# The worker's app (`celery -A tests.celery_cluster.app worker`).
app = make_app(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
