"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.redis_server import RedisServer


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A private redis-server for a real Celery worker: Celery's event channels are named by database number, not
    by prefix, so a worker cannot share a Redis with another module's."""
    server = RedisServer().start()
    yield server.url
    server.stop()
