"""Outbound alerts in a real Chromium: the Hot Issues card's Acknowledge and Silence, the Notifications page
(targets, the delivery log, silences, a test notification), against a real server with real sign-in and a real
HTTP receiver. Deadlines are functional (`expect` polls); nothing sleeps to assert."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import LiveServer, users_env
from tests.e2e.support import Source, expect
from tests.e2e.test_actions import sign_in
from tests.receiver import ThreadedReceiver

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

OVERVIEW = "/admin/jobs/overview"
NOTIFICATIONS = "/admin/jobs/notifications"
ALERT = "no_runner:email"


@pytest.fixture
def receiver() -> Iterator[ThreadedReceiver]:
    sink = ThreadedReceiver()
    yield sink
    sink.close()


@pytest.fixture
def server(redis_url: str, prefix: str, receiver: ThreadedReceiver) -> Iterator[LiveServer]:
    env = users_env(
        JOBPULSE_ALERT_WEBHOOKS=receiver.url + "/hook", JOBPULSE_ALERT_MIN_OPEN_S="0.5", JOBPULSE_CLOCK_MS="250",
        JOBPULSE_COMMAND_RATE="100000",
    )  # fmt: skip
    live = LiveServer(redis_url, prefix, env).start()
    yield live
    output = live.finish()
    assert "Traceback" not in output, f"the server logged a traceback:\n{output}"


def kinds(receiver: ThreadedReceiver, kind: str) -> int:
    return sum(1 for r in receiver.accepted() if r.json()["kind"] == kind)


def test_an_operator_acknowledges_and_silences_from_hot_issues_and_sees_it_on_the_notifications_page(
    page: Page, browser: Browser, server: LiveServer, receiver: ThreadedReceiver, redis_url: str, prefix: str
) -> None:
    sign_in(page, server, "oscar", OVERVIEW)
    with Source.connect(redis_url, prefix) as source:
        source.depth(email={"queued": 7})
        receiver.wait_for(lambda r: kinds(r, "firing") == 1, 20)
        issue = page.locator(f'[data-widget=hot_issues] li[data-key="{ALERT}"]')
        expect(issue.locator(".alert-marks")).to_contain_text("notified")
        issue.get_by_role("button", name=re.compile("^Acknowledge")).click()
        expect(issue.locator(".alert-marks")).to_contain_text("acknowledged by oscar")
        expect(issue.get_by_role("button", name=re.compile("^Acknowledge"))).to_be_hidden()
        issue.get_by_role("button", name=re.compile("^Silence")).click()
        expect(issue.locator(".alert-marks")).to_contain_text("silenced until")

        page.goto(server.url + NOTIFICATIONS)
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
        target = page.locator("[data-f=targets] tr").first
        expect(target).to_contain_text("webhook-")
        expect(target.locator(".badge")).to_have_text("OK")
        log = page.locator("[data-f=log] tr")
        expect(log.first).to_contain_text("firing")
        expect(log.first.locator(".badge")).to_have_text("sent")
        firing = page.locator(f'[data-f=firing] tr[data-key="{ALERT}"]')
        expect(firing).to_contain_text("oscar at")
        silence = page.locator(f'[data-f=silences] tr[data-key="{ALERT}"]')
        expect(silence).to_contain_text("oscar")
        # The test notification is an admin's: the operator's button is disabled, saying why.
        test_button = page.get_by_role("button", name="Send a test notification")
        expect(test_button).to_be_disabled()
        expect(test_button).to_have_attribute("title", re.compile("admin"))
        silence.get_by_role("button", name="Unsilence").click()
        expect(silence).to_have_count(0)
        # A silence of a whole rule, from the form.
        page.locator("#nt-rule").select_option("stuck_jobs")
        page.locator("#nt-reason").fill("migration")
        page.locator("#nt-silence button[type=submit]").click()
        expect(page.locator('[data-f=silences] tr[data-key="stuck_jobs"]')).to_contain_text("migration")

        # An admin sends a test notification: the receiver gets it, and the log shows it.
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            admin = sign_in(context.new_page(), server, "ada", NOTIFICATIONS)
            admin.get_by_role("button", name="Send a test notification").click()
            receiver.wait_for(lambda r: kinds(r, "test") == 1, 20)
            expect(admin.locator("[data-f=log] tr").first).to_contain_text("test")
        finally:
            context.close()

        # The issue clears: the alert resolves once, and the firing table empties.
        source.depth(email={"queued": 0})
        receiver.wait_for(lambda r: kinds(r, "resolved") == 1, 20)
        expect(page.locator(f'[data-f=firing] tr[data-key="{ALERT}"]')).to_have_count(0)

    # Platform Status: the Webhooks KPI counts the target, the service matrix has its delivery row, and the alert
    # timeline offers Silence on the newest entry of an alert still open.
    with Source.connect(redis_url, prefix) as source:
        source.depth(billing={"queued": 4})
        receiver.wait_for(lambda r: kinds(r, "firing") == 2, 20)
    page.goto(server.url + "/admin/system-status")
    expect(page.locator("[data-f=webhooks]")).to_have_text("1 target")
    expect(page.locator('tr[data-key="alerts"]')).to_contain_text("Alert delivery")
    timeline = page.locator("[data-widget=alert_log] tbody tr", has_text="no_runner:billing")
    offered = timeline.filter(has=page.get_by_role("button", name=re.compile("^Silence")))
    expect(offered).to_have_count(1)  # the newest entry of the open alert, not its older ones
    entry = page.locator(f'[data-widget=alert_log] tr[data-key="{offered.get_attribute("data-key")}"]')
    expect(entry.locator(".alert-marks")).to_contain_text("notified")
    entry.get_by_role("button", name=re.compile("^Silence")).click()
    expect(entry.locator(".alert-marks")).to_contain_text("silenced until")


def test_without_a_target_the_pages_say_so_and_offer_no_alert_actions(page: Page, redis_url: str, prefix: str) -> None:
    live = LiveServer(redis_url, prefix, users_env(JOBPULSE_CLOCK_MS="250")).start()
    try:
        sign_in(page, live, "oscar", NOTIFICATIONS)
        expect(page.locator("[data-f=off]")).to_be_visible()
        expect(page.locator("[data-f=off]")).to_contain_text("No alert target is configured")
        page.goto(live.url + OVERVIEW)
        with Source.connect(redis_url, prefix) as source:
            source.depth(email={"queued": 7})
            issue = page.locator(f'[data-widget=hot_issues] li[data-key="{ALERT}"]')
            expect(issue).to_be_visible(timeout=15_000)
            expect(issue.locator(".alert-tools")).to_be_hidden()
        page.goto(live.url + "/admin/system-status")
        expect(page.locator("[data-f=webhooks]")).to_have_text("Not configured")
    finally:
        output = live.finish()
    assert "Traceback" not in output, output
