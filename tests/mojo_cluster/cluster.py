"""MojoCluster: a running django-mojo deployment for a test, and everything it needs stopped again afterwards.

Shell module (it starts processes and opens sockets). `start()` starts a private redis-server (django-mojo's broadcast
channel ignores its key prefix, so tests never share a Redis), creates a Postgres database named for this run (a
copy of one migrated once per release with django-mojo's migrations, or migrated itself with `migrate=True`), and
starts the agent (`project/agent.py serve`): django-mojo's own API in a child process, which `call()` drives.
`engine()` and `scheduler()` start django-mojo's real job engine and scheduler (`jobs_cli.py engine|scheduler
foreground`). `stop()` stops them (SIGTERM: the engine drains), drops the database and
stops Redis. Every child logs to a file in the run's directory; `logs()` gathers them for a failure message.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import redis

from server.redis_server import RedisServer
from tests.mojo_cluster.environment import (
    MOJO_VERSION,
    PROJECT_DIR,
    database_url,
    mojo_python,
    pg_admin_url,
)

DB_PREFIX = "jpmojo_"  # test databases are named jpmojo_<pid>_<hex>; a dead pid's are dropped at the next start
# A database migrated once per django-mojo release and kept on the server: each run's database is a copy of it
# (CREATE DATABASE ... TEMPLATE, well under a second) instead of a 10 to 25 s migrate. Bump the suffix when the
# project's INSTALLED_APPS change.
TEMPLATE_DB = f"{DB_PREFIX}template_{MOJO_VERSION.replace('.', '_')}_v1"
TERMINAL = frozenset({"completed", "failed", "canceled", "expired"})


class MojoError(RuntimeError):
    """A django-mojo process failed, or an agent call raised in django-mojo (the message carries its traceback)."""


class MojoProcess:
    """One django-mojo child process (engine, scheduler or agent) with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, *, stdin: bool = False) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        pipe = subprocess.PIPE if stdin else None
        self.process = subprocess.Popen(
            args, cwd=PROJECT_DIR, env=env, stdin=pipe, stdout=pipe if stdin else self._log, stderr=self._log,
            bufsize=0, start_new_session=True,  # a Ctrl-C meant for pytest must not stop it before the teardown does
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal it (SIGTERM: an engine drains its running jobs first) and wait; SIGKILL after `timeout` s."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self._log):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, as the reaper and stale-runner tests need."""
        self.stop(signal.SIGKILL, timeout=10)


class MojoAgent(MojoProcess):
    """`project/agent.py serve`: django-mojo's own API in a child process, one JSON request and reply per line."""

    def __init__(self, name: str, python: str, env: dict[str, str], log_dir: Path, timeout: float = 60.0) -> None:
        super().__init__(name, [python, "agent.py", "serve"], env, log_dir, stdin=True)
        self._pending = b""  # what was read past the last complete reply
        ready = self.receive(timeout)
        if ready.get("result") != "ready":
            raise MojoError(f"{name} did not start: {ready}\n{self.output()[-4000:]}")

    def send(self, op: str, **args: Any) -> None:
        """Send one request without waiting: `receive()` its reply later (for an op that blocks, e.g. publish_held)."""
        if not self.alive or self.process.stdin is None:
            raise MojoError(f"{self.name} is not running\n{self.output()[-4000:]}")
        self.process.stdin.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
        self.process.stdin.flush()

    def receive(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next reply line, within `timeout` s."""
        stdout: IO[bytes] | None = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            ready, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(stdout.fileno(), 1 << 16) if ready else b""
            if not chunk:
                state = "exited" if ready or not self.alive else f"gave no reply within {timeout} s"
                raise MojoError(f"{self.name} {state}\n{self.output()[-4000:]}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def result(self, timeout: float = 30.0) -> Any:
        """The result of the request sent last (raises MojoError with django-mojo's traceback if it raised)."""
        reply = self.receive(timeout)
        if not reply.get("ok"):
            raise MojoError(f"django-mojo raised: {reply.get('error')}\n{reply.get('traceback')}")
        return reply.get("result")

    def call(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        """Run one op of project/agent.py (django-mojo's own functions) and return its result."""
        self.send(op, **args)
        try:
            return self.result(timeout)
        except MojoError as exc:
            raise MojoError(f"{op}({args}): {exc}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Close its stdin (it exits when stdin closes), then stop it as any process."""
        if self.alive and self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        return super().stop(sig, timeout)


class MojoCluster:
    """A django-mojo deployment on a private Redis and a Postgres database of its own.

    Args:
        prefix: JOBS_REDIS_PREFIX (django-mojo's default is "mojo:jobs").
        channels: JOBS_CHANNELS, the channels its engines and scheduler consume.
        heartbeat_s: JOBS_RUNNER_HEARTBEAT_SEC (hb TTL 3x, registry TTL 6x).
        settings: any other django-mojo setting, e.g. {"JOBS_VISIBILITY_TIMEOUT_MS": 5000}.
        persist_redis: Redis with an append-only file, so `redis_server.kill()` then `start()` is a crash and a restart.
        migrate: run django-mojo's migrations on this run's database instead of copying the migrated template.
    """

    def __init__(
        self,
        *,
        prefix: str = "mojo:jobs",
        channels: Iterable[str] = ("default", "priority"),
        heartbeat_s: int = 1,
        settings: dict[str, Any] | None = None,
        persist_redis: bool = False,
        migrate: bool = False,
    ) -> None:
        self.prefix = prefix
        self.channels = list(channels)
        self.heartbeat_s = heartbeat_s
        self.settings = dict(settings or {})
        self.migrate = migrate
        self.python = mojo_python()
        self.admin_url = pg_admin_url()
        self.db_name = f"{DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.pg_url = database_url(self.admin_url, self.db_name)
        self.redis_server = RedisServer(persist=persist_redis)
        self.run_dir = Path(tempfile.mkdtemp(prefix="jobpulse-mojo-"))
        self.engines: dict[str, MojoProcess] = {}
        self.schedulers: list[MojoProcess] = []
        self.agents: list[MojoAgent] = []
        self._db_created = False
        self._redis: redis.Redis | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def jobpulse_env(self, **extra: str) -> dict[str, str]:
        """The environment of a jobpulse that reads this deployment (JOBPULSE_SOURCE=mojo, docs/mojo.md section 0),
        with write access for the actions; `extra` adds or overrides."""
        return {
            "JOBPULSE_SOURCE": "mojo",
            "JOBPULSE_MOJO_PREFIX": self.prefix,
            "JOBPULSE_MOJO_DATABASE_URL": self.pg_url,
            "JOBPULSE_MOJO_WRITE_DATABASE_URL": self.pg_url,
            "JOBPULSE_MOJO_HEARTBEAT_S": str(self.heartbeat_s),
            **extra,
        }

    def pg_url_via(self, port: int) -> str:
        """This run's database URL through a proxy listening on 127.0.0.1:`port` (tests/faultproxy.py)."""
        parts = urllib.parse.urlsplit(self.pg_url)
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))

    @property
    def pg_address(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.pg_url)
        return parts.hostname or "127.0.0.1", parts.port or 5432

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    def env(self, pg_url: str | None = None) -> dict[str, str]:
        """The environment of every django-mojo child: what project/mojo_settings.py reads."""
        inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        return {
            **inherited,
            "PYTHONPATH": str(PROJECT_DIR),
            "DJANGO_SETTINGS_MODULE": "mojo_settings",
            "PYTHONUNBUFFERED": "1",
            "MOJO_RUN_DIR": str(self.run_dir),
            "MOJO_PG_URL": pg_url or self.pg_url,
            "MOJO_REDIS_URL": self.redis_url,
            "MOJO_JOBS_PREFIX": self.prefix,
            "MOJO_HB_SEC": str(self.heartbeat_s),
            "MOJO_CHANNELS": ",".join(self.channels),
            "MOJO_EXTRA_SETTINGS": json.dumps(self.settings),
        }

    def start(self, timeout: float = 120.0) -> MojoCluster:
        """Redis, a migrated database and the agent; no engine or scheduler yet (`engine()`, `scheduler()`)."""
        try:
            self.redis_server.start()
            self._drop_orphan_databases()
            self._create_database(timeout)
            self.new_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def engine(
        self, runner_id: str = "e2e-engine", channels: Iterable[str] | None = None, extra_args: Iterable[str] = ()
    ) -> MojoProcess:
        """Start django-mojo's job engine (`engine foreground --runner-id ...`) and wait for its first heartbeat.

        It consumes `channels` (default JOBS_CHANNELS) and, always, the channel named after its runner id.
        """
        command = [self.python, "jobs_cli.py", "engine", "foreground", "--runner-id", runner_id, *extra_args]
        if channels is not None:
            command += ["--channels", ",".join(channels)]
        process = MojoProcess(f"engine-{runner_id}", command, self.env(), self.run_dir)
        self.engines[runner_id] = process
        self.wait_for(lambda: self.client.exists(self.key(f"runner:{runner_id}:hb")) == 1, 60.0,
                      f"engine {runner_id}'s first heartbeat", process)  # fmt: skip
        return process

    def scheduler(self) -> MojoProcess:
        """Start django-mojo's scheduler (`scheduler foreground`) and wait until it holds the leader lock."""
        process = MojoProcess(f"scheduler-{len(self.schedulers)}", [self.python, "jobs_cli.py", "scheduler",
                              "foreground"], self.env(), self.run_dir)  # fmt: skip
        self.schedulers.append(process)
        self.wait_for(lambda: self.client.exists(self.key("lock:scheduler")) == 1, 60.0, "the scheduler lock", process)
        return process

    def stop(self) -> None:
        """Stop every child (engines drain), drop the database, stop Redis and remove the run's directory."""
        for process in [*self.engines.values(), *self.schedulers, *self.agents]:
            process.stop()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._db_created:
            self._admin("dropdb", self.db_name)
            self._db_created = False
        self.redis_server.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> MojoCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- django-mojo's own API ---------------------------------------------------------------------------------------

    @property
    def agent(self) -> MojoAgent:
        """The first agent (`start()` starts it)."""
        if not self.agents:
            raise MojoError("the cluster is not started")
        return self.agents[0]

    def new_agent(self) -> MojoAgent:
        """Another agent: a second django-mojo process, e.g. to publish while the first holds a transaction open."""
        agent = MojoAgent(f"agent-{len(self.agents)}", self.python, self.env(), self.run_dir)
        self.agents.append(agent)
        return agent

    def call(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        """Run one op of project/agent.py (django-mojo's own functions) on the first agent; its result."""
        return self.agent.call(op, timeout, **args)

    def publish(self, func: str, payload: dict[str, Any] | None = None, **options: Any) -> Any:
        """`mojo.apps.jobs.publish(func, payload, **options)`: a job id (a list of ids for a fanned-out broadcast)."""
        return self.call("publish", func=func, payload=payload or {}, **options)

    def stats(self) -> dict[str, Any]:
        """`JobManager.get_stats()`: django-mojo's own view (GET /api/jobs/stats)."""
        result: dict[str, Any] = self.call("stats")
        return result

    def jobs(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The jobs_job rows of these ids."""
        result: dict[str, dict[str, Any]] = self.call("jobs", ids=list(ids))
        return result

    def wait_for_jobs(
        self, ids: Iterable[str], statuses: Iterable[str] = TERMINAL, timeout: float = 60.0
    ) -> dict[str, dict[str, Any]]:
        """Wait until every job's row has one of `statuses`; their rows."""
        wanted, ids = frozenset(statuses), list(ids)
        rows: dict[str, dict[str, Any]] = {}

        def done() -> bool:
            rows.update(self.jobs(ids))
            return all(rows.get(i, {}).get("status") in wanted for i in ids)

        self.wait_for(done, timeout, f"jobs {ids} to reach {sorted(wanted)}")
        return rows

    # -- Redis, as django-mojo lays it out ---------------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """A client (str replies) on the cluster's Redis."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        return self._redis

    def key(self, suffix: str) -> str:
        """A storage key under the prefix: key("runner:e1:hb") -> "<prefix>:runner:e1:hb" (keys.py JobKeys)."""
        return f"{self.prefix}:{suffix}"

    def queue_key(self, channel: str) -> str:
        return self.key(f"{{jobs}}:queue:{channel}")

    # -- waiting and diagnostics -------------------------------------------------------------------------------------

    def wait_for(
        self, condition: Callable[[], bool], timeout: float, what: str, process: MojoProcess | None = None
    ) -> None:
        """Poll `condition` until true; fail with every child's log after `timeout` s, or when `process` exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if process is not None and not process.alive:
                raise MojoError(f"{process.name} exited ({process.process.returncode}) before {what}\n{self.logs()}")
            time.sleep(0.1)
        raise MojoError(f"no {what} within {timeout} s\n{self.logs()}")

    def logs(self, limit: int = 4000) -> str:
        """The end of every child's log, for a failure message."""
        parts = []
        for path in sorted(self.run_dir.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-limit:]}")
        return "\n".join(parts)

    # -- internals --------------------------------------------------------------------------------------------------

    def _create_database(self, timeout: float) -> None:
        """This run's database: a copy of the migrated template (built first when missing), or migrated itself."""
        if not self.migrate:
            if not self._admin("listdb", TEMPLATE_DB).split():
                self._build_template(timeout)
            with contextlib.suppress(MojoError):  # e.g. a template being built by a run that has just died
                self._admin("createdb", self.db_name, TEMPLATE_DB)
                self._db_created = True
                return
        self._admin("createdb", self.db_name)
        self._db_created = True
        self._migrate(self.pg_url, timeout)

    def _build_template(self, timeout: float) -> None:
        """Migrate a database under a run's name (an orphan if this run dies), then rename it to the template."""
        build = f"{DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._admin("createdb", build)
        try:
            self._migrate(database_url(self.admin_url, build), timeout)
            self._admin("renamedb", build, TEMPLATE_DB)
        except MojoError:
            if not self._admin("listdb", TEMPLATE_DB).split():
                raise  # not a lost race with another run building it too
        finally:
            self._admin("dropdb", build)

    def _migrate(self, pg_url: str, timeout: float) -> None:
        self._run(["-m", "django", "migrate", "--no-input", "-v", "0"], "migrate", timeout, pg_url)

    def _run(self, args: list[str], name: str, timeout: float, pg_url: str | None = None) -> None:
        log = self.run_dir / f"{name}.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [self.python, *args], cwd=PROJECT_DIR, env=self.env(pg_url), stdout=out, stderr=subprocess.STDOUT,
                timeout=timeout, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise MojoError(f"{name} exited with {done.returncode}:\n{log.read_text(errors='replace')[-4000:]}")

    def _admin(self, command: str, *args: str) -> str:
        done = subprocess.run(
            [self.python, "agent.py", command, self.admin_url, *args], cwd=PROJECT_DIR, env=self.env(),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise MojoError(f"agent.py {command} {' '.join(args)} failed:\n{done.stderr[-4000:]}")
        return done.stdout

    def _drop_orphan_databases(self) -> None:
        """Drop test databases whose creating process is gone (a run that was killed before its teardown)."""
        for name in self._admin("listdb", f"{DB_PREFIX}%").split():
            match = re.fullmatch(rf"{DB_PREFIX}(\d+)_[0-9a-f]+", name)
            if match and not _pid_alive(int(match.group(1))):
                self._admin("dropdb", name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running_cluster(**options: Any) -> Iterator[MojoCluster]:
    """A started MojoCluster, stopped on the way out (whatever happened)."""
    cluster = MojoCluster(**options).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def by_writer(steps: Sequence[str], *writers: Sequence[str]) -> bool:
    """Whether `steps` (one job's events in id order) are exactly the `writers`' events, each writer's in its order.

    Ids order one process's writes; across processes django-mojo promises no order: its publish and its scheduler
    RPUSH a job before they write its `queued` event, so an engine's `running` (even its outcome) can commit first.
    """
    if Counter(steps) != Counter(step for writer in writers for step in writer):
        return False
    for writer in writers:
        remaining = iter(steps)
        if not all(any(step == wanted for step in remaining) for wanted in writer):
            return False
    return True


def require_mojo() -> None:
    """What a django-mojo test needs, brought up by tests/provision.py (a PostgreSQL, django-mojo's environment),
    or the test fails saying what to do. The suite brings them up before the first test of the `mojo` marker."""
    from tests.provision import mojo_python as provide_mojo, postgres, required

    required(postgres)
    required(provide_mojo)


@contextlib.contextmanager
def deployment(
    runner: str,
    *,
    prefix: str,
    channels: Iterable[str],
    engine_channels: Iterable[str] = ("default", "priority"),
    settings: dict[str, Any] | None = None,
) -> Iterator[MojoCluster]:
    """A test module's django-mojo: Postgres and django-mojo required (`require_mojo`), one engine `runner` consuming
    `engine_channels`, and the scheduler; stopped afterwards."""
    require_mojo()
    cluster = MojoCluster(prefix=prefix, channels=channels, heartbeat_s=1, settings=settings).start()
    try:
        cluster.engine(runner, channels=engine_channels)
        cluster.scheduler()
        yield cluster
    finally:
        cluster.stop()
