"""Where django-mojo's own Python environment lives, how to build it, and whether the local Postgres answers.

django-mojo pins redis<8 (and Django, psycopg, ~95 packages), which clashes with jobpulse's environment, so it gets a
virtual environment of its own. Its interpreter is JOBPULSE_MOJO_PYTHON when set, else the one in JOBPULSE_MOJO_VENV
(default ~/.cache/jobpulse/mojo-venv-<version>). `install()` creates it with the pinned release from PyPI; nothing
else downloads anything.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

MOJO_VERSION = "1.39.10"  # the release docs/mojo.md was verified against
PROJECT_DIR = Path(__file__).resolve().parent / "project"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class MojoUnavailable(RuntimeError):
    """django-mojo's environment is missing or holds another release."""


def venv_dir() -> Path:
    default = Path.home() / ".cache" / "jobpulse" / f"mojo-venv-{MOJO_VERSION}"
    return Path(os.environ.get("JOBPULSE_MOJO_VENV") or default).expanduser()


def mojo_python() -> str:
    """The interpreter that has django-mojo.

    Raises:
        MojoUnavailable: when there is none, with the command that builds it.
    """
    explicit = os.environ.get("JOBPULSE_MOJO_PYTHON")
    python = Path(explicit) if explicit else venv_dir() / "bin" / "python"
    if not python.exists():
        raise MojoUnavailable(
            f"no django-mojo environment at {python}: run `python -m tests.mojo_cluster install` "
            "(or set JOBPULSE_MOJO_PYTHON to a python that has django-mojo)"
        )
    return str(python)


def installed_version(python: str) -> str | None:
    """The django-mojo release that `python` has, or None."""
    probe = "import importlib.metadata as m; print(m.version('django-mojo'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def install(venv: Path | None = None) -> str:
    """Create the environment with django-mojo==MOJO_VERSION from PyPI unless it is there already; its python."""
    target = venv or venv_dir()
    python = target / "bin" / "python"
    if python.exists() and installed_version(str(python)) == MOJO_VERSION:
        return str(python)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(target)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"django-mojo=={MOJO_VERSION}"], check=True)
    subprocess.run([str(python), "-m", "pip", "check"], check=True)
    if installed_version(str(python)) != MOJO_VERSION:
        raise MojoUnavailable(f"{python} does not report django-mojo {MOJO_VERSION} after the install")
    return str(python)


def pg_admin_url() -> str:
    """The Postgres to create test databases on: JOBPULSE_MOJO_PG_URL, else the machine's local server."""
    return os.environ.get("JOBPULSE_MOJO_PG_URL") or DEFAULT_PG_URL


def pg_unreachable(url: str | None = None, timeout: float = 2.0) -> str | None:
    """Why Postgres at `url` cannot be reached over TCP, or None when it accepts a connection."""
    parts = urllib.parse.urlsplit(url or pg_admin_url())
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"Postgres at {host}:{port} is unreachable ({exc})"


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` with its database replaced by `name`."""
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
