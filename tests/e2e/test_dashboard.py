"""The Compact Jobs Dashboard in a real Chromium, against a real server and a real Redis.

Each test publishes native-protocol messages (docs/protocol.md section 1.1) to
its own `P:events` and watches the page change. Deadlines are generous and
functional (`expect(...)` polls until true); nothing sleeps to assert.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer
from tests.e2e.support import (
    FirstLoad,
    Locator,
    Page,
    Source,
    expect,
    install_ws_probe,
    still_tagged,
    tag,
    wait_for_quiet_tick,
)

pytestmark = pytest.mark.e2e

DASHBOARD = "/admin/jobs"
COUNTERS = ("pending", "running", "scheduled", "completed", "failed")


@pytest.fixture
def source(redis_url: str, prefix: str) -> Iterator[Source]:
    """Publishes native-protocol messages on this test's prefix."""
    with Source.connect(redis_url, prefix) as source:
        yield source


def open_dashboard(page: Page, server: LiveServer) -> Page:
    """Load the dashboard; return once its socket is live and the first snapshots are drawn."""
    install_ws_probe(page)
    page.goto(server.url + DASHBOARD)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    # The snapshots follow the welcome in one batch; drawn, the footer's event count is a number, not "–".
    expect(page.locator("[data-widget=health] [data-f=events]")).to_have_text(re.compile(r"^\d"), timeout=10_000)
    return page


@pytest.fixture
def dashboard(page: Page, live_server: LiveServer) -> Page:
    """The dashboard of this test's live server, loaded and live."""
    return open_dashboard(page, live_server)


def counter(page: Page, key: str) -> Locator:
    return page.locator(f'[data-widget=counters] [data-key="{key}"] [data-f=v]')


def row(page: Page, widget: str, key: str) -> Locator:
    return page.locator(f'[data-widget={widget}] tbody[data-f=rows] tr[data-key="{key}"]')


def observe(page: Page, selector: str, ignore: str = "") -> None:
    """Record the mutations under `selector` in `window.__e2eMutations`, except inside nodes matching `ignore`."""
    page.evaluate(
        """([selector, ignore]) => {
            window.__e2eMutations = [];
            const root = document.querySelector(selector);
            new MutationObserver((records) => {
                for (const r of records) {
                    const node = r.target.nodeType === Node.ELEMENT_NODE ? r.target : r.target.parentElement;
                    if (ignore && node && node.closest(ignore)) continue;
                    window.__e2eMutations.push(`${r.type} on ${node ? node.outerHTML.slice(0, 120) : "?"}`);
                }
            }).observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
        }""",
        [selector, ignore],
    )


def mutations(page: Page) -> list[str]:
    return list(page.evaluate("() => window.__e2eMutations"))


def test_dashboard_renders(dashboard: Page) -> None:
    """The dashboard renders its title, the seven widgets and five counters, and the indicator reaches live."""
    page = dashboard
    expect(page).to_have_title(re.compile(r"^Jobs Dashboard · jobpulse$"))
    expect(page.locator("h1")).to_have_text("Jobs Dashboard")
    for widget in ("counters", "published", "live_jobs", "failures", "scheduled", "runners", "health"):
        expect(page.locator(f"[data-widget={widget}]")).to_have_count(1)
    cards = page.locator("[data-widget=counters] [data-key]")
    expect(cards).to_have_count(5)
    assert [cards.nth(i).get_attribute("data-key") for i in range(5)] == list(COUNTERS)
    for key in COUNTERS:
        expect(counter(page, key)).to_have_text("0")  # a fresh source: the snapshot says 0, not "–"
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#conn .conn-label")).to_have_text("live")
    expect(page.locator("#banner")).to_be_hidden()


def test_counter_changes_in_place(dashboard: Page, source: Source) -> None:
    """A depth report changes the Pending counter's text in place: the same DOM node, no re-render."""
    page = dashboard
    value = counter(page, "pending")
    expect(value).to_have_text("0")
    handle = value.element_handle()
    tag(handle, "pending-value")
    # Elements added or removed under the counters would mean a re-render; text changes are expected.
    page.evaluate(
        """() => {
            window.__e2eStructural = 0;
            new MutationObserver((records) => {
                for (const r of records) {
                    for (const n of [...r.addedNodes, ...r.removedNodes]) {
                        if (n.nodeType === Node.ELEMENT_NODE) window.__e2eStructural += 1;
                    }
                }
            }).observe(document.querySelector("[data-widget=counters]"), {subtree: true, childList: true});
        }"""
    )

    source.depth(email={"queued": 7, "inflight": 2}, reports={"queued": 5, "scheduled": 3})
    expect(value).to_have_text("12")
    expect(counter(page, "running")).to_have_text("2")
    expect(counter(page, "scheduled")).to_have_text("3")
    source.depth(email={"queued": 1234, "inflight": 2})
    expect(value).to_have_text("1,239")

    assert handle.evaluate("(node) => node.isConnected && node.__e2eTag === 'pending-value'")
    assert still_tagged(page, "[data-widget=counters] [data-key=pending] [data-f=v]", "pending-value")
    assert page.evaluate("() => window.__e2eStructural") == 0


def test_runner_rows_and_ticking_heartbeat(dashboard: Page, source: Source) -> None:
    """A runner appears online, its heartbeat age ticks in the browser, and a second runner leaves its row untouched."""
    page = dashboard
    source.heartbeat("e2e-runner-a", concurrency=4)
    first = row(page, "runners", "e2e-runner-a")
    expect(first.locator(".badge")).to_have_text("online")
    expect(first.locator(".id")).to_have_text("e2e-runner-a")
    expect(first.locator("td").nth(3)).to_have_text("0/4")
    expect(page.locator("[data-widget=runners] [data-f=empty]")).to_be_hidden()

    # The age is the browser's doing: nothing is published while it goes from "0s ago" onwards.
    age = first.locator("[data-since]")
    expect(age).to_have_text(re.compile(r"^\d+s ago$"))
    before = int(age.inner_text().split("s")[0])
    wait_for_quiet_tick(page, '[data-widget=runners] tr[data-key="e2e-runner-a"] [data-since]')
    expect(age).to_have_text(re.compile(r"^\d+s ago$"))
    assert int(age.inner_text().split("s")[0]) > before

    tag(first.element_handle(), "runner-a")
    observe(page, '[data-widget=runners] tr[data-key="e2e-runner-a"]', ignore="[data-since]")
    source.heartbeat("e2e-runner-b", concurrency=2, active=[])
    second = row(page, "runners", "e2e-runner-b")
    expect(second.locator(".badge")).to_have_text("online")
    expect(page.locator("[data-widget=runners] tbody[data-f=rows] tr")).to_have_count(2)
    expect(page.locator("[data-widget=runners] [data-f=counts]")).to_have_text("2 online")
    assert still_tagged(page, '[data-widget=runners] tr[data-key="e2e-runner-a"]', "runner-a")
    assert mutations(page) == [], "the first runner's row changed although its data did not"


def test_job_tables(dashboard: Page, source: Source) -> None:
    """Failures show their error line; a queued job turns running in its same Live Jobs row; schedules count down."""
    page = dashboard

    failed = source.job(
        "failed",
        "j-fail",
        src="e2e-worker",
        runner="e2e-worker",
        fn="mail.send_welcome",
        channel="email",
        attempt=3,
        max_attempts=3,
        started_at=time.time() - 1.3,
        duration=1.3,
        error="SMTPServerDisconnected: Connection unexpectedly closed\nwhile sending to 77812",
        traceback='Traceback (most recent call last):\n  File "mail.py", line 88',
    )
    failure = row(page, "failures", failed["id"])
    expect(failure.locator(".err")).to_have_text("SMTPServerDisconnected: Connection unexpectedly closed")
    expect(failure.locator(".id")).to_have_text("j-fail")
    expect(failure.locator(".small")).to_have_text("mail.send_welcome · attempt 3")
    expect(failure.locator(".chip")).to_have_text("email")
    expect(failure.locator("[data-since]")).to_have_text(re.compile(r"^\d+s ago$"))
    expect(counter(page, "failed")).to_have_text("1")

    source.job("queued", "j-live", fn="reports.build", queued_at=time.time())
    live = row(page, "live_jobs", "j-live")
    badge = live.locator(".badge")
    expect(badge).to_have_text("queued")
    expect(page.locator("[data-widget=live_jobs] [data-f=queued]")).to_have_text("1")
    tag(live.element_handle(), "j-live")
    tag(badge.element_handle(), "j-live-badge")
    # The runner of this job never beats, so no heartbeat's `active` list can overrule the job events.
    source.job("started", "j-live", src="e2e-quiet-runner", runner="e2e-quiet-runner", fn="reports.build")
    expect(badge).to_have_text("running")
    expect(badge).to_have_class("badge running")
    expect(live.locator(".small")).to_have_text("default · e2e-quiet-runner")
    expect(page.locator("[data-widget=live_jobs] [data-f=running]")).to_have_text("1")
    expect(page.locator("[data-widget=live_jobs] [data-f=queued]")).to_have_text("0")
    assert still_tagged(page, '[data-widget=live_jobs] tr[data-key="j-live"]', "j-live")
    assert still_tagged(page, '[data-widget=live_jobs] tr[data-key="j-live"] .badge', "j-live-badge")
    # The page orders Live Jobs by the rows' places (no order list): running first, each part in arrival order.
    for job_id in ("j-q1", "j-q2", "j-q3"):
        source.job("queued", job_id, fn="reports.build", queued_at=time.time())
    source.job("started", "j-q2", src="e2e-quiet-runner", runner="e2e-quiet-runner", fn="reports.build")
    keys = page.locator("[data-widget=live_jobs] tbody tr")
    expect(keys).to_have_count(4)
    expect(page.locator("[data-widget=live_jobs] tr[data-key=j-q2] .badge")).to_have_text("running")
    assert [keys.nth(i).get_attribute("data-key") for i in range(4)] == ["j-live", "j-q2", "j-q1", "j-q3"]

    source.job("scheduled", "j-later", fn="reports.nightly", channel="reports", run_at=time.time() + 125)
    later = row(page, "scheduled", "j-later")
    expect(later.locator("[data-until]")).to_have_text(re.compile(r"^in 2m \d+s$"))
    expect(later.locator(".id")).to_have_text("j-later")
    expect(later.locator(".chip")).to_have_text("reports")
    expect(page.locator("[data-widget=scheduled] [data-f=total]")).to_have_text("1")
    wait_for_quiet_tick(page, '[data-widget=scheduled] tr[data-key="j-later"] [data-until]')  # it counts down
    expect(later.locator("[data-until]")).to_have_text(re.compile(r"^in [12]m \d+s$"))


def test_reconnects_after_server_restart(dashboard: Page, live_server: LiveServer, source: Source) -> None:
    """When the server goes away the page says reconnecting; it comes back by itself, live, with fresh state."""
    page = dashboard
    source.depth(email={"queued": 3})
    expect(counter(page, "pending")).to_have_text("3")
    page.evaluate("() => { window.__e2eSameDocument = true; }")  # gone, should the page reload itself

    live_server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("reconnecting")

    live_server.start()
    # The page backs off with full jitter (0.5 s, 1 s, 2 s, ... caps) while the server is down.
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=20_000)
    expect(banner).to_be_hidden()
    assert page.evaluate("() => window.__e2eSameDocument === true"), "the page reloaded instead of reconnecting"
    expect(counter(page, "pending")).to_have_text("3")  # the new process reconciled P:depth
    source.depth(email={"queued": 8})
    expect(counter(page, "pending")).to_have_text("8")


def test_malformed_messages_do_not_break_the_page(dashboard: Page, source: Source) -> None:
    """Garbage, schema violations and a future version are counted as rejected; the counters keep updating."""
    page = dashboard
    rejected = page.locator("[data-widget=health] [data-f=rejected]")
    expect(rejected).to_have_text("0")

    source.publish(b"\x00\xff\xfe not json at all")  # json
    source.publish({"v": 1, "type": "job", "src": "e2e-bad", "seq": 1, "ts": time.time()})  # schema
    future = source.depth_message(email={"queued": 99})
    future["v"] = 99
    source.publish(future)  # version
    source.publish({"v": 1, "type": "mystery", "src": "e2e-bad", "seq": 2, "ts": time.time()})  # unknown_type
    good = source.depth_message(email={"queued": 4})
    source.publish([good, {"v": 1, "type": "depth", "src": "e2e-bad", "seq": 3}])  # a batch: one good, one schema

    expect(rejected).to_have_text("5")
    expect(counter(page, "pending")).to_have_text("4")
    source.depth(email={"queued": 6})
    expect(counter(page, "pending")).to_have_text("6")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    reasons = json.loads(rejected.get_attribute("title") or "{}")
    assert reasons == {"json": 1, "schema": 2, "version": 1, "unknown_type": 1}


def test_live_toggle_pauses_and_catches_up(dashboard: Page, live_server: LiveServer, source: Source) -> None:
    """The Live toggle pauses updates (indicator paused, counters frozen) and, pressed again, resumes and catches up."""
    page = dashboard
    value = counter(page, "pending")
    source.depth(email={"queued": 2})
    expect(value).to_have_text("2")

    button = page.locator("#btn-live")
    button.click()
    expect(page.locator("#conn")).to_have_attribute("data-state", "paused")
    expect(button).to_have_attribute("aria-pressed", "false")
    expect(button).to_have_text("Paused")
    observe(page, "[data-widget=counters]")

    source.depth(email={"queued": 9})
    # Sync point: the server has folded the change (so a live page would have it within a tick)...
    deadline = time.monotonic() + 5
    while page.request.get(f"{live_server.url}/api/widgets/counters").json()["data"]["pending"]["v"] != 9:
        assert time.monotonic() < deadline, "the server never saw the depth change"
        time.sleep(0.05)
    # ...and a live page would have drawn it well within half a second; the paused one must not.
    page.wait_for_timeout(500)
    expect(value).to_have_text("2")
    assert mutations(page) == []

    button.click()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(value).to_have_text("9")
    source.depth(email={"queued": 10})
    expect(value).to_have_text("10")


def test_first_load_weight(page: Page, live_server: LiveServer, source: Source) -> None:
    """HTML, JS, CSS and the first second of websocket data of a busy dashboard weigh under 100 KB as sent."""
    # A busy source: full tables everywhere, so the first snapshots are as large as they get.
    for i in range(25):
        source.heartbeat(f"e2e-runner-{i:02d}", active=[])
    now = time.time()
    batch = []
    for i in range(15):
        batch.append(source.job_message("queued", f"j-q{i:02d}", fn="reports.build", queued_at=now))
        batch.append(source.job_message("scheduled", f"j-s{i:02d}", fn="reports.nightly", run_at=now + 600 + i))
        batch.append(
            source.job_message(
                "failed", f"j-f{i:02d}", src="e2e-worker", runner="e2e-worker", error="ValueError: " + "x" * 300
            )
        )
    source.publish(batch)
    source.depth(email={"queued": 15, "scheduled": 15})

    load = FirstLoad(page)
    open_dashboard(page, live_server)
    for widget, rows in (("runners", 20), ("failures", 10), ("live_jobs", 10), ("scheduled", 10)):
        expect(page.locator(f"[data-widget={widget}] tbody[data-f=rows] tr")).to_have_count(rows)
    load.weigh()
    load.assert_scripts_and_styles()
    assert any(url.endswith(DASHBOARD) for url in load.sizes), sorted(load.sizes)
    assert load.frames, "no websocket data arrived"
    load.assert_within_budget()


def test_rows_open_job_details_and_runners(dashboard: Page, source: Source) -> None:
    """A job row opens the job's details modal (click or Enter); a runner row opens the runner's detail drawer."""
    page = dashboard
    failed = source.job(
        "failed", "j-open", src="e2e-worker", runner="e2e-worker", fn="mail.send_welcome", channel="email",
        error="ValueError: no such user", traceback="Traceback (most recent call last):\nValueError: no such user",
    )  # fmt: skip
    failure = row(page, "failures", failed["id"])
    expect(failure).to_be_visible()
    failure.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("j-open")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    failure.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_contain_text("ValueError: no such user")
    page.keyboard.press("Escape")

    # A runner row opens its detail drawer, which links on to the Runners console.
    source.heartbeat("e2e-runner-9")
    runner = row(page, "runners", "e2e-runner-9")
    runner.click()
    drawer = page.locator("dialog.rdrawer")
    expect(drawer.locator(".ad-title")).to_have_text("Runner e2e-runner-9")
    expect(drawer.locator('[data-f="events"] tr').first).to_contain_text("joined")
    drawer.get_by_role("link", name="Open in the Runners console").click()
    expect(page).to_have_url(re.compile(r"/admin/jobs/runners\?q=e2e-runner-9$"))


def test_per_channel_chart_from_jobs_published(dashboard: Page, source: Source) -> None:
    """ "Per channel" on the Jobs Published card opens the full chart of published jobs per channel, live."""
    page = dashboard
    for n in range(3):
        source.job("queued", f"pub-email-{n}", channel="email")
    source.job("queued", "pub-reports-0", channel="reports")
    opener = page.locator("[data-widget=published] [data-open-chart]")
    opener.click()
    dialog = page.locator("#chart-modal")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#chart-modal-title")).to_have_text("Published per channel")
    body = dialog.locator("[data-chart]")
    expect(body).to_have_attribute("data-widget", "chart?gran=minutes&metric=published")
    expect(body.locator(".uplot canvas")).to_have_count(1, timeout=15_000)
    legend = body.locator(".u-legend")
    expect(legend).to_contain_text("email")
    expect(legend).to_contain_text("reports")
    summary = body.locator("[data-f=summary]")
    expect(summary).to_have_text(re.compile(r"^4 published in the last 60 min across 2 channels"))
    source.job("queued", "pub-email-3", channel="email")
    expect(summary).to_have_text(re.compile(r"^5 published in the last 60 min across 2 channels"))
    # Settings: stacked bands (each channel on the ones after it, the top the total), and the range, live.
    dialog.get_by_role("button", name="Stacked").click()
    expect(dialog.get_by_role("button", name="Stacked")).to_have_attribute("aria-pressed", "true")
    expect(body).to_have_attribute("data-mode", "stacked")
    page.wait_for_function(
        """() => { const u = document.querySelector('#chart-modal .uplot');
                   return u && [...u.querySelectorAll('.u-legend .u-series')].length >= 3; }"""
    )
    source.job("queued", "pub-reports-1", channel="reports")
    expect(summary).to_have_text(re.compile(r"^6 published in the last 60 min across 2 channels"))
    dialog.get_by_role("button", name="24 h").click()
    expect(body).to_have_attribute("data-widget", "chart?gran=hours&metric=published")
    expect(summary).to_have_text(re.compile(r"^6 published in the last 24 h"))
    dialog.get_by_role("button", name="Lines").click()
    expect(body).to_have_attribute("data-mode", "lines")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()


def set_hidden(page: Page, hidden: bool) -> None:
    """Make the tab hidden or visible as a browser does: `document.hidden` flips, then `visibilitychange` fires."""
    page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
            Object.defineProperty(document, "visibilityState", {
                configurable: true, get: () => (hidden ? "hidden" : "visible"),
            });
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_hidden_tab_receives_nothing_and_resyncs_when_visible(
    dashboard: Page, live_server: LiveServer, source: Source
) -> None:
    """A hidden tab unsubscribes (the server sends it nothing) and, visible again, resumes and catches up."""
    page = dashboard
    value = counter(page, "pending")
    source.depth(email={"queued": 3})
    expect(value).to_have_text("3")

    set_hidden(page, True)
    page.wait_for_function("() => window.__e2eWs.sent.some((f) => f.includes('\"unsub\"'))")
    expect(page.locator("#conn")).to_have_attribute("data-state", "paused")
    page.wait_for_timeout(300)  # let a tick already on the wire arrive
    before = page.evaluate("() => window.__e2eWs.frames")

    for queued in range(4, 12):
        source.depth(email={"queued": queued})
    deadline = time.monotonic() + 5
    while page.request.get(f"{live_server.url}/api/widgets/counters").json()["data"]["pending"]["v"] != 11:
        assert time.monotonic() < deadline, "the server never saw the depth change"
        time.sleep(0.05)
    page.wait_for_timeout(600)  # several ticks: a subscribed page would have had patches by now
    assert page.evaluate("() => window.__e2eWs.frames") == before, "a hidden tab still received widget frames"
    expect(value).to_have_text("3")

    set_hidden(page, False)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(value).to_have_text("11")
    sub = page.evaluate("() => window.__e2eWs.sent.filter((f) => f.includes('\"sub\"')).at(-1)")
    assert '"counters"' in sub and '"resume"' in sub, sub
    source.depth(email={"queued": 12})
    expect(value).to_have_text("12")


def test_the_minute_under_way_is_drawn_at_its_pace_not_as_a_dip(dashboard: Page, source: Source) -> None:
    """Jobs Published: the current minute's count, still growing, is drawn dashed at the pace it is on (count over
    the share of the minute gone), from the previous minute's point; the solid line ends at the last full minute."""
    page = dashboard
    # Past the first tenth of a minute (before it, a pace says too little and nothing is drawn).
    page.wait_for_function("() => new Date().getSeconds() >= 8 && new Date().getSeconds() <= 50", timeout=60_000)
    for n in range(6):
        source.job("queued", f"pace-{n}", channel="email")
    partial = page.locator("[data-widget=published] svg path.partial")
    expect(partial).to_have_attribute("d", re.compile(r"^M[\d.]+,[\d.]+(L|h)"), timeout=10_000)
    geometry = page.evaluate(
        """() => {
            const svg = document.querySelector("[data-widget=published] svg");
            const d = svg.querySelector("path.partial").getAttribute("d");
            const end = d.match(/(?:L|M)([\\d.]+),([\\d.]+)(?:h-0\\.1)?$/);
            const line = svg.querySelector("path.line:not(.partial)").getAttribute("d");
            const xs = [...line.matchAll(/([\\d.]+),[\\d.]+/g)].map((m) => Number(m[1]));
            return {endX: Number(end[1]), endY: Number(end[2]), lineMaxX: Math.max(-1, ...xs)};
        }"""
    )
    assert geometry["endX"] == 600.0, geometry  # the last slot, the minute under way
    assert geometry["lineMaxX"] < 600.0, geometry  # the solid line stops before it
    summary = page.locator("[data-widget=published] [data-f=summary]")
    expect(summary).to_contain_text("this minute so far")


def test_slash_searches_from_every_page(dashboard: Page, live_server: LiveServer) -> None:
    """The footer offers "/ search" on every page: on one without a search box (the dashboard), "/" opens the job
    search, ready to type into; on a page with one, it focuses it."""
    page = dashboard
    expect(page.locator("footer")).to_contain_text("search")
    page.locator("body").press("/")
    expect(page).to_have_url(f"{live_server.url}/admin/jobs/table")
    expect(page.locator("#jt-q")).to_be_focused()
    page.keyboard.type("status:running")
    expect(page.locator("#jt-q")).to_have_value("status:running")


def test_a_recent_failure_offers_details_and_retry(dashboard: Page, source: Source) -> None:
    """Recent Failures: each row has its actions beside it. Details opens the job; Retry is enabled while the job
    is failed for good, sends job.retry for it, and is disabled, saying why, once the job is no longer failed."""
    page = dashboard
    source.job("queued", "j-fail-retry", channel="email", fn="mail.send_x", attempt=1, max_attempts=1)
    source.job("failed", "j-fail-retry", src="r-e2e", runner="r-e2e", error="SMTPServerDisconnected: gone")
    row = page.locator('[data-widget=failures] tbody tr[data-job="j-fail-retry"]')
    retry = row.get_by_role("button", name="Retry job j-fail-retry")
    expect(retry).to_be_enabled(timeout=10_000)
    row.get_by_role("button", name="Details of job j-fail-retry").click()
    expect(page.locator("#job-modal")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#job-modal")).to_be_hidden()
    retry.click()
    page.wait_for_function(
        "() => window.__e2eWs.sent.some((f) => f.includes('\"job.retry\"') && f.includes('j-fail-retry'))"
    )
    # The job system queues it again (here, this test's producer says so): no longer failed, Retry says why not.
    source.job("queued", "j-fail-retry", channel="email", fn="mail.send_x", attempt=2)
    expect(retry).to_be_disabled()
    expect(retry).to_have_attribute("title", re.compile("queued now"))


def test_the_page_reads_frames_compressed_once_for_every_client(
    page: Page, redis_url: str, prefix: str, source: Source
) -> None:
    """With JOBPULSE_WS_DEFLATE, Chromium negotiates permessage-deflate without context takeover (server/wsdeflate.py)
    and reads the hub's shared compressed frames: the snapshots and every later patch draw as without it."""
    server = LiveServer(redis_url, prefix, env={"JOBPULSE_WS_DEFLATE": "1"}, cli=True).start()
    try:
        open_dashboard(page, server)
        for n in range(5):
            source.depth(email={"queued": 10 + n, "inflight": n})
        expect(counter(page, "pending")).to_have_text("14")
        expect(counter(page, "running")).to_have_text("4")
        negotiated = page.evaluate("() => window.__e2eWs.extensions")
        assert "permessage-deflate" in negotiated and "server_no_context_takeover" in negotiated, negotiated
        stats = json.loads(page.evaluate("() => fetch('/api/stats').then((r) => r.text())"))
        assert stats["hub"]["frame_writes"] > 0  # the shared frames were written, compressed
    finally:
        output = server.finish()
    assert "Traceback" not in output, output
