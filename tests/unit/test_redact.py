"""No password leaves jobpulse in a log line, a traceback, the health card or the CLI's own lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from server import logs
from server.redact import redact
from server.streams.core.events import SourceStatus
from server.streams.core.reducer import fold, initial_state


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:s3cret@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("rediss://default:p%40ss@redis.internal:6380/2", "rediss://default:***@redis.internal:6380/2"),
        ("source native at redis://u:pw@h/0, prefix 'x'", "source native at redis://u:***@h/0, prefix 'x'"),
        ("postgresql://jobs:hunter2@db:5432/app?sslmode=require", "postgresql://jobs:***@db:5432/app?sslmode=require"),
        ("amqp://guest:guest@localhost// and redis://:x@y", "amqp://guest:***@localhost// and redis://:***@y"),
        ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("postgresql://db/app?user=a&sslpassword=k3y", "postgresql://db/app?user=a&sslpassword=***"),
    ],
)
def test_passwords_in_urls_are_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    "text", ["redis://127.0.0.1:6379/0", "redis://user@host/0", "a=b", "no url here", "http://h:8000/admin/jobs"]
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def jobpulse_logging() -> Iterator[logging.Formatter]:
    """logs.setup() as a jobpulse process runs it; this test process's logging as it was afterwards."""
    root = logging.getLogger()
    factory, level, handlers = logging.getLogRecordFactory(), root.level, list(root.handlers)
    logs.setup("info", "text")
    ours = next(h for h in root.handlers if getattr(h, "_jobpulse", False))
    try:
        assert ours.formatter is not None
        yield ours.formatter
    finally:
        root.removeHandler(ours)
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.setLogRecordFactory(factory)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_records_and_tracebacks_are_redacted(jobpulse_logging: logging.Formatter, fmt: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(jobpulse_logging if fmt == "text" else logs.JsonFormatter())
    log = logging.getLogger("jobpulse.test-redact")
    log.addHandler(handler)
    try:
        log.warning("source at %s", "redis://:s3cret@db:6379/0")
        try:
            raise ConnectionError("cannot reach postgresql://jobs:hunter2@db/app")
        except ConnectionError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "s3cret" not in out and "hunter2" not in out, out
    assert "redis://:***@db:6379/0" in out and "postgresql://jobs:***@db/app" in out, out


def test_the_health_card_never_holds_a_password() -> None:
    state = initial_state()
    fold(state, SourceStatus(connected=False, at=1.0, error="Error connecting to redis://:s3cret@db:6379"), 1.0)
    assert state.health.error == "Error connecting to redis://:***@db:6379"
