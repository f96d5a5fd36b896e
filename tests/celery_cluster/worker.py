"""A real Celery worker in a child process, on a given broker, for the tests that watch one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile


class Worker:
    def __init__(self, broker: str, name: str, queues: str = "celery,emails", events: bool = True) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "CELERY_BROKER_URL": broker}
        if not events:
            env["CELERY_EVENTS_OFF"] = "1"  # tests/celery_cluster/app.py: worker_send_task_events stays off
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_cluster.app", "worker", *(["-E"] if events else []),
             "-c", "2", "-Q", queues, "-n", name, "--without-mingle", "--without-gossip", "-l", "warning"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
