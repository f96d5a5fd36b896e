"""Every page on a phone (390x844, one page at 360x740) in a real Chromium, against a real server and a real fleet.

On a phone a page must not scroll sideways (the document is no wider than the window), its Menu button must open
the whole list of pages (Audit and Status among them) and close again with Escape, it must go live as on a wide
screen, no KPI title may be cut short, and a table's ids and statuses must show whole: the tables turn into stacked
rows (web/css/app.css, `.tbl.stacked` and the job table) whose cells say their column's name.

The wall (/wall) is a read-only display with no navigation by design, so it has no Menu: on a phone it is checked
for width, liveness and its counter titles only. The sign-in page (/login) has no pages to navigate to before one
signs in; it is checked for width on a server that signs users in.

The simulated fleet of tests/conftest.py (`simulated_fleet`) keeps the pages busy while they are checked.
Deadlines are generous and functional (`expect(...)` and `wait_for_function` poll until true); nothing sleeps to
assert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import redis

from tests.conftest import LiveServer, SimulatedFleet, users_env
from tests.e2e.support import Page, expect

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.e2e

PHONE: ViewportSize = {"width": 390, "height": 844}
SMALL_PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1440, "height": 900}

# Each page, and a check that it has drawn its first live data.
PAGES = {
    "/admin/jobs": "!!document.querySelector('[data-widget=runners] tbody tr')",
    "/admin/jobs/overview": "!!document.querySelector('[data-widget=backlogs] .backlog')",
    "/admin/jobs/runners": "!!document.querySelector('.rcard')",
    "/admin/jobs/manage": "!!document.querySelector('[data-tile=purge] tbody tr')",
    "/admin/jobs/table": "!!document.querySelector('#jt-rows tr')",
    "/admin/jobs/logs": "!!document.querySelector('[data-widget=logs] tbody tr')",
    "/admin/system-status": "!!document.querySelector('[data-widget=platform] tbody tr')",
    "/admin/jobs/audit": "document.getElementById('audit-summary').textContent !== 'Loading…'",
    "/wall": "document.querySelector('[data-widget=fleet_summary] [data-key=online] b').textContent !== '–'",
}

# What is wider than the window, for the message when the page scrolls sideways (outermost offenders only).
WIDER_THAN_WINDOW = """() => {
  const found = [];
  for (const node of document.querySelectorAll("body *")) {
    const box = node.getBoundingClientRect();
    if (!box.width || box.right <= innerWidth + 0.5 || found.some((f) => f.node.contains(node))) continue;
    const name = `${node.tagName.toLowerCase()}${node.id ? "#" + node.id : ""}.${[...node.classList].join(".")}`;
    found.push({ node, text: `${name} ends at ${Math.round(box.right)}` });
  }
  const wide = found.slice(0, 8).map((f) => f.text);
  return { scroll: document.documentElement.scrollWidth, window: innerWidth, wide };
}"""

# Titles of key figures whose text is cut (an ellipsis, or clipped): wider inside than their box.
CUT_TITLES = """() => [...document.querySelectorAll(".kpi-head h2, .counter-label, .st-kpi-label, .snap-label")]
  .filter((node) => node.getClientRects().length && node.scrollWidth > node.clientWidth + 1)
  .map((node) => `${node.textContent.trim()}: ${node.scrollWidth} > ${node.clientWidth}`)"""

# Ids and statuses in tables that do not show whole: clipped by their own box or their cell, or past the window.
CUT_CELLS = """() => {
  const cut = [];
  const shown = "main .tbl tbody .id, main .tbl tbody .badge, main .tbl tbody .st-pill";
  for (const node of document.querySelectorAll(shown)) {
    if (!node.getClientRects().length || !node.textContent.trim()) continue;
    const cell = node.closest("td");
    const box = node.getBoundingClientRect();
    const own = node.scrollWidth > node.clientWidth + 1;
    const inCell = cell.scrollWidth > cell.clientWidth + 1;
    if (own || inCell || box.left < -0.5 || box.right > innerWidth + 0.5) {
      cut.push(`${node.textContent.trim()} (${[...node.classList].join(".")}): own ${own}, cell ${inCell}, ` +
        `from ${Math.round(box.left)} to ${Math.round(box.right)}`);
    }
  }
  return cut.slice(0, 8);
}"""


def open_live(page: Page, server: LiveServer, path: str) -> None:
    """Load `path`; return once its socket is live and its first data is drawn."""
    page.goto(server.url + path)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    page.wait_for_function(f"() => {PAGES[path]}", timeout=15_000)


def fits(page: Page) -> dict[str, Any] | None:
    """None when the page does not scroll sideways, else what is wider than the window."""
    report = page.evaluate(WIDER_THAN_WINDOW)
    return None if report["scroll"] <= report["window"] else report


def menu_problems(page: Page) -> list[str]:
    """Open the Menu, see Audit and Status inside the window, close it with Escape."""
    problems = []
    button = page.locator("#nav-toggle")
    links = {
        name: page.locator("#site-menu .nav").get_by_role("link", name=name, exact=True) for name in ("Audit", "Status")
    }
    expect(button).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_have_attribute("aria-controls", "site-menu")
    for name, link in links.items():
        if link.is_visible():
            problems.append(f"{name} is shown before the menu is opened")
    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    for name, link in links.items():
        expect(link).to_be_visible()
        box = link.bounding_box()
        if box is None or box["x"] < 0 or box["x"] + box["width"] > page.viewport_size["width"]:  # type: ignore[index]
            problems.append(f"{name} is not inside the window: {box}")
    if (report := fits(page)) is not None:
        problems.append(f"the open menu makes the page scroll sideways: {report}")
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    for link in links.values():
        expect(link).to_be_hidden()
    return problems


def publish_warnings(server: LiveServer) -> None:
    """Two messages jobpulse rejects: each is a warning on the Service Logs page."""
    client = redis.Redis.from_url(server.redis_url)
    try:
        for n in range(2):
            client.publish(f"{server.prefix}:events", f"not json {n}".encode())
    finally:
        client.close()


def test_every_page_fits_a_phone(page: Page, simulated_fleet: SimulatedFleet) -> None:
    """At 390x844 every page: no sideways scroll, live, whole KPI titles, whole ids and statuses in its tables, and
    (all but the wall) a Menu that opens the list of pages, Audit and Status in it, and closes on Escape."""
    server = simulated_fleet.server
    publish_warnings(server)
    page.set_viewport_size(PHONE)
    problems: dict[str, list[str]] = {}
    for path in PAGES:
        open_live(page, server, path)
        found = []
        if (report := fits(page)) is not None:
            found.append(f"scrolls sideways: {report}")
        if cut := page.evaluate(CUT_TITLES):
            found.append(f"KPI titles cut: {cut}")
        if cut := page.evaluate(CUT_CELLS):
            found.append(f"ids or statuses cut: {cut}")
        if path == "/wall":
            expect(page.locator("#nav-toggle")).to_have_count(0)
        else:
            found += menu_problems(page)
        if found:
            problems[path] = found
    assert not problems, "\n".join(f"{path}:\n  " + "\n  ".join(found) for path, found in problems.items())


def test_smallest_phone_menu_by_keyboard(page: Page, simulated_fleet: SimulatedFleet) -> None:
    """At 360x740 the overview fits with its KPI titles whole; the Menu works by keyboard (Enter opens it, Tab goes
    into it, Escape closes it and gives the focus back) and its Status link goes to the Status page, live."""
    server = simulated_fleet.server
    page.set_viewport_size(SMALL_PHONE)
    open_live(page, server, "/admin/jobs/overview")
    assert fits(page) is None, fits(page)
    assert page.evaluate(CUT_TITLES) == []
    titles = page.locator(".kpi-head h2")
    expect(titles).to_have_count(4)
    expect(titles.nth(2)).to_have_text("In-Flight")

    button = page.locator("#nav-toggle")
    button.focus()
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.closest('#site-menu') !== null"), "Tab did not go into the menu"
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_be_focused()

    page.keyboard.press("Enter")
    status = page.locator("#site-menu .nav").get_by_role("link", name="Status", exact=True)
    expect(status).to_be_visible()
    status.click()
    expect(page).to_have_url(server.url + "/admin/system-status")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#nav-toggle")).to_have_attribute("aria-expanded", "false")
    assert fits(page) is None, fits(page)


def test_job_table_rows_stack_on_a_phone(page: Page, simulated_fleet: SimulatedFleet) -> None:
    """At 390 px the job table's rows are stacked cards: id and status whole, every other cell under its column's
    name, the sort buttons kept; rows still come and go live. At 1440 px it is the table it was, with no Menu."""
    server = simulated_fleet.server
    page.set_viewport_size(PHONE)
    open_live(page, server, "/admin/jobs/table")
    rows = page.locator("#jt-rows tr")
    expect(rows.nth(4)).to_be_attached(timeout=15_000)
    assert fits(page) is None, fits(page)
    assert page.evaluate(CUT_CELLS) == []

    shape = rows.first.evaluate(
        """(tr) => {
            const cells = [...tr.cells];
            const box = tr.getBoundingClientRect();
            const line = (node) => node.getBoundingClientRect();
            return {
                display: getComputedStyle(tr).display,
                right: box.right,
                id: tr.querySelector(".id").textContent,
                idWhole: line(tr.querySelector(".id")).right <= box.right + 0.5,
                statusWhole: line(tr.querySelector(".badge")).right <= box.right + 0.5,
                labels: cells.map((td) => getComputedStyle(td, "::before").content),
                lines: new Set(cells.map((td) => Math.round(line(td).top))).size,
            };
        }"""
    )
    assert shape["display"] == "grid", shape
    assert shape["right"] <= PHONE["width"], shape
    assert shape["id"].strip() and shape["idWhole"] and shape["statusWhole"], shape
    assert shape["lines"] >= 4, f"the row is not stacked: {shape}"
    labels = shape["labels"]
    assert labels[0] == "none" and labels[3] == "none", labels  # the id and the status speak for themselves
    assert labels[1] == '"Channel"' and labels[2] == '"Function"' and labels[5] == '"Runner"', labels
    sortable = page.locator("#jt-wrap thead th:visible")
    expect(sortable).to_have_count(6)  # the sortable columns, as a row of sort buttons
    expect(page.locator('#jt-wrap thead th[data-col="status"]')).to_be_hidden()

    # Live: rows are added, removed or reordered by the fleet's updates (a ticking age changes text only).
    page.evaluate(
        """() => {
            window.__e2eRowMoves = 0;
            new MutationObserver((records) => { window.__e2eRowMoves += records.length; })
                .observe(document.getElementById("jt-rows"), { childList: true });
        }"""
    )
    page.wait_for_function("() => window.__e2eRowMoves > 0", timeout=20_000)
    labelled = (
        "() => [...document.querySelectorAll('#jt-rows tr')].every((tr) => tr.cells[1].dataset.label === 'Channel')"
    )
    assert page.evaluate(labelled), "a row that came live has cells without their column's name"
    assert page.evaluate(CUT_CELLS) == []

    page.set_viewport_size(DESKTOP)
    expect(page.locator("#nav-toggle")).to_be_hidden()
    expect(page.locator("header .nav").get_by_role("link", name="Audit", exact=True)).to_be_visible()
    assert rows.first.evaluate("(tr) => getComputedStyle(tr).display") == "table-row"
    expect(page.locator('#jt-wrap thead th[data-col="status"]')).to_be_visible()


def test_login_page_fits_a_phone(page: Page, redis_url: str, prefix: str) -> None:
    """The sign-in page (a server that signs users in) at 390 px: no sideways scroll, the form whole."""
    server = LiveServer(redis_url, prefix, users_env()).start()
    try:
        page.set_viewport_size(PHONE)
        page.goto(server.url + "/login")
        form = page.locator("form.login-card")
        expect(form).to_be_visible()
        assert fits(page) is None, fits(page)
        box = form.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    finally:
        output = server.finish()
    assert "Traceback" not in output, output
