"""The job's own code behind the failing tasks (tests/celery_cluster/app.py): real failures with real
tracebacks, raised in this module or deep in the standard library below it, for failure grouping."""

from __future__ import annotations

import urllib.request

CUSTOMERS = {"cus_known": {"plan": "pro"}}


def plan_of(customer: str) -> str:
    return str(CUSTOMERS[customer]["plan"])  # KeyError: 'cus_...' for an unknown customer


def amount_of(text: str) -> int:
    return int(text)  # ValueError: invalid literal for int() with base 10: '...'


def fetch_rates(port: int) -> bytes:
    # Nothing listens there: URLError raised inside urllib, below this line.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/rates", timeout=2) as response:
        return bytes(response.read())
