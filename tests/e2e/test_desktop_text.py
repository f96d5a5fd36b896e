"""Text shown whole at a desktop width (1440x900): values in the tables are not cut with an ellipsis, and the
Operations tiles' lists scroll in whole rows (issue #15: runner ids, function names, times, errors, tile lists).

A real server and a real simulated fleet fill the pages; each check polls until the data is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import SimulatedFleet
from tests.e2e.support import Page, expect

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.e2e

DESKTOP: ViewportSize = {"width": 1440, "height": 900}

# Table cells whose text is cut: wider inside than their box (an ellipsis or a clip), the clamped error lines
# (two lines, all of it in their tooltip) aside, and wider cells that hold them.
CUT = """(selector) => [...document.querySelectorAll(selector)]
  .filter((cell) => cell.getClientRects().length && cell.textContent.trim())
  .flatMap((cell) => [cell, ...cell.querySelectorAll("*")])
  .filter((node) => !node.closest(".err") && node.scrollWidth > node.clientWidth + 1
    && getComputedStyle(node).overflowX !== "visible")
  .map((node) => `${node.textContent.trim().slice(0, 60)}: ${node.scrollWidth} > ${node.clientWidth}`)"""


def open_page(page: Page, url: str, ready: str) -> None:
    page.set_viewport_size(DESKTOP)
    page.goto(url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator(ready).first).to_be_visible(timeout=20_000)


def test_tables_show_their_values_whole_at_1440(page: Page, simulated_fleet: SimulatedFleet) -> None:
    server = simulated_fleet.server
    for path, ready, cells in (
        ("/admin/jobs", "[data-widget=runners] tbody tr", "main .tbl tbody td"),
        ("/admin/jobs/table", "#jt-rows tr", "#jt-rows td"),
        ("/admin/jobs/manage", "[data-part=purge] tbody tr", "main .tile-live td"),
        ("/admin/system-status", "[data-part=matrix] tbody tr", "main .st-matrix td"),
    ):
        open_page(page, server.url + path, ready)
        page.wait_for_timeout(1_000)  # a few more updates drawn
        cut = page.evaluate(CUT, cells)
        assert cut == [], f"{path}: {cut}"


def test_an_operations_tiles_list_scrolls_in_whole_rows(page: Page, simulated_fleet: SimulatedFleet) -> None:
    open_page(page, simulated_fleet.server.url + "/admin/jobs/manage", "[data-part=purge] tbody tr")
    geometry = page.evaluate(
        """() => {
            const box = document.querySelector("[data-part=purge] .scroll");
            const head = box.querySelector("thead").getBoundingClientRect().height;
            const rows = [...box.querySelectorAll("tbody tr")].map((r) => r.getBoundingClientRect().height);
            return {height: box.clientHeight, head, rows};
        }"""
    )
    shown = geometry["height"] - geometry["head"]
    row = geometry["rows"][0]
    # Whatever part of the list shows, it ends on a row's edge (within a pixel of borders).
    assert abs(shown / row - round(shown / row)) * row <= 1.5, geometry
