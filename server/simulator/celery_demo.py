"""A small Celery system for `jobpulse demo --sources native,celery`: its tasks, and a producer that sends them.

Shell layer, demo only; needs Celery (`pip install 'jobpulse[celery]'`). The
worker is Celery's own (`celery -A server.simulator.celery_demo worker -E`),
so the console watches a real Celery cluster: mail that usually goes out,
reports that take a while, webhooks that fail now and then and are retried.
`python -m server.simulator.celery_demo --broker URL --rate N` sends tasks at
about N a second until stopped.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import time
from typing import Any

from celery import Celery

QUEUES = ("celery", "emails", "reports", "webhooks")


def make_app(broker: str) -> Celery:
    app = Celery("jobpulse_demo", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_send_sent_event=True,  # the queue of a task is known from the start
        worker_send_task_events=True,
        task_track_started=True,
        result_expires=600,
        broker_connection_retry_on_startup=True,
        task_routes={
            "demo.send_mail": {"queue": "emails"},
            "demo.render_report": {"queue": "reports"},
            "demo.deliver_webhook": {"queue": "webhooks"},
        },
    )

    @app.task(shared=False, name="demo.send_mail")
    def send_mail(to: str) -> str:
        time.sleep(random.uniform(0.05, 0.4))
        return f"sent to {to}"

    @app.task(shared=False, name="demo.render_report")
    def render_report(report: int) -> int:
        time.sleep(random.uniform(1.0, 4.0))
        return report

    @app.task(shared=False, name="demo.deliver_webhook", bind=True, max_retries=2, default_retry_delay=1)
    def deliver_webhook(self: Any, url: str) -> str:
        time.sleep(random.uniform(0.05, 0.3))
        if random.random() < 0.08:
            raise self.retry(exc=ConnectionError(f"{url}: connection reset by peer"))
        return url

    @app.task(shared=False, name="demo.cleanup")
    def cleanup(n: int) -> int:
        return n

    return app


# The worker's app (`celery -A server.simulator.celery_demo worker`).
app = make_app(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"))


def produce(broker: str, rate: float, seed: int | None) -> None:
    """Send a mix of tasks at about `rate` a second until SIGTERM or Ctrl-C."""
    rng = random.Random(seed)
    sender = make_app(broker)
    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    n = 0
    try:
        while running:
            n += 1
            pick = rng.random()
            if pick < 0.5:
                sender.send_task("demo.send_mail", (f"user{rng.randint(1, 9999)}@example.com",))
            elif pick < 0.75:
                sender.send_task("demo.deliver_webhook", (f"https://hooks.example.com/{rng.randint(1, 99)}",))
            elif pick < 0.85:
                sender.send_task("demo.render_report", (n,))
            else:
                sender.send_task("demo.cleanup", (n,))
            time.sleep(rng.expovariate(rate) if rate > 0 else 1.0)
    except KeyboardInterrupt:
        pass
    finally:
        sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    produce(args.broker, args.rate, args.seed)


if __name__ == "__main__":
    main()
