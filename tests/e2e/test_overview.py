"""The Jobs Overview and the Service Logs pages in a real Chromium, against a real server and a real Redis.

Most tests run beside the simulated fleet of tests/conftest.py (six runners beating every second, four
channels plus webhooks-legacy, which gets jobs but has no runner), so updates stream while the tests act.
The hot-issues test starts its own server with tightened rules and a fleet whose runner goes silent at once.
Deadlines are generous and functional (`expect(...)` and `wait_for_function` poll until true); nothing
sleeps to assert.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LiveServer, SimulatedFleet
from tests.e2e.support import (
    FirstLoad,
    Locator,
    Page,
    Source,
    expect,
    install_ws_probe,
    tag,
    tagged,
    wait_for_quiet_tick,
)

pytestmark = pytest.mark.e2e

OVERVIEW = "/admin/jobs/overview"
LOGS = "/admin/jobs/logs"
NUMBER = re.compile(r"^\d[\d,]*$")
AGE = re.compile(r"^\d+(s|m \d+s|h \d+m|d \d+h)$")


def open_page(page: Page, server: LiveServer, path: str = OVERVIEW) -> Page:
    """Load a page of `server`; return once its socket is live and the first snapshots are drawn."""
    install_ws_probe(page)
    page.goto(server.url + path)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("[data-widget=health] [data-f=events]")).to_have_text(re.compile(r"^\d"), timeout=10_000)
    return page


def kpi(page: Page, metric: str) -> Locator:
    return page.locator(f".kpi[data-metric={metric}]")


def sent_frames(page: Page) -> list[dict[str, Any]]:
    """The frames the page sent on its websocket, decoded."""
    return [json.loads(frame) for frame in page.evaluate("() => window.__e2eWs.sent")]


def subscribed(page: Page, key: str) -> bool:
    """True when the page's last (un)subscription mentioning `key` subscribed it."""
    last = None
    for frame in sent_frames(page):
        if frame["type"] in ("hello", "sub", "unsub") and key in frame.get("widgets", []):
            last = frame["type"]
    return last in ("hello", "sub")


def test_overview_renders_live_data(page: Page, live_server: LiveServer, simulated_fleet: SimulatedFleet) -> None:
    """Every widget fills from the fleet: KPIs, service pill and rule, pulse, backlogs, hot issues, snapshot."""
    open_page(page, live_server)
    expect(page).to_have_title("Async Jobs Overview · jobpulse")
    expect(page.locator("h1")).to_have_text("Async Jobs Overview")
    expect(page.locator("a.btn", has_text="Manage Jobs")).to_have_attribute("href", "/admin/jobs/manage")
    expect(page.locator("a.btn", has_text="Service Health")).to_have_attribute("href", "/admin/system-status")

    # KPI strip: numbers, a trend in words, and the in-flight duration as a time.
    expect(kpi(page, "completed").locator("[data-f=value]")).to_have_text(re.compile(r"^[1-9][\d,]*$"), timeout=20_000)
    expect(kpi(page, "failed").locator("[data-f=value]")).to_have_text(NUMBER)
    expect(kpi(page, "backlog").locator("[data-f=value]")).to_have_text(NUMBER)
    expect(kpi(page, "inflight").locator("[data-f=value]")).to_have_text(AGE)
    for metric in ("completed", "failed", "inflight", "backlog"):
        expect(kpi(page, metric).locator("[data-f=trend]")).to_have_text(
            re.compile(r"vs |same as|up from|no data from")
        )
        expect(kpi(page, metric)).to_have_attribute("data-widget", f"kpi?gran=minutes&metric={metric}")

    # Job Service Health: the fleet's webhooks-legacy has a backlog and no runner, a critical alert.
    service = page.locator("[data-widget=service]")
    expect(service.locator("[data-f=pill]")).to_have_text("Critical", timeout=20_000)
    expect(service.locator("[data-f=rule]")).to_have_text(re.compile(r"^Set by: .+"))
    expect(service.locator("[data-f=pill]")).to_have_attribute("title", re.compile(r"^Set by the alert “.+”$"))
    expect(service.locator("[data-f=broker]")).to_have_text("Connected")
    expect(service.locator("[data-f=rtt]")).to_have_text(re.compile(r"^\d+\.\d\d ms round trip$"))
    expect(service.locator("[data-f=active]")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(service.locator("a", has_text="Open Service Logs")).to_have_attribute("href", LOGS)

    # Runner Pulse.
    pulse = page.locator("[data-widget=pulse]")
    expect(pulse.locator("[data-f=last]")).to_have_text(re.compile(r"^\d+s ago$"))
    expect(pulse.locator("[data-f=latency]")).to_have_text(re.compile(r"p50 [\d.]+ · max [\d.]+ ms"))
    expect(pulse.locator("[data-f=latency-spark] path.line.main")).to_have_attribute("d", re.compile(r"^M"))
    expect(pulse.locator("a", has_text="View Runners")).to_have_attribute("href", "/admin/jobs/runners")

    # Channel Backlogs: webhooks-legacy, with its SLA bar, ratio in words and actions.
    legacy = page.locator('[data-widget=backlogs] li[data-key="webhooks-legacy"]')
    expect(legacy.locator(".badge.channel")).to_have_text("webhooks-legacy", timeout=20_000)
    expect(legacy.locator(".backlog-queued")).to_have_text(re.compile(r"^[1-9][\d,]* queued"))
    expect(legacy.locator(".backlog-runners")).to_have_text("no live runner")
    expect(legacy.locator(".ratio")).to_have_text(re.compile(r"^(\d+% of SLA|\d+\.\d× SLA)$"))
    expect(legacy.locator(".age")).to_have_text(AGE)
    expect(legacy.locator("a", has_text="View jobs")).to_have_attribute(
        "href", "/admin/jobs/table?q=channel%3Awebhooks-legacy"
    )
    for label in ("Purge", "Clear stuck"):  # dev mode: the quick actions are live
        expect(legacy.locator("button", has_text=label)).to_be_enabled()
    assert page.locator("[data-widget=backlogs] li").count() <= 5

    # Hot Issues: the backlog with no runner, with its call to action.
    issue = page.locator('[data-widget=hot_issues] li[data-key="no_runner:webhooks-legacy"]')
    expect(issue.locator(".badge")).to_have_text("Critical")
    expect(issue.locator(".issue-title")).to_have_text("webhooks-legacy: backlog and no runner")
    expect(issue.locator("a.cta")).to_have_text("View runners")
    expect(issue.locator("[data-since]")).to_have_text(AGE)
    expect(page.locator("[data-widget=hot_issues] [data-f=empty]")).to_be_hidden()

    # Snapshot cards.
    snapshot = page.locator("[data-widget=snapshot]")
    expect(snapshot.locator("[data-f=scheduled]")).to_have_text(NUMBER)
    expect(snapshot.locator("[data-f=retries]")).to_have_text(NUMBER)
    expect(snapshot.locator("[data-f=hour]")).to_have_text(re.compile(r"^[\d,]+ completed · [\d,]+ failed"))
    link = snapshot.locator("[data-f=longest-link]")
    expect(link).to_have_attribute("href", re.compile(r"^/admin/jobs/table\?q=id%3A.+"), timeout=20_000)
    expect(snapshot.locator("[data-f=longest-age]")).to_have_text(AGE)

    # Paused, nothing arrives, and the ages tick on the browser's clock.
    page.locator("#btn-live").click()
    expect(page.locator("#conn")).to_have_attribute("data-state", "paused")
    wait_for_quiet_tick(page, "[data-widget=pulse] [data-f=last]", timeout=8_000)
    expect(pulse.locator("[data-f=last]")).to_have_text(re.compile(r"^[1-9]\d*s ago$"))


def test_pushes_land_in_place(page: Page, live_server: LiveServer, simulated_fleet: SimulatedFleet) -> None:
    """Pushed changes rewrite the text of the nodes already there: KPI value, backlog row, hot-issue row."""
    open_page(page, live_server)
    value = kpi(page, "completed").locator("[data-f=value]")
    legacy = page.locator('[data-widget=backlogs] li[data-key="webhooks-legacy"]')
    queued = legacy.locator(".backlog-queued")
    issue = page.locator('[data-widget=hot_issues] li[data-key="no_runner:webhooks-legacy"]')
    detail = issue.locator(".issue-detail")
    expect(value).to_have_text(NUMBER)
    expect(queued).to_have_text(re.compile(r"queued"), timeout=20_000)
    expect(detail).to_have_text(re.compile(r"queued"), timeout=20_000)
    before = {"value": value.inner_text(), "queued": queued.inner_text(), "detail": detail.inner_text()}
    for name, locator in (("value", value), ("legacy", legacy), ("queued", queued), ("issue", issue)):
        tag(locator, name)

    # webhooks-legacy's queue only grows (no runner), so these texts change as the fleet publishes.
    expect(value).not_to_have_text(before["value"], timeout=20_000)
    expect(queued).not_to_have_text(before["queued"], timeout=20_000)
    expect(detail).not_to_have_text(before["detail"], timeout=20_000)
    for name, locator in (("value", value), ("legacy", legacy), ("queued", queued), ("issue", issue)):
        assert tagged(locator, name), f"the {name} node was re-created instead of updated"


def test_kpi_granularity_swaps_view_and_url(
    page: Page, live_server: LiveServer, simulated_fleet: SimulatedFleet
) -> None:
    """A card's granularity swaps its view key (unsubscribes the old one) and is kept in the URL across a reload."""
    open_page(page, live_server)
    card = kpi(page, "completed")
    expect(card.locator("[data-f=value]")).to_have_text(NUMBER)
    card.locator("button[data-gran=hours]").click()
    expect(card).to_have_attribute("data-widget", "kpi?gran=hours&metric=completed")
    expect(card.locator("button[data-gran=hours]")).to_have_attribute("aria-pressed", "true")
    expect(card.locator("button[data-gran=minutes]")).to_have_attribute("aria-pressed", "false")
    expect(card.locator("[data-f=window]")).to_have_text("last 24 h")
    expect(card.locator("[data-f=value]")).to_have_text(NUMBER)
    assert page.url.endswith(f"{OVERVIEW}?kpi=completed:hours"), page.url
    page.wait_for_function("() => window.__e2eWs.sent.some((f) => f.includes('kpi?gran=hours&metric=completed'))")
    assert subscribed(page, "kpi?gran=hours&metric=completed")
    assert not subscribed(page, "kpi?gran=minutes&metric=completed")
    # One hour of 24 has been watched: the others are drawn as gaps, not zeros.
    expect(card.locator("path.gap")).to_have_attribute("d", re.compile(r"^M.*Z$"))
    # The hour under way is a count still growing: drawn as its pace (dashed), once a tenth of it has gone by.
    minute = page.evaluate("() => new Date().getMinutes()")
    expect(card.locator("path.partial")).to_have_attribute("d", re.compile(r"^M") if minute >= 6 else re.compile(r"^$"))
    expect(card.locator("svg[data-f=spark]")).to_have_attribute("aria-label", re.compile(r"not watched"))

    kpi(page, "failed").locator("button[data-gran=days]").click()
    expect(kpi(page, "failed")).to_have_attribute("data-widget", "kpi?gran=days&metric=failed")
    assert page.url.endswith(f"{OVERVIEW}?kpi=completed:hours,failed:days"), page.url

    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(card).to_have_attribute("data-widget", "kpi?gran=hours&metric=completed")
    expect(card.locator("button[data-gran=hours]")).to_have_attribute("aria-pressed", "true")
    expect(kpi(page, "failed").locator("button[data-gran=days]")).to_have_attribute("aria-pressed", "true")
    expect(kpi(page, "inflight")).to_have_attribute("data-widget", "kpi?gran=minutes&metric=inflight")
    expect(card.locator("[data-f=value]")).to_have_text(NUMBER)
    expect(kpi(page, "failed").locator("[data-f=window]")).to_have_text("last 14 days")

    card.locator("button[data-gran=minutes]").click()  # back to the default: off the URL
    assert page.url.endswith(f"{OVERVIEW}?kpi=failed:days"), page.url


def test_chart_modal(page: Page, live_server: LiveServer, simulated_fleet: SimulatedFleet) -> None:
    """The chart modal loads uPlot only when opened, draws per channel, updates live, traps focus, closes on Escape."""
    open_page(page, live_server)
    assert not page.evaluate("() => performance.getEntriesByType('resource').some((e) => e.name.includes('uPlot'))"), (
        "uPlot was loaded before the chart was opened"
    )
    opener = kpi(page, "completed").locator("[data-open-chart]")
    opener.click()
    dialog = page.locator("#chart-modal")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#chart-modal-title")).to_have_text("Completed per channel")
    body = dialog.locator("[data-chart]")
    expect(body).to_have_attribute("data-widget", "chart?gran=minutes&metric=completed")
    canvas = body.locator(".uplot canvas")
    expect(canvas).to_have_count(1, timeout=15_000)
    expect(body.locator(".u-legend")).to_contain_text("email")
    summary = body.locator("[data-f=summary]")
    expect(summary).to_have_text(re.compile(r"^[\d,]+ completed in the last 60 min across \d+ channels"))

    # Live: the summary moves on while the very same canvas stays.
    tag(canvas, "canvas")
    first = summary.inner_text()
    expect(summary).not_to_have_text(first, timeout=20_000)
    assert tagged(canvas, "canvas"), "the plot was rebuilt instead of updated"

    # Another metric inside the modal swaps the subscription.
    dialog.locator("button[data-chart-metric=failed]").click()
    expect(body).to_have_attribute("data-widget", "chart?gran=minutes&metric=failed")
    expect(dialog.locator("#chart-modal-title")).to_have_text("Failed per channel")
    expect(summary).to_have_text(re.compile(r" failed in the last 60 min"), timeout=15_000)

    # Focus stays in the modal.
    for _ in range(12):
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.getElementById('chart-modal').contains(document.activeElement)")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => document.getElementById('chart-modal').contains(document.activeElement)")

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()
    page.wait_for_function(
        "() => window.__e2eWs.sent.some((f) => f.includes('unsub') && f.includes('chart?gran=minutes&metric=failed'))"
    )
    assert not subscribed(page, "chart?gran=minutes&metric=failed")
    expect(body.locator(".uplot")).to_have_count(0)


@pytest.fixture
def tight_fleet(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    """A server with a 5 s SLA and stuck threshold, and a fleet whose one silent runner stops beating at once."""
    server = LiveServer(redis_url, prefix, env={"JOBPULSE_SLA": "*=5", "JOBPULSE_STUCK_AFTER_S": "5"}).start()
    fleet = SimulatedFleet(
        server, "--runners", "4", "--channels", "3", "--rate", "10", "--seed", "11",
        "--time-scale", "0.3", "--silent-after", "1", "--heartbeat", "1",
    )  # fmt: skip
    try:
        fleet.wait_for_runners(3)
        yield server
    finally:
        fleet.stop()
        output = server.finish()
    assert "Traceback" not in output, f"the server logged a traceback:\n{output}"


def test_hot_issues_for_silent_runner_and_backlog(page: Page, tight_fleet: LiveServer) -> None:
    """The silent runner and the SLA-breaking backlog raise hot issues; an escalating alert keeps its node."""
    open_page(page, tight_fleet)
    issues = page.locator("[data-widget=hot_issues]")
    silent = issues.locator("li[data-rule=silent_runner]")
    expect(silent).to_have_count(1, timeout=20_000)
    expect(silent.locator(".issue-title")).to_have_text(re.compile(r"^runner .+ silent$"))
    expect(silent.locator("a.cta")).to_have_attribute("href", re.compile(r"^/admin/jobs/runners\?q=.+"))
    expect(silent.locator(".badge")).to_have_text(re.compile(r"^(Warning|Critical)$"))
    tag(silent, "silent")

    backlog = issues.locator('li[data-key="backlog_sla:webhooks-legacy"]')
    expect(backlog.locator(".issue-title")).to_have_text("webhooks-legacy: backlog over its SLA", timeout=20_000)
    expect(backlog.locator("a.cta")).to_have_attribute(
        "href", "/admin/jobs/table?q=status%3Aqueued%20channel%3Awebhooks-legacy&sort=queued"
    )
    row = page.locator('[data-widget=backlogs] li[data-key="webhooks-legacy"]')
    expect(row.locator(".ratio")).to_have_text(re.compile(r"^\d+\.\d× SLA$"))
    expect(row).to_have_attribute("data-level", re.compile(r"^(over|critical)$"))
    # Capped at 100 % however far over the SLA it is.
    expect(row).to_have_attribute("data-level", "critical", timeout=20_000)
    assert row.locator(".bar-fill").evaluate("(n) => n.style.width") == "100%"

    # Stale, then offline: the alert escalates in its same row.
    expect(silent.locator(".badge")).to_have_text("Critical", timeout=20_000)
    assert tagged(silent, "silent"), "the silent-runner alert was re-created instead of updated"
    service = page.locator("[data-widget=service]")
    expect(service.locator("[data-f=pill]")).to_have_text("Critical")
    expect(service.locator("[data-f=alerts]")).to_have_text(re.compile(r"^\d+ open alerts?$"))


def test_logs_page_streams_and_filters(page: Page, live_server: LiveServer, redis_url: str) -> None:
    """A rejected message shows as a warning row; the text and level filters hold while rows stream in."""
    with Source.connect(redis_url, live_server.prefix) as source:
        open_page(page, live_server, LOGS)
        expect(page.locator("h1")).to_have_text("Service Logs")
        rows = page.locator("[data-widget=logs] tbody[data-f=rows] tr")
        expect(page.locator("[data-widget=logs] [data-f=empty]")).to_be_visible()

        source.publish(b"not json at all {")
        first = rows.first
        expect(first.locator(".badge")).to_have_text("warning")
        expect(first.locator(".logger")).to_have_text("jobpulse.native")
        expect(first.locator(".msg")).to_contain_text("rejected a message")
        expect(first.locator(".msg")).to_have_attribute("title", re.compile(r"^rejected a message \(json"))
        expect(first.locator(".time")).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
        expect(first.locator("[data-since]")).to_have_text(re.compile(r"^\d+s ago$"))
        first.locator(".msg").click()
        expect(first.locator(".msg")).to_have_attribute("aria-expanded", "true")

        # A text filter, then rows streaming in: only the matching ones show.
        page.locator("#logs-q").fill("schema")
        expect(rows).to_have_count(0)
        expect(page.locator("[data-widget=logs] [data-f=empty]")).to_have_text("No log rows match the filter.")
        assert "q=schema" in page.url
        source.publish({"v": 1, "type": "job", "src": "e2e-bad", "seq": 1, "ts": time.time()})
        expect(rows).to_have_count(1)
        expect(rows.first.locator(".msg")).to_contain_text("schema")
        source.publish(b"\x00 more garbage")
        expect(page.locator("[data-widget=logs] [data-f=summary]")).to_have_text("1 of the latest 3 match")
        expect(rows).to_have_count(1)

        # The level filter: errors only hides these warnings; the URL carries both filters across a reload.
        page.locator("button[data-level=error]").click()
        expect(rows).to_have_count(0)
        assert "level=error" in page.url and "q=schema" in page.url, page.url
        page.reload()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
        expect(page.locator("#logs-q")).to_have_value("schema")
        expect(page.locator("button[data-level=error]")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("[data-widget=logs] [data-f=summary]")).to_have_text("0 of the latest 3 match")
        page.locator("button[data-level=warning]").click()
        expect(rows).to_have_count(1)
        page.locator("#logs-q").fill("")
        expect(rows).to_have_count(3)
        assert page.url.endswith(f"{LOGS}?level=warning"), page.url


def no_horizontal_overflow(page: Page) -> None:
    overflow = page.evaluate(
        """() => {
            const out = [];
            const doc = document.documentElement;
            if (doc.scrollWidth > doc.clientWidth) out.push(`document ${doc.scrollWidth} > ${doc.clientWidth}`);
            for (const node of document.querySelectorAll("main, main .card, main section, main .grid2")) {
                if (node.scrollWidth > node.clientWidth + 1) {
                    out.push(`${node.className || node.tagName} ${node.scrollWidth} > ${node.clientWidth}`);
                }
            }
            return out;
        }"""
    )
    assert overflow == [], f"horizontal overflow at {page.viewport_size}: {overflow}"


def test_first_load_weight_and_viewports(page: Page, live_server: LiveServer, simulated_fleet: SimulatedFleet) -> None:
    """The overview's HTML, JS, CSS and first second of websocket data weigh under 100 KB as sent; no overflow at
    720p or 4K."""
    load = FirstLoad(page)
    page.set_viewport_size({"width": 1280, "height": 720})
    open_page(page, live_server)
    expect(page.locator('[data-widget=backlogs] li[data-key="webhooks-legacy"]')).to_have_count(1, timeout=20_000)
    load.weigh()
    assert not [url for url in load.sizes if "uPlot" in url], "uPlot is part of the first load"
    load.assert_scripts_and_styles()
    load.assert_within_budget()

    no_horizontal_overflow(page)
    page.set_viewport_size({"width": 3840, "height": 2160})
    expect(page.locator("h1")).to_have_css("font-size", "30px")  # app.css scales up at 2400px and wider
    no_horizontal_overflow(page)
    kpi(page, "completed").locator("[data-open-chart]").click()
    expect(page.locator("#chart-modal .uplot canvas")).to_have_count(1, timeout=15_000)
    no_horizontal_overflow(page)
    page.keyboard.press("Escape")

    page.goto(live_server.url + LOGS)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    no_horizontal_overflow(page)
    page.set_viewport_size({"width": 1280, "height": 720})
    no_horizontal_overflow(page)


def test_the_demos_synthetic_history_is_drawn_and_labelled(page: Page, redis_url: str, prefix: str) -> None:
    """With the demo's four weeks of synthetic hours in the store, a KPI card's 14 d view draws them and says, beside
    its window, that they are synthetic demo history; its 60 min view (jobpulse's own minutes) says nothing of it."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from server.simulator.history import backfill

    # Playwright's sync API holds this thread's event loop: the demo's (async) backfill runs in a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, backfill(redis_url, prefix, time.time(), rate=20.0, seed=5)).result()
    server = LiveServer(redis_url, prefix).start()
    try:
        open_page(page, server)
        card = kpi(page, "completed")
        expect(card.locator("[data-f=window]")).not_to_contain_text("synthetic")
        card.locator("button[data-gran=days]").click()
        expect(card.locator("[data-f=window]")).to_contain_text("synthetic demo history before", timeout=10_000)
        expect(card).to_have_attribute("data-synthetic", "true")
        expect(card.locator("[data-f=value]")).to_have_text(re.compile(r"^\d{1,3}(,\d{3})+"))
        expect(card.locator("path.line.main:not(.partial)")).to_have_attribute("d", re.compile(r"^M.*L.*L"))
    finally:
        server.close()
