"""Django settings of the test deployment of django-mojo, read from the environment the harness sets.

Everything a test varies comes from MOJO_* variables: the Postgres database (one per test run), the private Redis,
django-mojo's key prefix, its heartbeat interval and the channels its engines consume. MOJO_EXTRA_SETTINGS (a JSON
object) sets any other django-mojo setting, e.g. JOBS_VISIBILITY_TIMEOUT_MS or METRICS_TIMEZONE.
"""

from __future__ import annotations

import importlib
import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

_RUN_DIR = Path(os.environ["MOJO_RUN_DIR"])
# Must run before any mojo.apps import: django-mojo's logger reads paths.LOG_ROOT at import time. The path it is given
# need not exist; its grandparent becomes the project root, so logs go to <run dir>/var/logs, not into the repository.
importlib.import_module("mojo.helpers.paths").configure_paths(str(_RUN_DIR / "config" / "settings.py"), depth=0)
(_RUN_DIR / "var" / "logs").mkdir(parents=True, exist_ok=True)


def _database(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": urllib.parse.unquote(parts.username or "postgres"),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


SECRET_KEY = "jobpulse-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# django-mojo's account app (AUTH_USER_MODEL) is required by the jobs app's checks; its migrations need fileman and
# incident too.
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "mojo.apps.account",
    "mojo.apps.fileman",
    "mojo.apps.incident",
    "mojo.apps.jobs",
]
AUTH_USER_MODEL = "account.User"
DATABASES = {"default": _database(os.environ["MOJO_PG_URL"])}
# django-mojo connects with REDIS_URL; JOBS_REDIS_URL is only echoed by its config endpoint.
REDIS_URL = os.environ["MOJO_REDIS_URL"]
# Unset, django-mojo's keys start with the literal "None" (its settings helper returns None, not the default).
JOBS_REDIS_PREFIX = os.environ.get("MOJO_JOBS_PREFIX", "mojo:jobs")
# Unset, JobManager.get_runners() multiplies None by 3 and finds no runner: always set it.
JOBS_RUNNER_HEARTBEAT_SEC = int(os.environ.get("MOJO_HB_SEC", "1"))
JOBS_CHANNELS = os.environ.get("MOJO_CHANNELS", "default,priority").split(",")

globals().update(json.loads(os.environ.get("MOJO_EXTRA_SETTINGS") or "{}"))
