"""Browser fixtures for the end-to-end tests: one headless Chromium per test module, a fresh page per test.

Playwright's sync API marks its own event loop as the thread's running loop for
as long as it is started, which would break the pytest-asyncio tests that run
after it in the same process. So the browser is module-scoped: it is stopped
after the last test of its module, before tests/integration and tests/unit run.

Chromium is JOBPULSE_CHROMIUM, else /usr/bin/chromium, installed from
Debian's package when it is missing and the run may (tests/provision.py);
otherwise the run stops saying how. `-m "not e2e"` leaves these tests out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests import provision
from tests.e2e.support import watch

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # headless Chromium as root (containers, CI) needs it
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium, shared by the tests of one module."""
    executable = provision.required(provision.chromium)  # found or installed, or the test fails saying how
    from playwright.sync_api import sync_playwright  # the test extra installs it

    manager = sync_playwright().start()
    try:
        chromium = manager.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception as exc:
        manager.stop()
        pytest.fail(f"Chromium at {executable} did not start: {exc}", pytrace=False)
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


@pytest.fixture
def console_errors(page: Page) -> Iterator[list[str]]:
    """An error the page (or another tab the test watches) logs in its console fails the test. A module takes it
    for every test with `pytestmark = pytest.mark.usefixtures("console_errors")`."""
    errors: list[str] = []
    watch(page, errors)
    yield errors
    assert not errors, "the page logged errors:\n" + "\n".join(errors)
