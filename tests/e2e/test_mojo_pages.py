"""The pages on a real django-mojo 1.39.10 deployment (JOBPULSE_SOURCE=mojo): the same pages, no page knows the source.

django-mojo's real engine ("page-engine", on default and priority) and scheduler run on a private Redis and a
Postgres database of their own (tests/mojo_cluster, one deployment for the module); each test gets a jobpulse of
its own reading it, as tests/integration/test_mojo_source.py does. Jobs are published with django-mojo's own
`publish`, and what the operator does from a page is checked in django-mojo's own rows and queues. Deadlines are
generous and functional (`expect(...)` and `wait_for_function` poll until true); nothing sleeps to assert.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer
from tests.e2e.support import Locator, Page, expect, install_ws_probe, preview_purge
from tests.faultproxy import FaultProxy
from tests.mojo_cluster.cluster import MojoCluster, deployment
from tests.outage import HEALED_BOUND_S, SAID_BOUND_S, SAID_GOAL_S

pytestmark = [pytest.mark.e2e, pytest.mark.mojo, pytest.mark.timeout(180)]

PREFIX = "acme:jobs"
ENGINE = "page-engine"
UNSERVED = "bulk"  # a channel no engine consumes: what is published there waits
DASHBOARD = "/admin/jobs"
RUNNERS = "/admin/jobs/runners"
TABLE = "/admin/jobs/table"
MANAGE = "/admin/jobs/manage"
WAIT = 20_000  # ms: django-mojo's engine, jobpulse's polls (0.5 s) and the page, end to end

# Records every text the badge of a runner's card shows from now on (the card is found again if re-created), so a
# test can tell it went through "stale" on its way to "offline" however briefly it stayed there.
BADGE_RECORDER = """
(runner) => {
  window.__e2eBadges = [];
  const record = () => {
    const badge = document.querySelector(`#fleet .rcard[data-key="${runner}"] .badge`);
    const text = badge ? badge.textContent : "(gone)";
    if (window.__e2eBadges.at(-1) !== text) window.__e2eBadges.push(text);
  };
  record();
  new MutationObserver(record).observe(document.querySelector("#fleet"),
    { subtree: true, childList: true, characterData: true, attributes: true });
}
"""


@pytest.fixture(scope="module")
def mojo() -> Iterator[MojoCluster]:
    """django-mojo with one engine on default and priority, and its scheduler; "bulk" has no engine."""
    with deployment(ENGINE, prefix=PREFIX, channels=("default", "priority", UNSERVED),
                    settings={"JOBS_VISIBILITY_TIMEOUT_MS": 5000}) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture
def server(mojo: MojoCluster, prefix: str) -> Iterator[LiveServer]:
    """A jobpulse of this test's own on the deployment (dev sign-in: everyone is admin)."""
    live = LiveServer(mojo.redis_url, prefix, env=mojo.jobpulse_env()).start()
    try:
        yield live
    finally:
        output = live.finish()
        assert "Traceback" not in output, output


# -- helpers -----------------------------------------------------------------------------------------


def open_page(page: Page, server: LiveServer, path: str) -> Page:
    """Load a page; return once its socket is live."""
    install_ws_probe(page)
    page.goto(server.url + path)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    return page


def card(page: Page, runner: str) -> Locator:
    return page.locator(f'#fleet .rcard[data-key="{runner}"]')


def counter(page: Page, key: str) -> Locator:
    return page.locator(f'[data-widget=counters] [data-key="{key}"] [data-f=v]')


def count_of(locator: Locator) -> int:
    """The number a counter shows (once it shows one)."""
    expect(locator).to_have_text(re.compile(r"^\d[\d,]*$"), timeout=10_000)
    return int((locator.text_content() or "").replace(",", ""))


def modal(page: Page) -> Locator:
    return page.locator("#job-modal")


def overview(page: Page, field: str) -> Locator:
    return modal(page).locator(f'[data-panel="overview"] dd[data-f="{field}"]')


def lifecycle(page: Page, steps: list[str]) -> None:
    """The open job's Event history (its tab already chosen) has each step once, started and ended by ENGINE.

    In arrival order, which is not always causal for django-mojo: its publish RPUSHes the job before it writes the
    `queued` event, so the engine's `running` can be read first (docs/mojo.md, section 5).
    """
    history = modal(page).locator('[data-f="history"] tr')
    expect(history).to_have_count(len(steps), timeout=WAIT)
    for step in steps:
        row = history.filter(has=page.locator("td:nth-child(2)", has_text=re.compile(f"^{step}$")))
        expect(row).to_have_count(1)
        if step != "queued":
            expect(row.locator("td").nth(3)).to_have_text(ENGINE)


# -- tests -------------------------------------------------------------------------------------------


def test_runners_console_shows_django_mojos_engines_live(page: Page, mojo: MojoCluster, server: LiveServer) -> None:
    """The engine's card is live with its host; what django-mojo cannot do (logs, restart) is disabled with its
    reason, drain is offered; a second engine killed with SIGKILL goes stale, then offline, and stays listed."""
    open_page(page, server, RUNNERS)
    engine = card(page, ENGINE)
    expect(engine.locator(".badge")).to_have_text(re.compile("^(online|busy)$"), timeout=WAIT)
    expect(engine.locator(".rc-where")).to_contain_text(socket.gethostname())
    # Not dead buttons: disabled, saying why (the title names the button, then django-mojo's reason).
    logs = engine.locator('[data-op="logs"]')
    expect(logs).to_be_disabled()
    expect(logs).to_have_attribute("title", re.compile(r"^Logs: .*django-mojo engines log to files on their own hosts"))
    restart = engine.locator('[data-op="restart"]')
    expect(restart).to_be_disabled()
    expect(restart).to_have_attribute("title", re.compile(r"^Restart: .*django-mojo has no restart"))
    expect(engine.locator('[data-op="drain"]')).to_have_text("Drain")
    expect(engine.locator('[data-op="drain"]')).to_be_enabled()

    # On a channel jobpulse reads already (a channel nobody named yet is found by a periodic SCAN, up to 10 s).
    crash = f"page-crash-{uuid.uuid4().hex[:6]}"
    process = mojo.engine(crash, channels=("priority",))
    crashed = card(page, crash)
    expect(crashed.locator(".badge")).to_have_text("online", timeout=WAIT)
    page.evaluate(BADGE_RECORDER, crash)
    process.kill()
    expect(crashed.locator(".badge")).to_have_text("offline", timeout=WAIT)
    seen = page.evaluate("() => window.__e2eBadges")
    assert seen[:3] == ["online", "stale", "offline"], f"the killed engine's badge showed {seen}"
    expect(crashed).to_have_attribute("data-status", "offline")
    expect(engine.locator(".badge")).to_have_text(re.compile("^(online|busy)$"))  # the other one is unharmed


def test_dashboard_counts_django_mojos_jobs_live(page: Page, mojo: MojoCluster, server: LiveServer) -> None:
    """Jobs published with django-mojo's own publish move the completed and failed counters; the failure shows
    with its error; a delayed job shows in the scheduled widget, then runs."""
    open_page(page, server, DASHBOARD)
    expect(page.locator("[data-widget=runners]")).to_contain_text(ENGINE, timeout=WAIT)
    completed, failed = counter(page, "completed"), counter(page, "failed")
    done_before, failed_before = count_of(completed), count_of(failed)  # this hour's, from django-mojo's rows

    tag = uuid.uuid4().hex[:6]
    later = mojo.publish("demo_jobs.ok_job", {"n": "later"}, delay=3)
    scheduled = page.locator(f'[data-widget=scheduled] tbody[data-f=rows] tr[data-key="{later}"]')
    expect(scheduled).to_be_visible(timeout=WAIT)
    expect(scheduled.locator("[data-until]")).to_have_text(re.compile(r"^(in \d+s|due)"))
    expect(scheduled.locator(".id")).to_have_text(later)
    expect(scheduled.locator(".chip")).to_have_text("default")

    sleeper = mojo.publish("demo_jobs.sleep_job", {"seconds": 3})
    running = page.locator(f'[data-widget=live_jobs] tbody[data-f=rows] tr[data-key="{sleeper}"]')
    expect(running.locator(".badge")).to_have_text("running", timeout=WAIT)
    expect(running.locator(".small")).to_have_text(f"default · {ENGINE}")

    oks = [mojo.publish("demo_jobs.ok_job", {"n": i}) for i in range(4)]
    bads = [mojo.publish("demo_jobs.fail_job", {"message": f"page boom {tag} {i}"}) for i in range(2)]
    expect(failed).to_have_text(str(failed_before + 2), timeout=WAIT)
    failures = page.locator("[data-widget=failures] tbody[data-f=rows]")
    for i, job in enumerate(bads):
        row = failures.locator(f'tr[data-job="{job}"]')
        expect(row.locator(".err")).to_contain_text(f"page boom {tag} {i}")
        expect(row.locator(".small")).to_contain_text("demo_jobs.fail_job")
        expect(row.locator(".chip")).to_have_text("default")

    # The delayed job leaves the scheduled widget when django-mojo's scheduler queues it, and is counted done with
    # the four quick ones and the sleeper, which leaves the live jobs.
    expect(scheduled).to_have_count(0, timeout=WAIT)
    expect(running).to_have_count(0, timeout=WAIT)
    expect(completed).to_have_text(str(done_before + 6), timeout=WAIT)
    rows = mojo.wait_for_jobs([*oks, *bads, later, sleeper])
    assert sorted(r["status"] for r in rows.values()) == ["completed"] * 6 + ["failed"] * 2


def test_purge_from_the_operations_center_cancels_django_mojos_jobs(
    page: Page, mojo: MojoCluster, server: LiveServer
) -> None:
    """The Purge tile on a channel no engine consumes: previewed, confirmed; django-mojo's rows are canceled and its
    queue list is gone; the tile shows the channel empty."""
    waiting = [mojo.publish("demo_jobs.ok_job", {"n": i}, channel=UNSERVED) for i in range(3)]
    open_page(page, server, MANAGE)
    purge_row = page.locator(f'[data-part="purge"] tr[data-key="{UNSERVED}"]')
    expect(purge_row.locator("td").nth(1)).to_have_text("3", timeout=WAIT)

    confirm = preview_purge(page, UNSERVED)
    expect(confirm.locator(".ad-count")).to_have_text("Would affect 3")
    expect(confirm.locator(".ad-sample li")).to_have_count(3)
    assert mojo.client.llen(mojo.queue_key(UNSERVED)) == 3  # a preview changes nothing
    confirm.get_by_role("button", name="Purge").click()
    expect(confirm).to_be_hidden(timeout=15_000)
    expect(page.locator("#toasts .toast-success")).to_contain_text("Done:", timeout=15_000)

    rows = mojo.jobs(waiting)
    assert {r["status"] for r in rows.values()} == {"canceled"}, rows
    assert mojo.client.llen(mojo.queue_key(UNSERVED)) == 0  # django-mojo's own queue list
    expect(purge_row.locator("td").nth(1)).to_have_text("0", timeout=WAIT)


def test_job_details_follow_a_django_mojo_job(page: Page, mojo: MojoCluster, server: LiveServer) -> None:
    """A django-mojo job in the job table and its details: function, runner, and its lifecycle from queued to
    started to completed; a failed one with its error."""
    job = mojo.publish("demo_jobs.sleep_job", {"seconds": 4})
    open_page(page, server, f"{TABLE}?q=id%3A{job}")
    row = page.locator(f'#jt-rows tr[data-key="{job}"]')
    expect(row.locator(".badge")).to_have_text("running", timeout=WAIT)
    expect(row.locator(".fn")).to_have_text("demo_jobs.sleep_job")
    row.click()
    dialog = modal(page)
    expect(dialog).to_be_visible()
    expect(dialog.locator("#jm-title")).to_have_text(f"Job {job}")
    expect(overview(page, "fn")).to_have_text("demo_jobs.sleep_job")
    expect(overview(page, "channel")).to_contain_text("default")
    expect(overview(page, "runner")).to_have_text(ENGINE)
    expect(overview(page, "attempt")).to_have_text("1 of 1")  # django-mojo's max_retries: 0 by default, one attempt
    status = overview(page, "status").locator(".badge")
    expect(status).to_have_text("completed", timeout=WAIT)
    expect(row.locator(".badge")).to_have_text("completed")  # the table behind the modal follows too
    dialog.get_by_role("tab", name="Payload").click()
    expect(dialog.locator('[data-f="payload"]')).to_have_text('{\n  "seconds": 4\n}')
    dialog.get_by_role("tab", name="Event history").click()
    lifecycle(page, ["queued", "started", "completed"])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    message = f"page details {uuid.uuid4().hex[:6]}"
    bad = mojo.publish("demo_jobs.fail_job", {"message": message})
    page.locator("#jt-q").fill(f"id:{bad}")
    page.locator("#jt-q").press("Enter")
    failed = page.locator(f'#jt-rows tr[data-key="{bad}"]')
    expect(failed.locator(".badge")).to_have_text("failed", timeout=WAIT)
    expect(failed.locator(".err")).to_contain_text(message)
    failed.click()
    expect(overview(page, "status").locator(".badge")).to_have_text("failed")
    expect(overview(page, "fn")).to_have_text("demo_jobs.fail_job")
    dialog.get_by_role("tab", name=re.compile("^Error")).click()
    expect(dialog.locator('[data-f="error"]')).to_contain_text(message)
    expect(dialog.locator('[data-f="traceback"]')).to_contain_text(f"RuntimeError: {message}")
    dialog.get_by_role("tab", name="Event history").click()
    lifecycle(page, ["queued", "started", "failed"])


def test_a_postgres_outage_says_database_down_and_clears_by_itself(page: Page, mojo: MojoCluster, prefix: str) -> None:
    """django-mojo's Postgres goes away under the overview page: "Database down" (not "Broker down": its Redis is
    fine) on the banner and the health card (goal 2 s, measured by `python -m bench.outage`; allowed three times
    that); back, the banner goes and the page is live again without a reload."""
    proxy = FaultProxy(*mojo.pg_address).start()
    live = LiveServer(
        mojo.redis_url, prefix, env=mojo.jobpulse_env(JOBPULSE_MOJO_DATABASE_URL=mojo.pg_url_via(proxy.port))
    ).start()
    try:
        open_page(page, live, "/admin/jobs/overview")
        card = page.locator('[data-widget=service] [data-f="broker"]')
        expect(card).to_have_text("Connected", timeout=WAIT)
        page.evaluate("() => { window.__e2eSameDocument = true; }")
        cut = time.monotonic()
        proxy.cut()
        banner = page.locator("#banner")
        expect(banner).to_contain_text("Database down", timeout=SAID_BOUND_S * 1000)
        said = time.monotonic() - cut
        print(f"the banner said Database down in {said:.2f} s (goal {SAID_GOAL_S:.0f} s)")
        expect(banner).to_contain_text("Postgres")
        expect(card).to_have_text("Database down")
        proxy.heal()
        expect(banner).to_be_hidden(timeout=HEALED_BOUND_S * 1000)
        expect(card).to_have_text("Connected")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        assert page.evaluate("() => window.__e2eSameDocument === true"), "the page reloaded instead of healing"
    finally:
        output = live.finish()
        proxy.close()
    assert "Traceback" not in output, output
