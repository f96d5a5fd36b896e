"""The job table, the job details modal and the Job Operations Center in a real Chromium.

A real server and a real simulated fleet (`simulated_fleet`) keep the pages busy; where a test needs a job
to do something at a moment of its choosing, it publishes that job's native-protocol events itself
(docs/protocol.md section 1.1) beside the fleet. Deadlines are generous and functional (`expect(...)` and
`wait_for_function` poll until true); nothing sleeps to assert.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import LiveServer, SimulatedFleet
from tests.e2e.support import FirstLoad, Locator, Page, Source, expect, tag, tagged

pytestmark = pytest.mark.e2e

TABLE = "/admin/jobs/table"
MANAGE = "/admin/jobs/manage"
QUIET_RUNNER = "e2e-quiet-runner"  # never beats, so no heartbeat's `active` list overrules our job events


@pytest.fixture
def jobs(simulated_fleet: SimulatedFleet) -> Iterator[Source]:
    """Publishes jobs' lifecycle events on the fleet's `P:events`, as a producer and a runner would."""
    server = simulated_fleet.server
    fields = {"channel": "email", "fn": "mail.send_e2e", "attempt": 1}
    with Source.connect(server.redis_url, server.prefix, producer="e2e-producer", job_fields=fields) as source:
        yield source


def open_page(page: Page, server: LiveServer, path: str) -> Page:
    page.goto(server.url + path)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    return page


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def row_ids(page: Page, tbody: str = "#jt-rows") -> list[str]:
    return list(page.locator(f"{tbody} tr").evaluate_all("(rows) => rows.map((r) => r.dataset.key)"))


def table_row(page: Page, job: str, tbody: str = "#jt-rows") -> Locator:
    return page.locator(f'{tbody} tr[data-key="{job}"]')


def search(page: Page, q: str) -> None:
    box = page.locator("#jt-q")
    box.fill(q)
    box.press("Enter")


def wait_rows(page: Page, predicate: str, timeout: float = 15_000) -> None:
    """Wait until the table's data is in (not busy) and `predicate(rows)` holds for its rows."""
    page.wait_for_function(
        f"""() => {{
            if (document.getElementById("jt-wrap").hasAttribute("aria-busy")) return false;
            const rows = [...document.querySelectorAll("#jt-rows tr")];
            return ({predicate})(rows);
        }}""",
        timeout=timeout,
    )


def all_rows(condition: str, least: int = 1) -> str:
    """A rows predicate: at least `least` rows, and `condition` (on `r`, `i`, `rows`) true of each."""
    return f"(rows) => rows.length >= {least} && rows.every((r, i) => {condition})"


def all_status(status: str) -> str:
    return all_rows(f"r.querySelector('.badge').textContent === {json.dumps(status)}")


ASCENDING = all_rows("i === 0 || rows[i - 1].dataset.key <= r.dataset.key", least=10)
DESCENDING = all_rows("i === 0 || rows[i - 1].dataset.key >= r.dataset.key", least=10)


def modal(page: Page) -> Locator:
    return page.locator("#job-modal")


def overview(page: Page, field: str) -> Locator:
    return modal(page).locator(f'[data-panel="overview"] dd[data-f="{field}"]')


def test_job_table_search_sort_page(page: Page, live_server: LiveServer, jobs: Source) -> None:
    """Rows render; a search narrows them and lives in the URL; filters compose the query; sorting, paging and a
    bad query behave; a reload restores the view."""
    # 60 jobs of our own (beside the fleet's) make a search with a known number of pages.
    batch = f"e2e-page-{uuid.uuid4().hex[:6]}"
    jobs.publish([jobs.job_message("queued", f"{batch}-{i:03d}", queued_at=time.time()) for i in range(60)])
    open_page(page, live_server, TABLE)
    wait_rows(page, "(rows) => rows.length >= 10")
    expect(page.locator("#jt-indexed")).to_have_text(re.compile(r"^[\d,]+$"))
    expect(page.locator("#jt-pageinfo")).to_have_text(re.compile(r"^Page 1 of [\d,]+$"))
    expect(page.locator('th[data-col="updated"]')).to_have_attribute("aria-sort", "descending")

    # A search narrows the rows; the URL holds it; the status control follows the query.
    search(page, "status:running")
    wait_rows(page, all_status("running"))
    assert query_of(page)["q"] == ["status:running"]
    expect(page.locator("#jt-status")).to_have_value("running")

    # A filter control rewrites its term of the query (replacing status:running) and keeps the others.
    search(page, "status:running -channel:nope")
    wait_rows(page, "(rows) => rows.length > 0")
    page.locator("#jt-status").select_option("completed")
    expect(page.locator("#jt-q")).to_have_value("-channel:nope status:completed")
    wait_rows(page, all_status("completed"))
    assert query_of(page)["q"] == ["-channel:nope status:completed"]
    page.locator("#jt-channel").fill("email")
    page.locator("#jt-channel").press("Enter")
    expect(page.locator("#jt-q")).to_have_value("-channel:nope status:completed channel:email")
    wait_rows(page, all_rows("r.querySelector('.chip').textContent === 'email'"))

    # Sorting: the job column sorts by id, ascending first, then descending; aria-sort says which.
    search(page, "")
    wait_rows(page, "(rows) => rows.length >= 10")
    job_header = page.locator('th[data-col="job"]')
    job_header.locator("button").click()
    expect(job_header).to_have_attribute("aria-sort", "ascending")
    expect(page.locator('th[data-col="updated"]')).not_to_have_attribute("aria-sort", re.compile(".*"))
    wait_rows(page, ASCENDING)
    assert query_of(page)["sort"] == ["id"]
    first_page = row_ids(page)
    job_header.locator("button").click()
    expect(job_header).to_have_attribute("aria-sort", "descending")
    wait_rows(page, DESCENDING)
    assert query_of(page)["sort"] == ["-id"]
    assert row_ids(page) != first_page

    # Paging (our 60 jobs: 50 and 10): the URL holds the page; a reload restores search, sort and page.
    job_header.locator("button").click()
    expect(job_header).to_have_attribute("aria-sort", "ascending")
    search(page, f"id:{batch}-*")  # a new search keeps the sort
    wait_rows(page, ASCENDING)
    expect(page.locator("#jt-total")).to_have_text("60 jobs match")
    expect(page.locator("#jt-pageinfo")).to_have_text("Page 1 of 2")
    expect(page.locator("#jt-prev")).to_be_disabled()
    assert row_ids(page) == [f"{batch}-{i:03d}" for i in range(50)]
    page.locator("#jt-next").click()
    expect(page.locator("#jt-pageinfo")).to_have_text("Page 2 of 2")
    wait_rows(page, all_rows("true", least=10))
    assert row_ids(page) == [f"{batch}-{i:03d}" for i in range(50, 60)]
    assert query_of(page) == {"q": [f"id:{batch}-*"], "sort": ["id"], "page": ["2"]}
    expect(page.locator("#jt-next")).to_be_disabled()
    expect(page.locator("#jt-prev")).to_be_enabled()
    page.reload()
    expect(page.locator("#jt-pageinfo")).to_have_text("Page 2 of 2", timeout=15_000)
    expect(job_header).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("#jt-q")).to_have_value(f"id:{batch}-*")
    expect(page.locator("#jt-rows tr")).to_have_count(10)
    page.locator("#jt-prev").click()
    expect(page.locator("#jt-pageinfo")).to_have_text("Page 1 of 2")
    expect(page.locator("#jt-rows tr")).to_have_count(50)
    assert "page" not in query_of(page)

    # A query the server cannot run: its reason inline, no rows; the URL keeps what was typed.
    search(page, "bogus:1 status:failed")
    error = page.locator("#jt-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("unknown field 'bogus'")
    expect(page.locator("#jt-rows tr")).to_have_count(0)
    assert query_of(page)["q"] == ["bogus:1 status:failed"]
    search(page, "status:running")
    expect(error).to_be_hidden()
    wait_rows(page, "(rows) => rows.length > 0")

    # Reload restores the search and its control.
    page.reload()
    expect(page.locator("#jt-q")).to_have_value("status:running", timeout=15_000)
    expect(page.locator("#jt-status")).to_have_value("running")
    wait_rows(page, all_status("running"))


def test_row_and_modal_update_in_place(page: Page, live_server: LiveServer, jobs: Source) -> None:
    """A job's row and its open details modal follow the job from queued to running to completed in the same
    DOM nodes; the modal shows overview, payload and history, and Escape closes it, returning focus to the row."""
    job = f"e2e-{uuid.uuid4().hex[:10]}"
    jobs.job("queued", job, cid="e2e-order-1", queued_at=time.time(), max_attempts=3, payload={"user_id": 7})
    open_page(page, live_server, f"{TABLE}?q=id%3A{job}")
    expect(page.locator("#jt-q")).to_have_value(f"id:{job}")
    row = table_row(page, job)
    expect(row.locator(".badge")).to_have_text("queued", timeout=15_000)
    expect(row.locator(".small")).to_have_text("e2e-order-1")
    tag(row, "row")

    row.focus()
    page.keyboard.press("Enter")
    dialog = modal(page)
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("aria-modal", "true")
    expect(dialog.locator("#jm-title")).to_have_text(f"Job {job}")
    status = overview(page, "status").locator(".badge")
    expect(status).to_have_text("queued")
    tag(status, "status")
    expect(overview(page, "cid")).to_have_text("e2e-order-1")
    expect(overview(page, "attempt")).to_have_text("1 of 3")
    expect(overview(page, "queued").locator(".jm-age")).to_have_text(re.compile(r"^\d+s ago$"))
    # Actions follow the job's status (the live server runs in dev mode: everyone may act).
    expect(dialog.get_by_role("button", name="Cancel job")).to_be_enabled()
    retry = dialog.get_by_role("button", name="Retry")
    expect(retry).to_be_disabled()
    expect(dialog.locator(".jm-reason")).to_contain_text("only a failed, canceled or expired job can be retried")
    # The native source has no rate limits: shown, disabled, with the reason (a Celery source enables it).
    limit = dialog.get_by_role("button", name="Rate limit…")
    expect(limit).to_be_disabled()
    expect(limit).to_have_attribute("title", re.compile("no per-function rate limits"))

    jobs.job("started", job, src=QUIET_RUNNER, runner=QUIET_RUNNER, started_at=time.time(), max_attempts=3)
    expect(status).to_have_text("running")
    expect(row.locator(".badge")).to_have_text("running")  # the table behind the modal follows too
    expect(overview(page, "runner")).to_have_text(QUIET_RUNNER)
    expect(overview(page, "duration")).to_contain_text("running for")

    jobs.job("completed", job, src=QUIET_RUNNER, runner=QUIET_RUNNER, started_at=time.time() - 0.5, duration=0.5)
    expect(status).to_have_text("completed")
    expect(overview(page, "duration")).to_have_text("500 ms")
    expect(row.locator(".badge")).to_have_text("completed")
    assert tagged(status, "status"), "the modal's status was redrawn instead of changed in place"
    assert tagged(row, "row"), "the table row was replaced instead of changed in place"

    dialog.get_by_role("tab", name="Payload").click()
    expect(dialog.locator('[data-f="payload"]')).to_have_text('{\n  "user_id": 7\n}')
    dialog.get_by_role("tab", name="Event history").click()
    history = dialog.locator('[data-f="history"] tr')
    expect(history).to_have_count(3)
    expect(history.locator("td:nth-child(2)")).to_have_text(["queued", "started", "completed"])
    expect(history.nth(2).locator("td").nth(3)).to_have_text(QUIET_RUNNER)
    dialog.get_by_role("tab", name="Attempts").click()
    expect(dialog.locator('[data-f="attempts"] tr .badge')).to_have_text(["completed"])

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.wait_for_function(f"() => document.activeElement?.dataset?.key === {json.dumps(job)}")
    assert tagged(row, "row")
    assert page.evaluate("() => document.querySelectorAll('[data-widget^=\"job?\"]').length") == 0, "left mounted"


def test_failed_job_shows_error_and_traceback(page: Page, live_server: LiveServer, jobs: Source) -> None:
    """`status:failed` lists a failed job; its modal shows the error line and the whole traceback, lines kept."""
    job = f"e2e-fail-{uuid.uuid4().hex[:8]}"
    traceback = 'Traceback (most recent call last):\n  File "mail.py", line 88, in send\n    smtp.send()\nOSError: boom'
    started = time.time() - 1.2
    jobs.job("queued", job, queued_at=started - 1, max_attempts=1)
    jobs.job("started", job, src=QUIET_RUNNER, runner=QUIET_RUNNER, started_at=started)
    jobs.job("failed", job, src=QUIET_RUNNER, runner=QUIET_RUNNER, started_at=started, duration=1.2,
              error="OSError: boom", traceback=traceback, max_attempts=1)  # fmt: skip
    open_page(page, live_server, TABLE)
    search(page, "status:failed")
    row = table_row(page, job)
    expect(row.locator(".badge")).to_have_text("failed", timeout=15_000)
    expect(row.locator(".err")).to_have_text("OSError: boom")
    wait_rows(page, all_status("failed"))

    row.click()
    dialog = modal(page)
    expect(overview(page, "status").locator(".badge")).to_have_text("failed")
    error_tab = dialog.get_by_role("tab", name=re.compile("^Error"))
    expect(error_tab).to_have_text("Error •")
    error_tab.click()
    expect(error_tab).to_have_attribute("aria-selected", "true")
    expect(dialog.locator('[data-f="error"]')).to_have_text("OSError: boom")
    trace = dialog.locator('[data-f="traceback"]')
    expect(trace).to_be_visible()
    assert trace.inner_text() == traceback
    assert trace.evaluate("(node) => getComputedStyle(node).whiteSpace") == "pre"
    dialog.get_by_role("tab", name="Event history").click()
    expect(dialog.locator('[data-f="history"] tr td:nth-child(2)')).to_have_text(["queued", "started", "failed"])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(row).to_be_focused()


def test_operations_center(page: Page, live_server: LiveServer, jobs: Source) -> None:
    """Six tiles with their actions (enabled: dev mode), live previews, the maintenance log's empty state,
    and Job Lookup by job id (opens the modal) and by correlation id (a list, then the modal)."""
    # A correlation id the simulator set, read off the job table.
    open_page(page, live_server, f"{TABLE}?q=cid%3A*")
    first = page.locator("#jt-rows tr").first
    expect(first.locator(".small")).not_to_have_text("", timeout=15_000)
    sim_job, sim_cid = first.get_attribute("data-key"), first.locator(".small").inner_text()
    assert sim_job and sim_cid

    open_page(page, live_server, MANAGE)
    expect(page.locator("h1")).to_have_text("Job Operations Center")
    tiles = page.locator("[data-tile]")
    expect(tiles).to_have_count(6)
    titles = ["Run Simple Job", "Run Test Batch", "Broadcast to Runners", "Clear Stuck Jobs", "Purge Channel",
              "Cleanup Consumers"]  # fmt: skip
    expect(tiles.locator("h2")).to_have_text(titles)
    expect(tiles.locator(".tile-kind")).to_have_text(
        ["Diagnostic", "Diagnostic", "Caution", "Destructive", "Destructive", "Caution"]
    )
    for i in range(6):
        expect(tiles.nth(i).locator(".tile-foot button")).to_be_enabled()
        expect(tiles.nth(i).locator(".tile-reason")).to_be_hidden()
    expect(page.locator('[data-part="purge"] tbody tr').first).to_be_visible(timeout=15_000)
    expect(page.locator('[data-part="broadcast"] [data-f="live"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.locator('[data-part="stuck"]')).to_contain_text("stuck")
    expect(page.locator('[data-part="hour"]')).to_contain_text("Last hour:")

    activity = page.locator("#activity")
    expect(activity.locator("h2")).to_have_text("Recent Maintenance Activity")
    expect(activity.locator("#activity-empty")).to_contain_text("No operator commands recorded yet")
    expect(activity.locator("tbody tr")).to_have_count(0)

    # By job id: one result opens its details; Escape returns focus to the search box.
    job, cid = f"e2e-look-{uuid.uuid4().hex[:8]}", f"e2e-order-{uuid.uuid4().hex[:8]}"
    other = f"{job}-b"
    jobs.job("queued", job, cid=cid, queued_at=time.time())
    jobs.job("queued", other, cid=cid, queued_at=time.time(), fn="mail.send_other")
    lookup = page.locator("#lookup-q")
    lookup.fill(job)
    lookup.press("Enter")
    dialog = modal(page)
    expect(dialog).to_be_visible(timeout=15_000)
    expect(dialog.locator("#jm-title")).to_have_text(f"Job {job}")
    expect(overview(page, "cid")).to_have_text(cid)
    assert query_of(page)["find"] == [job]
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(lookup).to_be_focused()

    # By correlation id: a list of its jobs, newest first; a row opens that job.
    lookup.fill(cid)
    lookup.press("Enter")
    expect(page.locator("#lookup-status")).to_contain_text(f"2 jobs have correlation id “{cid}”")
    expect(page.locator("#lookup-rows tr")).to_have_count(2)
    assert sorted(row_ids(page, "#lookup-rows")) == sorted([job, other])
    expect(dialog).to_be_hidden()
    table_row(page, other, "#lookup-rows").click()
    expect(dialog.locator("#jm-title")).to_have_text(f"Job {other}")
    expect(overview(page, "fn")).to_have_text("mail.send_other")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # A correlation id from the simulator finds its job.
    lookup.fill(sim_cid)
    lookup.press("Enter")
    expect(table_row(page, sim_job, "#lookup-rows")).to_have_count(1, timeout=15_000)
    # A lone result opens its job, unless the first answer came before the job did (then it is only listed);
    # the modal loads its module first, so give it a moment to show rather than racing it.
    with contextlib.suppress(AssertionError):
        expect(dialog).to_be_visible(timeout=2_000)
        page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # An unknown id says so plainly.
    lookup.fill("no-such-job")
    lookup.press("Enter")
    expect(page.locator("#lookup-status")).to_contain_text("No job has the id or correlation id “no-such-job”")


def test_modal_for_a_job_jobpulse_does_not_hold(page: Page, live_server: LiveServer, jobs: Source) -> None:
    """openJobDetails of an unknown id says jobpulse does not hold it; the list mode opens details by keyboard."""
    job = f"e2e-list-{uuid.uuid4().hex[:8]}"
    jobs.job("queued", job, queued_at=time.time())
    open_page(page, live_server, MANAGE)
    page.evaluate(
        """async (ids) => { const m = await import("/static/js/job-modal.js"); m.openJobList("Some jobs", ids); }""",
        ["gone-job", job],
    )
    dialog = modal(page)
    expect(dialog.locator("#jm-title")).to_have_text("Some jobs")
    rows = dialog.locator("tbody tr")
    expect(rows.nth(0).locator(".badge")).to_have_text("not held")
    expect(rows.nth(1).locator(".badge")).to_have_text("queued")
    expect(rows.nth(0)).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog.locator(".jm-missing")).to_have_text(
        "jobpulse does not hold job gone-job (finished jobs are kept up to JOBPULSE_MAX_JOBS; older ones are gone)"
    )
    dialog.get_by_role("button", name="← Back to list").click()
    expect(rows.nth(0)).to_be_focused()
    page.keyboard.press("Tab")
    expect(rows.nth(1)).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog.locator("#jm-title")).to_have_text(f"Job {job}")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("() => document.querySelectorAll('[data-widget^=\"job?\"]').length") == 0


def measure_first_load(page: Page, server: LiveServer, path: str, ready: str) -> FirstLoad:
    load = FirstLoad(page)
    open_page(page, server, path)
    page.wait_for_function(ready, timeout=15_000)
    load.weigh()
    load.assert_scripts_and_styles()
    assert any(url.endswith("jobs.css") for url in load.sizes), sorted(load.sizes)
    assert load.frames, "no websocket data arrived"
    return load


def test_first_load_weight(page: Page, simulated_fleet: SimulatedFleet) -> None:
    """Each page's HTML, JS, CSS and first second of websocket data, on a busy fleet, weigh under 100 KB as sent."""
    server = simulated_fleet.server
    table = measure_first_load(page, server, TABLE, "() => document.querySelectorAll('#jt-rows tr').length >= 50")
    table.assert_within_budget("the job table's first load")
    other = page.context.new_page()
    try:
        manage = measure_first_load(
            other, server, MANAGE, "() => document.querySelectorAll('[data-part=purge] tbody tr').length > 0"
        )
    finally:
        other.close()
    manage.assert_within_budget("the Operations Center's first load")


def test_the_search_placeholders_and_examples_find_jobs(page: Page, live_server: LiveServer, jobs: Source) -> None:
    """The job table's placeholder (also the README's example), `status:failed channel:email func:send_*`, finds a
    failed email job named like the fleet's (`mail.send_e2e`: the pattern matches inside the name); the help's
    examples that the simulated fleet fills within seconds find its jobs."""
    # The fleet's own email jobs fail for good only after their retries and backoff (minutes): one of ours has.
    job = f"e2e-sendfail-{uuid.uuid4().hex[:6]}"
    jobs.job("queued", job, queued_at=time.time(), max_attempts=1)
    jobs.job("failed", job, src=QUIET_RUNNER, runner=QUIET_RUNNER, error="SMTPServerDisconnected: gone")
    open_page(page, live_server, TABLE)
    placeholder = page.locator("#jt-q").get_attribute("placeholder") or ""
    example = placeholder.split("(")[0].strip()
    assert example == "status:failed channel:email func:send_*", placeholder
    search(page, example)
    wait_rows(page, all_rows("r.dataset.key && r.querySelector('.badge').textContent === 'failed'"))
    assert job in row_ids(page)
    page.locator("#jt-help-btn").click()
    examples = page.locator(".jt-example").all_inner_texts()
    assert set(FLEET_FILLS) <= set(examples), examples
    for q in FLEET_FILLS:
        search(page, q)
        wait_rows(page, all_rows("true"), timeout=20_000)


# The help's examples the simulated fleet fills within seconds (retries and error words take it minutes).
FLEET_FILLS = ("status:running", "func:reports.* -status:completed", "cid:order-*")
