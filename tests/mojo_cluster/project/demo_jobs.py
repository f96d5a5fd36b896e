"""Job functions the test deployment runs: django-mojo calls each with its Job row (`job.payload`, `job.metadata`)."""

from __future__ import annotations

import time
from typing import Any


def ok_job(job: Any) -> None:
    """Succeeds; what it writes to the metadata is saved with the completed row."""
    job.metadata["result"] = {"echo": job.payload}


def fail_job(job: Any) -> None:
    """Fails every attempt with the payload's message."""
    raise RuntimeError(job.payload.get("message", "boom from fail_job"))


def sleep_job(job: Any) -> None:
    """Runs for payload["seconds"] (default 5): a job in flight while a test looks; only on its first attempt when
    payload["first_attempt_only"], so a requeued copy finishes at once."""
    if job.attempt == 1 or not job.payload.get("first_attempt_only"):
        time.sleep(float(job.payload.get("seconds", 5)))
