"""Launcher for django-mojo's own jobs CLI (`engine foreground`, `scheduler foreground`) in the test deployment.

`python -m mojo.apps.jobs.cli` never calls django.setup(), so it cannot run on its own; this sets Django up first and
hands its arguments to `mojo.apps.jobs.cli.main`, exactly as a deployment's bin/jobs.py does.
"""

from __future__ import annotations

import importlib
import sys


def main() -> int:
    importlib.import_module("django").setup()
    cli = importlib.import_module("mojo.apps.jobs.cli")
    return 0 if cli.main(sys.argv[1:]) else 1


if __name__ == "__main__":
    sys.exit(main())
