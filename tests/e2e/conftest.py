"""Browser fixtures for the end-to-end tests: one headless Chromium per test module, a fresh page per test.

Playwright's sync API marks its own event loop as the thread's running loop for
as long as it is started, which would break the pytest-asyncio tests that run
after it in the same process. So the browser is module-scoped: it is stopped
after the last test of its module, before tests/integration and tests/unit run.

Chromium is /usr/bin/chromium, or JOBPULSE_CHROMIUM. When it is missing the
tests skip, unless JOBPULSE_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

E2E_DIR = Path(__file__).resolve().parent
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # headless Chromium as root (containers, CI) needs it
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e with `e2e`, so `-m "not e2e"` leaves them out."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def browser_required() -> bool:
    """CI sets JOBPULSE_REQUIRE_BROWSER=1: a missing browser is then a failure, not a skip."""
    return os.environ.get("JOBPULSE_REQUIRE_BROWSER") == "1"


def browser_unavailable(reason: str) -> None:
    """Skip the test, or fail it when a browser is required."""
    if browser_required():
        pytest.fail(f"{reason} (JOBPULSE_REQUIRE_BROWSER=1: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


def chromium_executable() -> str:
    """The Chromium binary to drive; skips (or fails) saying why when there is none."""
    configured = os.environ.get("JOBPULSE_CHROMIUM")
    path = configured or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        named = "JOBPULSE_CHROMIUM" if configured else "the default path; set JOBPULSE_CHROMIUM to use another"
        browser_unavailable(f"no executable Chromium at {path} ({named}), so the browser tests cannot run")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium, shared by the tests of one module."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        browser_unavailable(f"the playwright package is missing ({exc}): pip install -e '.[test]'")
        raise
    manager = sync_playwright().start()
    try:
        chromium = manager.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception as exc:
        manager.stop()
        browser_unavailable(f"Chromium at {executable} did not start: {exc}")
        raise
    try:
        yield chromium
    finally:
        chromium.close()
        manager.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in a browser context of its own; an uncaught JavaScript error in it fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}\n{error.stack}"))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, "the page threw:\n" + "\n".join(errors)
