"""`python -m tests.mojo_cluster install | check | demo`: build, or report on, django-mojo's own environment; or run
a django-mojo deployment with jobpulse as its console (`demo`, tests/mojo_cluster/demo.py).

`install` creates the virtual environment with the pinned django-mojo release from PyPI (about a minute and 440 MB;
nothing when it is there already) and prints its python, for `.ci/run` to export as JOBPULSE_MOJO_PYTHON. `check`
prints the python, its django-mojo release and whether the local Postgres answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.mojo_cluster.environment import (
    MOJO_VERSION,
    MojoUnavailable,
    install,
    installed_version,
    mojo_python,
    pg_admin_url,
    pg_unreachable,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mojo_cluster", description=__doc__)
    parser.add_argument("command", choices=["install", "check", "demo"])
    parser.add_argument("--rate", type=float, default=2.0, help="demo: jobs published a second")
    parser.add_argument("--port", type=int, default=None, help="demo: jobpulse's port (default: a free one)")
    parser.add_argument("--venv", type=Path, help="where to create the environment (default: JOBPULSE_MOJO_VENV)")
    args = parser.parse_args(argv)
    if args.command == "install":
        print(install(args.venv))
        return 0
    if args.command == "demo":
        from tests.mojo_cluster.demo import main as demo

        return demo(args.rate, args.port)
    try:
        python = mojo_python()
    except MojoUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    version = installed_version(python)
    print(f"python: {python}\ndjango-mojo: {version} (pinned {MOJO_VERSION})")
    print(f"postgres: {pg_unreachable() or 'answers at ' + pg_admin_url()}")
    return 0 if version == MOJO_VERSION else 1


if __name__ == "__main__":
    sys.exit(main())
