"""What the test suite needs beyond its Python packages: found, installed or started before the first test runs.

The README's test command is the contract: on a fresh Debian machine it brings up everything the selected tests
need, and a part it cannot bring up stops the run with the command that would (never a silent skip). Leaving a
part's tests out is the user's choice, by marker: `-m "not e2e"`, `-m "not mojo"`.

- Chromium, for the browser tests and web/js in a browser: JOBPULSE_CHROMIUM, /usr/bin/chromium, else Debian's
  `chromium`.
- node, for the JavaScript twins of pure-core code: PATH, else Debian's `nodejs`.
- nginx, for the scale-out test behind a proxy: PATH or /usr/sbin/nginx, else Debian's `nginx-light`.
- Prometheus Alertmanager, for the alert tests' real Alertmanager: PATH or /usr/bin/prometheus-alertmanager, else
  Debian's `prometheus-alertmanager`.
- promtool and Prometheus, for the shipped alerting rules and a real scrape: PATH, else Debian's `prometheus`.
- PostgreSQL, for the django-mojo tests: JOBPULSE_MOJO_PG_URL; else 127.0.0.1:5432 when it answers; else a private
  cluster of Debian's binaries (`postgresql`) in a temporary folder on a free port, stopped at the end.
- django-mojo, for its tests: its own virtualenv (tests/mojo_cluster/environment.py), built from PyPI once.
- Redis, for most integration tests: REDIS_URL, else a private redis-server (tests/conftest.py).

Debian's packages are installed only with root, or sudo that needs no password; otherwise the run stops and
prints the `apt-get` line to run. Installs take a file lock, so parallel test processes do them once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.mojo_cluster.environment import DEFAULT_PG_URL, pg_unreachable

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jobpulse"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


class Missing(RuntimeError):
    """A part the selected tests need is not here and cannot be brought up from here; the message says how."""


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """One process at a time (parallel test workers share the machine's package manager and caches)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(message: str) -> None:
    print(f"jobpulse tests: {message}", file=sys.stderr, flush=True)


def _privileged() -> list[str] | None:
    """The prefix that runs a command as root here ([] as root, sudo -n with passwordless sudo), or None."""
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0:
        return [sudo, "-n"]
    return None


_apt_updated = False


def apt_install(packages: list[str], why: str) -> None:
    """Install Debian packages, or raise Missing with the command to run."""
    global _apt_updated
    line = f"sudo apt-get update && sudo apt-get install -y {' '.join(packages)}"
    prefix = _privileged()
    if shutil.which("apt-get") is None:
        raise Missing(f"{why}: install {' '.join(packages)} (this machine has no apt-get)")
    if prefix is None:
        raise Missing(f"{why}, and installing it needs root: run `{line}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _say(f"{why}: installing Debian's {' '.join(packages)} (a minute or two)")
    if not _apt_updated:
        subprocess.run([*prefix, "apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        _apt_updated = True
    done = subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", *packages], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise Missing(f"{why}; `apt-get install {' '.join(packages)}` failed:\n{done.stdout[-2000:]}{done.stderr}")


def _executable(path: str | None) -> str | None:
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def _binary(find: Callable[[], str | None], packages: list[str], why: str) -> str:
    found = find()
    if found:
        return found
    with locked("apt"):
        found = find()  # another worker may have installed it while this one waited
        if not found:
            apt_install(packages, why)
            found = find()
    if not found:
        raise Missing(f"{why}: {' '.join(packages)} installed, but its program is still not found")
    return found


def chromium() -> str:
    """The Chromium the browser tests drive: JOBPULSE_CHROMIUM, else /usr/bin/chromium (installed if missing),
    exported as JOBPULSE_CHROMIUM for the test processes and the page scripts."""
    configured = os.environ.get("JOBPULSE_CHROMIUM")
    if configured:
        if not _executable(configured):
            raise Missing(f"JOBPULSE_CHROMIUM={configured} is not an executable file")
        return configured
    found = _binary(lambda: _executable(DEFAULT_CHROMIUM), ["chromium"], "the browser tests need Chromium")
    os.environ["JOBPULSE_CHROMIUM"] = found
    return found


def node() -> str:
    return _binary(lambda: shutil.which("node"), ["nodejs"], "the JavaScript twin tests need node")


def alertmanager() -> str:
    def find() -> str | None:
        return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

    return _binary(find, ["prometheus-alertmanager"], "the alert tests need a real Prometheus Alertmanager")


def prometheus() -> str:
    """The directory holding `prometheus` and `promtool` (Debian's package ships both)."""

    def find() -> str | None:
        found = shutil.which("promtool")
        return found if found and shutil.which("prometheus") else None

    return str(Path(_binary(find, ["prometheus"], "the alerting-rules tests need promtool and Prometheus")).parent)


def nginx() -> str:
    def find() -> str | None:
        return shutil.which("nginx") or _executable("/usr/sbin/nginx")

    return _binary(find, ["nginx-light"], "the scale-out test needs nginx")


# -- PostgreSQL ---------------------------------------------------------------------------------------------


def pg_answers(url: str, timeout: float = 2.0) -> bool:
    return pg_unreachable(url, timeout) is None


def _pg_bindir() -> Path | None:
    """Debian's newest PostgreSQL server binaries (initdb, pg_ctl), or PATH's."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and (Path(found).parent / "initdb").exists() else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: initdb in a temporary folder, trust auth, loopback, a free port.

    As root it runs as the `postgres` user Debian's package creates (initdb refuses root).
    """

    def __init__(self, bindir: Path) -> None:
        from server.redis_server import free_port

        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobpulse-pg-"))
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise Missing(f"a private PostgreSQL did not start ({' '.join(args[:2])}):\n{done.stdout}{done.stderr}")

    def start(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise Missing("a private PostgreSQL cannot run as root and `runuser` is missing")
            shutil.chown(self.dir, "postgres")
            self._as = [runuser, "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip
        deadline = time.monotonic() + 30
        while not pg_answers(self.url, timeout=1):
            if time.monotonic() > deadline:
                raise Missing(f"a private PostgreSQL started but does not answer at {self.url}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*self._as, str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, check=False)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


_started: list[PrivatePostgres] = []


def postgres() -> str:
    """A PostgreSQL URL for the django-mojo tests, exported as JOBPULSE_MOJO_PG_URL (a private one is stopped by
    `stop_started()`)."""
    configured = os.environ.get("JOBPULSE_MOJO_PG_URL")
    if configured:
        if not pg_answers(configured):
            raise Missing(f"JOBPULSE_MOJO_PG_URL={configured} does not answer")
        return configured
    if not pg_answers(DEFAULT_PG_URL) and _pg_bindir() is None:
        with locked("apt"):
            if _pg_bindir() is None:
                apt_install(["postgresql"], "the django-mojo tests need PostgreSQL")
    if pg_answers(DEFAULT_PG_URL):  # the machine's own (Debian's package starts one where it can)
        url = DEFAULT_PG_URL
    else:
        bindir = _pg_bindir()
        if bindir is None:
            raise Missing("the django-mojo tests need PostgreSQL: postgresql is installed, but no pg_ctl was found")
        _say(f"no PostgreSQL answers at 127.0.0.1:5432: starting a private one from {bindir}")
        cluster = PrivatePostgres(bindir)
        _started.append(cluster)
        url = cluster.start().url
    os.environ["JOBPULSE_MOJO_PG_URL"] = url
    return url


def stop_started() -> None:
    """Stop the private PostgreSQL clusters this process started."""
    while _started:
        _started.pop().stop()


def mojo_python() -> str:
    """django-mojo's own interpreter (JOBPULSE_MOJO_PYTHON, else its virtualenv, built from PyPI when missing)."""
    from tests.mojo_cluster.environment import MOJO_VERSION, MojoUnavailable, install, installed_version

    configured = os.environ.get("JOBPULSE_MOJO_PYTHON")
    if configured:
        if installed_version(configured) != MOJO_VERSION:
            raise Missing(f"JOBPULSE_MOJO_PYTHON={configured} does not have django-mojo {MOJO_VERSION}")
        return configured
    with locked("mojo-venv"):
        try:
            python = install()
        except (MojoUnavailable, subprocess.CalledProcessError, OSError) as exc:
            raise Missing(f"django-mojo's environment could not be built: {exc}") from exc
    os.environ["JOBPULSE_MOJO_PYTHON"] = python
    return python


def required(bring_up: Callable[[], str]) -> str:
    """`bring_up()` in a test or fixture: a Missing part fails the test with what to do (never a skip)."""
    import pytest

    try:
        return bring_up()
    except Missing as exc:
        pytest.fail(str(exc), pytrace=False)
