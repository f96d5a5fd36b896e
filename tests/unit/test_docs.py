"""The documentation keeps up with the code: every setting, widget, error code and close code is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.protocol import CloseCode, ErrorCode
from server.settings import Settings, documented
from server.streams.core.widgets import WIDGET_NAMES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def test_readme_starts_with_the_two_commands():
    """The README's first lines are the demo command and the test command."""
    commands = re.findall(r"```sh\n(.+?)\n```", README)[:2]
    assert "jobpulse demo" in commands[0]
    assert "pytest" in commands[1]


@pytest.mark.parametrize(("env", "default", "doc"), documented())
def test_every_setting_is_in_the_readme(env, default, doc):
    """Each environment variable appears in the README's configuration table with its meaning."""
    row = next((line for line in README.splitlines() if line.startswith(f"| `{env}` |")), None)
    assert row is not None, f"{env} is missing from the README"
    assert doc in row


def test_settings_parse_and_reject_bad_values():
    """Settings come from the environment; a bad value names its variable."""
    settings = Settings.from_env({"JOBPULSE_TICK_MS": "50", "JOBPULSE_WS_DEFLATE": "true", "PORT": "9000"})
    assert (settings.tick_ms, settings.ws_deflate, settings.port) == (50, True, 9000)
    with pytest.raises(ValueError, match="JOBPULSE_TICK_MS"):
        Settings.from_env({"JOBPULSE_TICK_MS": "fast"})
    assert Settings.from_env({"JOBPULSE_SOURCE": "celery"}).source == "celery"
    with pytest.raises(ValueError, match="JOBPULSE_SOURCE=mojo needs JOBPULSE_MOJO_DATABASE_URL"):
        Settings.from_env({"JOBPULSE_SOURCE": "mojo"})
    mojo = Settings.from_env({"JOBPULSE_SOURCE": "mojo", "JOBPULSE_MOJO_DATABASE_URL": "postgresql://db/jobs"})
    assert (mojo.stale_factor, mojo.offline_factor) == (1.5, 3.0)  # django-mojo's own rule: gone after 3 beats
    with pytest.raises(ValueError, match="JOBPULSE_MOJO_METRICS_TZ"):
        Settings.from_env({"JOBPULSE_MOJO_METRICS_TZ": "Mars/Base"})
    with pytest.raises(ValueError, match="JOBPULSE_SOURCE='kafka'"):
        Settings.from_env({"JOBPULSE_SOURCE": "kafka"})


@pytest.mark.parametrize("name", WIDGET_NAMES)
def test_every_widget_is_documented(name):
    """docs/protocol.md describes the data of every widget."""
    assert f"`{name}`" in PROTOCOL


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_is_documented(code):
    """docs/protocol.md lists every error code."""
    assert f"| `{code.value}` |" in PROTOCOL


@pytest.mark.parametrize("code", list(CloseCode))
def test_every_close_code_is_documented(code):
    """docs/protocol.md lists every close code."""
    assert f"| {code.value} |" in PROTOCOL


BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in ("__init__", "common", "workload",
                                                                                  "wsclient"))  # fmt: skip


@pytest.mark.parametrize("bench", BENCHES)
def test_every_benchmark_explains_itself(bench: str) -> None:
    """`python -m bench.<name> --help` works: the documented commands' options are readable (a stray '%' in a help
    string once made argparse crash instead)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", f"bench.{bench}", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]
