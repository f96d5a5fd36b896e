"""`python -m tests.mojo_cluster demo`: a real django-mojo deployment at work, and jobpulse as its live console.

Shell module. It starts what the tests start (tests/mojo_cluster: a private Redis, a Postgres database of its own,
django-mojo 1.39.10's real engines and scheduler), keeps publishing a mix of jobs through django-mojo's own
`publish` (quick ones, slow ones, delayed ones, some that fail, some that are retried), and runs `jobpulse serve`
with JOBPULSE_SOURCE=mojo pointed at it. Open the printed address; Ctrl-C stops everything. Meant for trying the
mojo source by hand; nothing in it is used by jobpulse itself.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from server.redis_server import free_port
from tests.mojo_cluster.cluster import MojoCluster

PREFIX = "demo:jobs"
CHANNELS = ("default", "emails", "reports", "bulk")
ENGINES = {"engine-a": ("default", "emails"), "engine-b": ("default", "reports"), "engine-c": ("emails", "bulk")}


@contextmanager
def console(cluster: MojoCluster, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        **cluster.jobpulse_env(JOBPULSE_MOJO_CHANNELS=",".join(CHANNELS)),
        "REDIS_URL": cluster.redis_url,
        "JOBPULSE_AUTH": os.environ.get("JOBPULSE_AUTH", "dev"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def publish_some(cluster: MojoCluster, rnd: random.Random) -> None:
    """One job of the mix, as an application would publish it."""
    roll = rnd.random()
    channel = rnd.choice(CHANNELS[:3])
    if roll < 0.55:
        cluster.publish("demo_jobs.ok_job", {"n": rnd.randrange(1000)}, channel=channel)
    elif roll < 0.75:
        cluster.publish("demo_jobs.sleep_job", {"seconds": round(rnd.uniform(0.5, 6), 1)}, channel=channel)
    elif roll < 0.83:
        cluster.publish("demo_jobs.ok_job", {"n": 1}, channel=channel, delay=rnd.randrange(5, 60))
    elif roll < 0.90:
        cluster.publish("demo_jobs.fail_job", {"message": rnd.choice(["SMTP timeout", "report query failed"])},
                        channel=channel, max_retries=2, backoff_base=2.0)  # fmt: skip
    elif roll < 0.95:
        cluster.publish("demo_jobs.fail_job", {"message": "card declined"}, channel=channel)
    else:
        cluster.publish("demo_jobs.ok_job", {"n": 2}, channel="bulk")


def main(rate: float = 2.0, port: int | None = None) -> int:
    port = port or free_port()
    rnd = random.Random(7)
    with MojoCluster(prefix=PREFIX, channels=CHANNELS, heartbeat_s=2) as cluster:
        for runner, channels in ENGINES.items():
            cluster.engine(runner, channels=channels)
        cluster.scheduler()
        with console(cluster, port):
            print(f"\ndjango-mojo runs {len(ENGINES)} engines on {cluster.redis_url} and {cluster.pg_url}", flush=True)
            print(f"jobpulse (JOBPULSE_SOURCE=mojo): http://127.0.0.1:{port}/admin/jobs  (Ctrl-C stops all)\n",
                  flush=True)  # fmt: skip
            try:
                while True:
                    publish_some(cluster, rnd)
                    time.sleep(rnd.expovariate(rate))
            except KeyboardInterrupt:
                print("stopping", flush=True)
    return 0
