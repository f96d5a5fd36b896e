"""Dev mode (no sign-in, everyone admin) is for a browser on this machine and a job system on this machine.

A page on a rebinding domain (evil.example resolving to 127.0.0.1) names itself in Host and Origin: the gate
serves dev mode only to loopback names. And a REDIS_URL (or Postgres) on another host is a real job system,
so dev mode refuses to start against it unless JOBPULSE_DEV_REMOTE says it is meant.
"""

from __future__ import annotations

import pytest

from server.security import loopback_request
from server.settings import Settings, loopback


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]", "app.localhost", "LOCALHOST"])
def test_loopback_names(host: str) -> None:
    assert loopback(host)


@pytest.mark.parametrize("host", ["evil.example", "10.0.0.5", "0.0.0.0", "::", "localhost.evil.example", "", "1.2.3"])
def test_other_names(host: str) -> None:
    assert not loopback(host)


def scope(host: str | None, origin: str | None = None) -> dict[str, object]:
    headers = [(b"host", host.encode())] if host is not None else []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "http", "headers": headers}


@pytest.mark.parametrize(
    ("host", "origin", "served"),
    [
        ("127.0.0.1:8000", None, True), ("localhost:8000", "http://localhost:8000", True),
        ("[::1]:8000", "http://[::1]:8000", True), ("evil.example:8000", None, False),
        ("evil.example:8000", "http://evil.example:8000", False), ("127.0.0.1:8000", "http://evil.example", False),
        (None, None, False), ("127.0.0.1:8000", "null", False),
    ],
)  # fmt: skip
def test_dev_mode_is_served_to_loopback_names_only(host: str | None, origin: str | None, served: bool) -> None:
    assert loopback_request(scope(host, origin)) is served


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_URL": "redis://cache.internal:6379/0"},
        {"REDIS_URL": "redis://127.0.0.1:6379/0", "JOBPULSE_STORE_URL": "redis://10.1.2.3:6379/1"},
        {"JOBPULSE_SOURCE": "mojo", "JOBPULSE_MOJO_DATABASE_URL": "postgresql://jobs@db.internal/app"},
    ],
)
def test_dev_mode_refuses_a_job_system_on_another_host(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="JOBPULSE_DEV_REMOTE"):
        Settings.from_env({"JOBPULSE_AUTH": "dev", **env})
    assert Settings.from_env({"JOBPULSE_AUTH": "dev", "JOBPULSE_DEV_REMOTE": "1", **env}).dev_remote
    assert Settings.from_env({"JOBPULSE_AUTH": "users", **env}).auth == "users"


def test_dev_mode_on_this_machine_starts() -> None:
    local = {"REDIS_URL": "redis://localhost:6379/0", "JOBPULSE_STORE_URL": "redis://[::1]:6380/0"}
    assert Settings.from_env({"JOBPULSE_AUTH": "dev", **local}).auth == "dev"
