"""Several sources in a real Chromium: the runners console and the job table filter by source, in the URL.

One jobpulse watches two native-protocol systems (JOBPULSE_SOURCES=pay:native,media:native, each on its own
prefix of the test's Redis), fed by two small sources with runners and jobs of known names. A source down shows
as a warning naming it, while the other stays live.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import LiveServer
from tests.e2e.support import Page, Source, expect

pytestmark = pytest.mark.e2e

RUNNERS = "/admin/jobs/runners"
TABLE = "/admin/jobs/table"


@pytest.fixture
def two(redis_url: str, prefix: str) -> Iterator[tuple[LiveServer, Source, Source]]:
    env = {
        "JOBPULSE_SOURCES": "pay:native,media:native",
        "JOBPULSE_PAY_PREFIX": f"{prefix}-pay",
        "JOBPULSE_MEDIA_PREFIX": f"{prefix}-media",
    }
    server = LiveServer(redis_url, prefix, env=env).start()
    try:
        with (
            Source.connect(redis_url, f"{prefix}-pay", interval=60.0, region="us-east") as pay,
            Source.connect(redis_url, f"{prefix}-media", interval=60.0, region="eu-west") as media,
        ):
            for i in range(3):
                pay.heartbeat(f"w{i}")
            for i in range(2):
                media.heartbeat(f"w{i}")  # the same ids as pay's: the labels keep them apart
            for i in range(4):
                pay.job("completed", f"job-{i}", src="w0", runner="w0", channel="email", duration=0.1)
            for i in range(2):
                media.job("failed", f"job-{i}", src="w1", runner="w1", channel="email", error="ValueError: x")
            yield server, pay, media
    finally:
        output = server.finish()
        assert "Traceback" not in output, output


def open_page(page: Page, server: LiveServer, path: str) -> None:
    page.goto(server.url + path)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)


def card_ids(page: Page) -> list[str]:
    return sorted(page.evaluate("() => [...document.querySelectorAll('#fleet .rcard')].map((c) => c.dataset.key)"))


def test_the_runners_console_filters_by_source(page: Page, two: tuple[LiveServer, Source, Source]) -> None:
    server, _, _ = two
    open_page(page, server, RUNNERS)
    page.wait_for_function("() => document.querySelectorAll('#fleet .rcard').length === 5", timeout=15_000)
    assert card_ids(page) == ["media:w0", "media:w1", "pay:w0", "pay:w1", "pay:w2"]
    source = page.locator("#f-source")
    expect(source.locator("option")).to_have_text(["All sources (5)", "pay (native) (3)", "media (native) (2)"])
    source.select_option("media")
    page.wait_for_function("() => document.querySelectorAll('#fleet .rcard').length === 2", timeout=10_000)
    assert card_ids(page) == ["media:w0", "media:w1"]
    assert parse_qs(urlsplit(page.url).query)["source"] == ["media"]
    # Each card says whose it is.
    expect(page.locator('#fleet .rcard[data-key="media:w0"]')).to_contain_text("media · eu-west")
    # The filter is in the URL: a reload (or a shared link) shows the same.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    page.wait_for_function("() => document.querySelectorAll('#fleet .rcard').length === 2", timeout=10_000)
    expect(page.locator("#f-source")).to_have_value("media")
    page.locator("#f-clear").click()
    page.wait_for_function("() => document.querySelectorAll('#fleet .rcard').length === 5", timeout=10_000)


def test_the_job_table_filters_by_source(page: Page, two: tuple[LiveServer, Source, Source]) -> None:
    server, _, _ = two
    open_page(page, server, TABLE)
    page.wait_for_function("() => document.querySelectorAll('#jt-rows tr[data-key]').length === 6", timeout=15_000)
    page.locator("#jt-source").select_option("pay")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jt-rows tr[data-key]')].every((r) => r.dataset.key.startsWith('pay:'))"
        " && document.querySelectorAll('#jt-rows tr[data-key]').length === 4",
        timeout=10_000,
    )
    assert "source:pay" in parse_qs(urlsplit(page.url).query)["q"][0]
    expect(page.locator("#jt-q")).to_have_value("source:pay")
    # channel:email finds every source's email; with source:media only media's two failures.
    box = page.locator("#jt-q")
    box.fill("channel:email source:media")
    box.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jt-rows tr[data-key]')].map((r) => r.dataset.key).sort().join()"
        " === 'media:job-0,media:job-1'",
        timeout=10_000,
    )
    expect(page.locator("#jt-source")).to_have_value("media")


def test_a_source_down_is_a_warning_naming_it(page: Page, redis_url: str, prefix: str) -> None:
    """One of two sources unreachable (nothing listens at its Redis): the banner names it, and the console stays
    live with the other's runners: not a blind console."""
    env = {"JOBPULSE_SOURCES": "pay:native,media:native:redis://127.0.0.1:1/0", "JOBPULSE_PAY_PREFIX": f"{prefix}-pay"}
    server = LiveServer(redis_url, prefix, env=env).start()  # ready: one source is followed
    try:
        with Source.connect(redis_url, f"{prefix}-pay", interval=60.0) as pay:
            for i in range(3):
                pay.heartbeat(f"w{i}")
            open_page(page, server, RUNNERS)
            banner = page.locator("#banner")
            expect(banner).to_contain_text("Source media (native) down", timeout=15_000)
            expect(banner).to_contain_text("The other sources are live")
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
            page.wait_for_function("() => document.querySelectorAll('#fleet .rcard').length === 3", timeout=15_000)
            assert card_ids(page) == ["pay:w0", "pay:w1", "pay:w2"]
    finally:
        output = server.finish()
        assert "Traceback" not in output, output


def test_the_wall_shows_all_sources_or_one(page: Page, two: tuple[LiveServer, Source, Source]) -> None:
    server, _, _ = two
    page.goto(server.url + "/wall")
    expect(page.locator(".wall-fleet [data-f=total]")).to_have_text("5 known", timeout=15_000)
    expect(page.locator("#wall-title")).to_have_text("Jobs · live")
    page.goto(server.url + "/wall?source=media")
    expect(page.locator(".wall-fleet [data-f=total]")).to_have_text("2 known", timeout=15_000)
    expect(page.locator("#wall-title")).to_have_text("Jobs · live · media")
    # Media's failures alone: its counter, not the sum of both systems.
    expect(page.locator(".counter-failed [data-f=v]")).to_have_text("2")
    expect(page.locator(".counter-completed [data-f=v]")).to_have_text("0")


def test_the_dashboard_and_overview_show_one_source_when_picked(
    page: Page, two: tuple[LiveServer, Source, Source]
) -> None:
    server, _, _ = two
    open_page(page, server, "/admin/jobs")
    expect(page.locator(".counters .counter-completed [data-f=v]")).to_have_text("4", timeout=15_000)
    expect(page.locator(".counters .counter-failed [data-f=v]")).to_have_text("2")
    page.locator("#source-pick").select_option("pay")
    page.wait_for_url("**/admin/jobs?source=pay")
    expect(page.locator(".counters .counter-failed [data-f=v]")).to_have_text("0", timeout=15_000)
    expect(page.locator(".counters .counter-completed [data-f=v]")).to_have_text("4")
    expect(page.locator("#source-pick")).to_have_value("pay")

    open_page(page, server, "/admin/jobs/overview?source=media")
    expect(page.locator(".kpi-failed [data-f=value]")).to_have_text("2", timeout=15_000)
    expect(page.locator(".kpi-completed [data-f=value]")).to_have_text("0")
    # A gauge cannot be one source's: the card says it shows them all; the counts are media's own.
    expect(page.locator(".kpi-backlog")).to_have_attribute("data-scope", "all")
    expect(page.locator(".kpi-completed")).not_to_have_attribute("data-scope", "all")
    expect(page.locator('[data-widget="pulse"]')).to_have_attribute("data-scope", "all")
    expect(page.locator('[data-widget="service?source=media"]')).to_be_visible()


def test_the_overview_names_each_source_and_charts_by_source(
    page: Page, two: tuple[LiveServer, Source, Source]
) -> None:
    server, _, _ = two
    open_page(page, server, "/admin/jobs/overview")
    items = page.locator(".service .service-sources li")
    expect(items).to_have_count(2, timeout=15_000)
    expect(items.nth(0)).to_contain_text("pay (native): connected")
    expect(items.nth(1)).to_contain_text("media (native): connected")
    page.locator(".kpi-completed [data-open-chart]").click()
    dialog = page.locator("#chart-modal")
    expect(dialog).to_be_visible()
    dialog.locator("[data-chart-by=source]").click()
    expect(dialog.locator("[data-f=chart-title]")).to_have_text("Completed per source")
    expect(dialog.locator("[data-chart]")).to_have_attribute(
        "data-widget", "chart?by=source&gran=minutes&metric=completed"
    )
    # pay completed 4 jobs, media none: a series each, pay the busiest.
    expect(dialog.locator("[data-f=summary]")).to_contain_text("4 completed", timeout=10_000)
    expect(dialog.locator("[data-f=summary]")).to_contain_text("across 2 sources · busiest pay (4)")


def test_the_audit_log_filters_by_source(page: Page, two: tuple[LiveServer, Source, Source]) -> None:
    server, _, _ = two
    open_page(page, server, RUNNERS)
    page.wait_for_function("() => document.querySelectorAll('#fleet .rcard').length === 5", timeout=15_000)
    # Two commands through the page's socket (previews: audited, and answered at once): one runner of each source.
    drain = """(runner) => import("/static/js/commands.js")
        .then((c) => c.command("runner.drain", {runners: [runner]}, {phase: "preview"}))"""
    for runner in ("pay:w0", "media:w1"):
        page.evaluate(drain, runner)
    open_page(page, server, "/admin/jobs/audit")
    rows = page.locator("#audit-rows tr")
    expect(rows).to_have_count(2, timeout=15_000)
    page.locator("#f-source").select_option("media")
    page.locator("#audit-filters button[type=submit]").click()
    expect(rows).to_have_count(1, timeout=10_000)
    expect(rows.first).to_contain_text("media:w1")
    expect(rows.first).to_contain_text("preview · media")
    assert "source=media" in page.url
