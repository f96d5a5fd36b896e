"""Capture real Celery tracebacks into tests/fixtures/tracebacks-celery.json (the fingerprint's fixture).

`python -m tests.celery_cluster.capture` starts a private redis-server and a real worker, sends tasks that
fail for a few distinct causes, each several times with varying ids and values, and writes each failure's
error (as Celery's task-failed event carries it: the exception's repr) and traceback, with the cause a person
would name (the ground truth tests/unit/test_fingerprint.py groups against). Re-run it when the tasks change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.redis_server import RedisServer
from tests.celery_cluster.app import Tasks
from tests.celery_cluster.worker import Worker

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "tracebacks-celery.json"


def main() -> None:
    server = RedisServer().start()
    tasks = Tasks(server.url)
    worker = Worker(server.url, "capture@test")
    sent: list[tuple[str, Any]] = []
    try:
        for i in range(4):
            sent.append(("unknown customer", tasks.charge.delay(f"cus_{i:04d}x{i * 7919}")))
            sent.append(("bad amount", tasks.import_row.delay(["12,50", "abc", "7 EUR", "1e3"][i])))
            sent.append(("rates service down", tasks.sync_rates.delay(1 + i)))
            sent.append(("test failure", tasks.fail.delay(f"boom {i}")))
        out = []
        for cause, result in sent:
            try:
                result.get(timeout=60, propagate=False)
            finally:
                out.append({"cause": cause, "task": result.name, "error": repr(result.result),
                            "traceback": result.traceback})  # fmt: skip
        OUT.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {len(out)} failures to {OUT}")
    finally:
        tasks.close()
        worker.stop()
        worker.log.close()
        server.stop()


if __name__ == "__main__":
    main()
