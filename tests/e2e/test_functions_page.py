"""The Functions page (/admin/jobs/functions) in a real Chromium, against a real server and a real Redis: the live
table of functions and channels (runs, failures, fail rate, retries, runtime and wait percentiles), its sort, filters
and search; one function's chart by minute, hour and day; the job details' "this function's p95"; the page on a
phone, and its first load.

The jobs are the tests' own, published with explicit times (docs/protocol.md section 1.1), so the numbers the page
must show are known: a runtime is the end event's `duration`, or its `ts` minus the attempt's `started_at`; a wait is
`started_at` minus `queued_at` (or the retry's `ts`). A percentile is the value of rank floor(q·(n-1)) among the n
values sorted, read back by the sketch within 2% (server/streams/core/sketch.py); a maximum is exact. The server
folds the measurements into the stats every clock tick (JOBPULSE_CLOCK_MS, 250 ms here). Deadlines are functional
(`expect` and `wait_for_function` poll until true); nothing sleeps to assert.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import LiveServer
from tests.e2e.support import (
    FirstLoad,
    Locator,
    Page,
    Source,
    expect,
    open_live,
    still_tagged,
    tag,
    tagged,
)
from tests.e2e.test_phone import PHONE, fits

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("console_errors")]

FUNCTIONS = "/admin/jobs/functions"
TABLE = "/admin/jobs/table"
RUNNER = "e2e-fn-runner"  # never beats: its job events alone say what it ran
TABLET: ViewportSize = {"width": 800, "height": 900}  # wider than the stacked tables' 600 px, narrower than the table

# The widget keys the page subscribes to (hello and sub add, unsub removes), from the frames WS_PROBE saw it send.
SUBSCRIBED = """(prefix) => {
  const on = new Set();
  for (const raw of window.__e2eWs.sent) {
    const frame = JSON.parse(raw);
    if (frame.type === "hello" || frame.type === "sub") for (const w of frame.widgets || []) on.add(w);
    if (frame.type === "unsub") for (const w of frame.widgets || []) on.delete(w);
  }
  return [...on].filter((w) => w.startsWith(prefix)).sort();
}"""


# -- the jobs and what they must show ------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Jobs of one function on one channel, one runtime each: the first `failed` fail, the next `retried` fail their
    first attempt, are retried and complete their second (as long again), the rest complete. Every attempt waits
    `wait` s. `by_duration`: the end event says its `duration`; else only its `ts` tells (minus `started_at`)."""

    fn: str
    channel: str
    runtimes: tuple[float, ...]
    wait: float
    failed: int = 0
    retried: int = 0
    by_duration: bool = True

    @property
    def attempts(self) -> list[float]:
        """The runtime of every attempt that ended."""
        return [*self.runtimes, *self.runtimes[self.failed : self.failed + self.retried]]


FAST = Batch("e2e.fast", "email", (1.0,) * 20, wait=0.5, by_duration=False)
SLOW = Batch("e2e.slow", "billing", tuple(0.5 * (i + 1) for i in range(20)), wait=2.0, failed=5)  # 0.5 s .. 10 s
MID = Batch("e2e.mid", "email", (2.5,) * 10, wait=0.25, failed=1, retried=1)


@dataclass
class Truth:
    """What a row must show, from the batches it counts."""

    runs: int
    failed: int
    retried: int
    fail_rate: float
    runtime: list[float]  # p50, p95, p99, max (the columns the table shows)
    wait: list[float]  # p50, p95, max
    related: set[str]

    @classmethod
    def of(cls, batches: Iterable[Batch], kind: str = "functions") -> Truth:
        batches = list(batches)
        failed = sum(b.failed for b in batches)
        retried = sum(b.retried for b in batches)
        completed = sum(len(b.runtimes) - b.failed for b in batches)
        runtimes = sorted(v for b in batches for v in b.attempts)
        waits = sorted(b.wait for b in batches for _ in b.attempts)
        return cls(
            runs=completed + failed + retried,
            failed=failed,
            retried=retried,
            fail_rate=failed / (completed + failed),
            runtime=[rank(runtimes, 0.5), rank(runtimes, 0.95), rank(runtimes, 0.99), runtimes[-1]],
            wait=[rank(waits, 0.5), rank(waits, 0.95), waits[-1]],
            related={b.channel if kind == "functions" else b.fn for b in batches},
        )


def rank(values: list[float], q: float) -> float:
    """The q quantile as the sketch defines it: the value of rank floor(q·(n-1)) among the values sorted."""
    return values[int(q * (len(values) - 1))]


def publish(source: Source, batch: Batch, first: int = 0) -> list[str]:
    """Publish the batch's jobs (ids `<fn>-<n>` from `first` on) from queued to their end, in one message; their ids.

    Times are in the recent past: every job ends by now, so no clock here runs ahead of the server's.
    """
    base = time.time() - 1 - max(2 * (batch.wait + r) for r in batch.runtimes)
    messages: list[dict[str, Any]] = []
    ids = []
    for i, runtime in enumerate(batch.runtimes):
        job = f"{batch.fn}-{first + i}"
        ids.append(job)
        fields = {"fn": batch.fn, "channel": batch.channel}
        ran = {"src": RUNNER, "runner": RUNNER, **fields}
        queued = base + i * 0.01
        messages.append(source.job_message("queued", job, ts=queued, queued_at=queued, **fields))
        attempts = 2 if batch.failed <= i < batch.failed + batch.retried else 1
        since = queued
        for attempt in range(1, attempts + 1):
            started = since + batch.wait
            ended = started + runtime
            end = "failed" if i < batch.failed else "retried" if attempt < attempts else "completed"
            messages.append(source.job_message("started", job, ts=started, started_at=started, attempt=attempt, **ran))
            extra: dict[str, Any] = {"duration": runtime} if batch.by_duration else {}
            if end != "completed":
                extra["error"] = "RuntimeError: e2e"
            messages.append(source.job_message(end, job, ts=ended, attempt=attempt, **extra, **ran))
            since = ended
    source.publish(messages)
    return ids


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
def server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    """A real jobpulse in dev mode (everyone may look), folding its stats four times a second."""
    live = LiveServer(redis_url, prefix, {"JOBPULSE_CLOCK_MS": "250"}).start()
    yield live
    output = live.finish()
    assert "Traceback" not in output, f"the server logged a traceback:\n{output}"


@pytest.fixture
def source(redis_url: str, prefix: str) -> Iterator[Source]:
    with Source.connect(redis_url, prefix, producer="e2e-producer", job_fields={"attempt": 1}) as source:
        yield source


# -- helpers ---------------------------------------------------------------------------------------------


def open_page(page: Page, server: LiveServer, query: str = "") -> Page:
    return open_live(page, server.url + FUNCTIONS + query)


def rows(page: Page) -> Locator:
    return page.locator('[data-widget="functions"] [data-f="rows"] tr')


def row(page: Page, key: str) -> Locator:
    return page.locator(f'[data-widget="functions"] [data-f="rows"] tr[data-key="{key}"]')


def names(page: Page) -> Locator:
    """The name cells of the rows, in the table's order (expect(...).to_have_text([...]) checks the order)."""
    return rows(page).locator("td.fn-name")


def seconds(text: str) -> float:
    """A duration as the page prints it ("980 ms", "5.00 s", "12.0 s") in seconds."""
    found = re.fullmatch(r"([\d.]+) (ms|s)", text.strip())
    assert found, f"not a duration: {text!r}"
    return float(found[1]) / (1000 if found[2] == "ms" else 1)


def near(shown: float, want: float, what: str) -> None:
    """`shown` is within the sketch's 2% of `want`, give or take the last digit printed."""
    assert abs(shown - want) <= 0.02 * want + 0.005, f"{what}: shows {shown}, want {want} within 2%"


def check_row(page: Page, key: str, truth: Truth) -> None:
    """The row of `key` shows `truth`: counts exactly, percentiles within 2%, maxima exactly (as printed)."""
    line = row(page, key)
    expect(line.locator("td").nth(1)).to_have_text(f"{truth.runs:,}", timeout=15_000)
    # The counts and the sketches are folded together: with the runs in, so are the percentiles.
    cells = line.locator("td").all_inner_texts()
    assert cells[0] == key, cells
    assert cells[2] == str(truth.failed), cells
    rate = float(cells[3].rstrip("%"))
    assert abs(rate - 100 * truth.fail_rate) <= 0.05 + 1e-9, f"{key} fail rate: {cells[3]}, want {truth.fail_rate:.4f}"
    assert cells[4] == str(truth.retried), cells
    for column, label, want in zip((5, 6, 7), ("p50", "p95", "p99"), truth.runtime[:3], strict=True):
        near(seconds(cells[column]), want, f"{key} runtime {label}")
    assert seconds(cells[8]) == pytest.approx(truth.runtime[3], abs=0.005), f"{key} runtime max: {cells[8]}"
    near(seconds(cells[9]), truth.wait[0], f"{key} wait p50")
    near(seconds(cells[10]), truth.wait[1], f"{key} wait p95")
    assert seconds(cells[11]) == pytest.approx(truth.wait[2], abs=0.0005), f"{key} wait max: {cells[11]}"
    assert set(cells[12].split(", ")) == truth.related, cells
    failed = expect(line.locator("td").nth(2))
    if truth.failed:
        failed.to_have_class(re.compile(r"\bbad\b"))  # failures stand out
    else:
        failed.not_to_have_class(re.compile(r"\bbad\b"))


def wait_subscribed(page: Page, prefix: str, keys: list[str]) -> None:
    """Wait until the page's subscriptions starting with `prefix` are exactly `keys`."""
    try:
        page.wait_for_function(
            f"(want) => JSON.stringify(({SUBSCRIBED})(want[0])) === JSON.stringify(want[1])",
            arg=[prefix, sorted(keys)],
        )
    except Exception as exc:
        raise AssertionError(f"subscribed to {page.evaluate(SUBSCRIBED, prefix)}, want {sorted(keys)}") from exc


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def legend_value(page: Page, label: str) -> Locator:
    """The chart legend's value of the series `label` (what uPlot shows for the slot under the cursor)."""
    series = page.locator("#fn-detail .u-legend .u-series").filter(
        has=page.locator(".u-label", has_text=re.compile(f"^{re.escape(label)}$"))
    )
    return series.locator(".u-value")


def hover(page: Page, x: float) -> None:
    """Put the cursor over the chart at `x` (0: its left edge, 1: its right edge), half-way up."""
    box = page.locator("#fn-detail .u-over").bounding_box()
    assert box is not None, "the chart has no plotting area"
    page.mouse.move(box["x"] + 1 + x * (box["width"] - 2), box["y"] + box["height"] / 2)


def legend_time(page: Page) -> datetime:
    """The time of the slot under the cursor, as the legend says it (uPlot's "2025-06-01 1:05pm")."""
    text = legend_value(page, "time").inner_text()
    return datetime.strptime(text.upper(), "%Y-%m-%d %I:%M%p")


def hover_latest(page: Page, label: str, slots: int, idle: str = "–") -> str:
    """Put the cursor over the chart's newest slots, right to left, until series `label` has a value there; its text.

    The newest slot is the one open now on the server's clock; the jobs may have been counted in the one before it
    when a slot boundary passed in between, so up to three slots are tried. `idle`: what a slot without jobs shows.
    """
    over = page.locator("#fn-detail .u-over")
    box = over.bounding_box()
    assert box is not None, "the chart has no plotting area"
    width = box["width"] / slots
    value = legend_value(page, label)
    for back in range(3):
        page.mouse.move(box["x"] + box["width"] - 1 - back * width, box["y"] + box["height"] / 2)
        try:
            expect(value).not_to_have_text(re.compile(f"^({re.escape(idle)})?$"), timeout=1_000)
        except AssertionError:
            continue
        return value.inner_text()
    legend = page.locator("#fn-detail .u-legend").inner_text()
    raise AssertionError(f"no {label} value in the chart's newest slots: {legend}")


# -- tests ----------------------------------------------------------------------------------------------


def test_the_table_fills_live_and_sorts_filters_searches_and_shows_channels(
    page: Page, server: LiveServer, source: Source
) -> None:
    """Rows come as jobs end, with the right counts and percentiles, a row changing in place; sorting by a column,
    the channel filter and the search narrow and order them; the Channels toggle shows the channels' rows, and a
    channel's name shows that channel's functions."""
    open_page(page, server)
    table = page.locator('[data-widget="functions"]')
    empty = table.locator('[data-f="empty"]')
    expect(empty).to_have_text("No job has finished in the window yet: rows appear as jobs run.")
    expect(empty).to_be_visible()

    for batch in (FAST, SLOW, MID):
        publish(source, batch)
    expect(rows(page)).to_have_count(3, timeout=15_000)
    for batch in (FAST, SLOW, MID):
        check_row(page, batch.fn, Truth.of([batch]))
    expect(empty).to_be_hidden()
    expect(table.locator('[data-f="summary"]')).to_have_text("3 functions · 51 runs in 60 min")
    expect(page.locator("#fn-window")).to_have_text("60")
    # By runs, most first; a tie by name.
    expect(names(page)).to_have_text([FAST.fn, SLOW.fn, MID.fn])
    expect(table.locator("th:has(> [data-sort=runs])")).to_have_attribute("aria-sort", "descending")

    # Live: five more fast jobs change the fast row's cells in place, and the order follows.
    tag(row(page, FAST.fn), "fast")
    more = Batch(FAST.fn, FAST.channel, (1.0,) * 5, wait=0.5, by_duration=False)
    publish(source, more, first=len(FAST.runtimes))
    check_row(page, FAST.fn, Truth.of([FAST, more]))
    assert tagged(row(page, FAST.fn), "fast"), "the row was replaced instead of changed in place"
    expect(table.locator('[data-f="summary"]')).to_have_text("3 functions · 56 runs in 60 min")

    # Sorting: a column's header sorts by it, most first; again, least first.
    sorts = {key: table.locator(f"button.sort[data-sort={key}]") for key in ("name", "fail_rate", "rt95", "wt95")}
    sorts["rt95"].click()
    expect(names(page)).to_have_text([SLOW.fn, MID.fn, FAST.fn])  # runtime p95 9.5 s, 2.5 s, 1 s
    expect(table.locator("th:has(> [data-sort=rt95])")).to_have_attribute("aria-sort", "descending")
    expect(table.locator("th[aria-sort]")).to_have_count(1)
    sorts["rt95"].click()
    expect(names(page)).to_have_text([FAST.fn, MID.fn, SLOW.fn])
    expect(table.locator("th:has(> [data-sort=rt95])")).to_have_attribute("aria-sort", "ascending")
    sorts["wt95"].click()
    expect(names(page)).to_have_text([SLOW.fn, FAST.fn, MID.fn])  # wait p95 2 s, 0.5 s, 0.25 s
    sorts["fail_rate"].click()
    expect(names(page)).to_have_text([SLOW.fn, MID.fn, FAST.fn])  # 25%, 10%, 0%
    sorts["name"].click()
    expect(names(page)).to_have_text([FAST.fn, MID.fn, SLOW.fn])  # by name, A to Z first

    # The channel filter offers the channels the data names, and narrows the rows to a channel's functions.
    channel = page.locator("#fn-channel")
    expect(channel.locator("option")).to_have_text(["All channels", "billing", "email"])
    channel.select_option("billing")
    expect(names(page)).to_have_text([SLOW.fn])
    expect(table.locator('[data-f="summary"]')).to_have_text("1 of 3 functions · 20 runs in 60 min")
    channel.select_option("email")
    expect(names(page)).to_have_text([FAST.fn, MID.fn])
    channel.select_option("")
    expect(rows(page)).to_have_count(3)

    # The search ("/" goes to it) narrows by name, in any case; nothing matching says so, not "nothing ran".
    page.locator("h1").click()
    page.keyboard.press("/")
    search = page.locator("#fn-q")
    expect(search).to_be_focused()
    page.keyboard.type("MID")
    expect(names(page)).to_have_text([MID.fn])
    search.fill("nothing-like-it")
    expect(rows(page)).to_have_count(0)
    expect(empty).to_be_visible()
    expect(empty).to_have_text("No function matches the filters.")
    search.fill("")
    expect(rows(page)).to_have_count(3)
    expect(empty).to_be_hidden()

    # Channels: a row a channel, over all its functions' jobs.
    page.locator('[data-fn-kind="channels"]').click()
    expect(page.locator('[data-fn-kind="channels"]')).to_have_attribute("aria-pressed", "true")
    expect(table.locator('[data-f="title"]')).to_have_text("Channels")
    expect(table.locator('[data-f="related-h"]')).to_have_text("Functions")
    expect(names(page)).to_have_text(["billing", "email"])  # still by name
    check_row(page, "email", Truth.of([FAST, more, MID], kind="channels"))
    check_row(page, "billing", Truth.of([SLOW], kind="channels"))
    expect(table.locator('[data-f="summary"]')).to_have_text("2 channels · 56 runs in 60 min")
    # A channel's name shows its functions.
    row(page, "billing").get_by_role("button", name="billing").click()
    expect(page.locator('[data-fn-kind="functions"]')).to_have_attribute("aria-pressed", "true")
    expect(channel).to_have_value("billing")
    expect(names(page)).to_have_text([SLOW.fn])
    expect(table.locator('[data-f="title"]')).to_have_text("Functions")


def test_a_function_opens_its_chart_by_minute_hour_and_day(page: Page, server: LiveServer, source: Source) -> None:
    """A function's name opens its chart (in the URL, subscribed, drawn, its numbers in the summary and the legend);
    Hours and Days re-subscribe; Runtime, Wait and Runs change the lines; picking it again keeps the chart, another
    function replaces it; Close hides it and unsubscribes; a link with ?fn= opens the chart directly, and a chart of
    a function with no numbers yet fills in when its jobs run."""
    for batch in (FAST, SLOW, MID):
        publish(source, batch)
    open_page(page, server)
    expect(rows(page)).to_have_count(3, timeout=15_000)
    check_row(page, SLOW.fn, Truth.of([SLOW]))
    detail = page.locator("#fn-detail")
    expect(detail).to_be_hidden()

    row(page, SLOW.fn).get_by_role("button", name=SLOW.fn).click()
    expect(detail).to_be_visible()
    expect(detail.locator('[data-f="name"]')).to_have_text(SLOW.fn)
    assert query_of(page) == {"fn": [SLOW.fn]}, page.url
    wait_subscribed(page, "function?", [f"function?gran=minutes&name={SLOW.fn}"])
    canvas = detail.locator(".uplot canvas")
    expect(canvas).to_be_visible()
    summary = detail.locator('[data-f="summary"]')
    expect(summary).to_have_text(re.compile(r"^Last 60 min: 20 runs \(25\.0% failed\) · runtime p50 .+ · updated "))
    shown = re.search(r"p50 (.+?), p95 (.+?), p99 (.+?) · wait p95 (.+?) ·", summary.inner_text())
    assert shown, summary.inner_text()
    truth = Truth.of([SLOW])
    wants = [*truth.runtime[:3], truth.wait[1]]
    for got, want, what in zip(shown.groups(), wants, ("p50", "p95", "p99", "wait p95"), strict=True):
        near(seconds(got), want, f"the summary's {what}")
    link = detail.get_by_role("link", name="Its jobs")
    expect(link).to_have_attribute("href", f"{TABLE}?q=fn%3A{SLOW.fn}")
    # The legend names the percentiles; over the newest minute it reads the jobs' p95 (a minute of the last hour).
    expect(detail.locator(".u-legend .u-label")).to_have_text(["time", "p50", "p90", "p95", "p99", "max"])
    near(seconds(hover_latest(page, "p95", slots=60)), truth.runtime[1], "the chart's p95")
    assert seconds(legend_value(page, "max").inner_text()) == pytest.approx(10.0)
    # It spans the last hour, a minute a slot: the minutes without jobs are gaps, the jobs' minute at the right.
    newest = legend_time(page)
    hover(page, 0)
    expect(legend_value(page, "p95")).to_have_text("–")
    assert newest - legend_time(page) >= timedelta(minutes=58), (newest, legend_time(page))

    # Picking it again (its name, the pressed resolution) keeps the chart as it is.
    tag(canvas.first, "plot")
    row(page, SLOW.fn).get_by_role("button", name=SLOW.fn).click()
    detail.locator('[data-fn-gran="minutes"]').click()
    assert still_tagged(page, "#fn-detail .uplot canvas", "plot"), "picking it again blanked or redrew its chart"

    # Hours, then Days: each its own subscription, in the URL, the button pressed.
    for gran in ("hours", "days"):
        detail.locator(f'[data-fn-gran="{gran}"]').click()
        expect(detail.locator(f'[data-fn-gran="{gran}"]')).to_have_attribute("aria-pressed", "true")
        expect(detail.locator('[data-fn-gran="minutes"]')).to_have_attribute("aria-pressed", "false")
        assert query_of(page) == {"fn": [SLOW.fn], "gran": [gran]}, page.url
        wait_subscribed(page, "function?", [f"function?gran={gran}&name={SLOW.fn}"])
        expect(detail).to_have_attribute("data-widget", f"function?gran={gran}&name={SLOW.fn}")
        expect(canvas).to_be_visible()
        expect(summary).to_have_text(re.compile(r"^Last 60 min: 20 runs \(25\.0% failed\)"))
    # Runs per day: the open day holds the jobs.
    detail.locator('[data-fn-measure="runs"]').click()
    expect(detail.locator('[data-fn-measure="runs"]')).to_have_attribute("aria-pressed", "true")
    expect(detail.locator(".u-legend .u-label")).to_have_text(["time", "completed", "failed", "retried"])
    assert hover_latest(page, "completed", slots=30, idle="0") == "15"
    expect(legend_value(page, "failed")).to_have_text("5")
    expect(legend_value(page, "retried")).to_have_text("0")
    hover(page, 0)  # a day without jobs, weeks ago: no runs (not a gap)
    expect(legend_value(page, "completed")).to_have_text("0")
    oldest = legend_time(page)
    hover(page, 1)
    assert legend_time(page) - oldest >= timedelta(days=28), oldest
    detail.locator('[data-fn-measure="wait"]').click()
    expect(detail.locator(".u-legend .u-label")).to_have_text(["time", "p50", "p90", "p95", "p99", "max"])
    near(seconds(hover_latest(page, "p95", slots=30)), SLOW.wait, "the chart's wait p95")
    detail.locator('[data-fn-measure="runtime"]').click()

    # Another function replaces it: its name at once (not the last one's numbers under it), then its numbers.
    row(page, MID.fn).get_by_role("button", name=MID.fn).click()
    assert detail.locator('[data-f="name"]').inner_text() == MID.fn
    assert "20 runs" not in summary.inner_text(), summary.inner_text()
    expect(summary).to_have_text(re.compile(r"^Last 60 min: 11 runs \(10\.0% failed\)"))
    wait_subscribed(page, "function?", [f"function?gran=days&name={MID.fn}"])
    expect(canvas).to_be_visible()

    detail.get_by_role("button", name="Close the function's chart").click()
    expect(detail).to_be_hidden()
    assert query_of(page) == {"gran": ["days"]}, page.url
    wait_subscribed(page, "function?", [])
    page.set_viewport_size({"width": 1000, "height": 900})  # a resize while closed draws nothing
    expect(detail.locator(".uplot")).to_have_count(0)

    # A link opens the chart directly.
    page.goto(f"{server.url}{FUNCTIONS}?fn={FAST.fn}&gran=hours")
    expect(detail).to_be_visible()
    expect(detail.locator('[data-f="name"]')).to_have_text(FAST.fn)
    expect(detail.locator('[data-fn-gran="hours"]')).to_have_attribute("aria-pressed", "true")
    expect(summary).to_have_text(re.compile(r"^Last 60 min: 20 runs \(0\.0% failed\)"))
    expect(canvas).to_be_visible()
    wait_subscribed(page, "function?", [f"function?gran=hours&name={FAST.fn}"])

    # A function with no numbers yet says so, and draws its chart once its jobs have run.
    later = Batch("e2e.later", "email", (0.25, 0.5, 0.75), wait=0.1)
    page.goto(f"{server.url}{FUNCTIONS}?fn={later.fn}")
    expect(summary).to_have_text(f"jobpulse holds no numbers for {later.fn} (yet).")
    expect(detail.locator(".uplot")).to_have_count(0)
    publish(source, later)
    expect(summary).to_have_text(re.compile(r"^Last 60 min: 3 runs \(0\.0% failed\)"), timeout=15_000)
    expect(canvas).to_be_visible()
    expect(row(page, later.fn)).to_be_visible()


def test_the_job_details_tell_the_functions_p95(page: Page, server: LiveServer, source: Source) -> None:
    """From a function's chart, "Its jobs" lists them; a finished job's details say its function's p95 beside its
    runtime, and that a job slower than it is slower than 95% of its runs."""
    report = Batch("e2e.report", "reports", (1.0,) * 15 + (2.0,) * 15, wait=0.2)  # p95 2 s
    typical = publish(source, report)[0]  # a 1 s job
    slow = "e2e.report-slow"
    start = time.time()
    source.job("queued", slow, fn=report.fn, channel=report.channel, ts=start - 0.2, queued_at=start - 0.2)
    source.job("started", slow, src=RUNNER, runner=RUNNER, fn=report.fn, channel=report.channel, started_at=start)

    open_page(page, server, f"?fn={report.fn}")
    detail = page.locator("#fn-detail")
    expect(detail.locator('[data-f="summary"]')).to_have_text(re.compile(r"^Last 60 min: 30 runs"), timeout=15_000)
    detail.get_by_role("link", name="Its jobs").click()
    expect(page).to_have_url(f"{server.url}{TABLE}?q=fn%3A{report.fn}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)

    job_row = page.locator(f'#jt-rows tr[data-key="{slow}"]')
    expect(job_row.locator(".badge")).to_have_text("running", timeout=15_000)
    job_row.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#job-modal")
    expect(dialog.locator("#jm-title")).to_have_text(f"Job {slow}")
    took = dialog.locator('[data-panel="overview"] dd[data-f="duration"]')
    expect(took).to_contain_text("running for")

    # It ends after 12 s: the details follow, and compare it with the function's p95.
    source.job("completed", slow, src=RUNNER, runner=RUNNER, fn=report.fn, channel=report.channel, duration=12.0)
    slower = re.compile(r"^12\.0 s; this function's p95 is (\S+ m?s) over 60 min \(slower than 95% of its runs\)$")
    expect(took).to_have_text(slower, timeout=15_000)
    found = slower.match(took.inner_text())
    assert found, took.inner_text()
    near(seconds(found[1]), 2.0, "the details' p95")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # A typical job of it: the p95 beside its runtime, no more.
    page.locator(f'#jt-rows tr[data-key="{typical}"]').focus()
    page.keyboard.press("Enter")
    expect(dialog.locator("#jm-title")).to_have_text(f"Job {typical}")
    usual = re.compile(r"^1\.00 s; this function's p95 is (\S+ m?s) over 60 min$")
    expect(took).to_have_text(usual)
    found = usual.match(took.inner_text())
    assert found, took.inner_text()
    near(seconds(found[1]), 2.0, "the details' p95")


def test_on_a_phone_it_fits_and_its_first_load_is_light(page: Page, server: LiveServer, source: Source) -> None:
    """At 390x844 the page does not scroll sideways: the table's rows stack, every cell under its column's name, and
    the chart fits the width; its first load (HTML, JS, CSS, the first second of data) stays under the budget, the
    chart library not in it. At 800 px the table scrolls inside its card, not the page."""
    for batch in (FAST, SLOW, MID):
        publish(source, batch)
    page.set_viewport_size(PHONE)
    load = FirstLoad(page)
    open_page(page, server)
    expect(rows(page)).to_have_count(3, timeout=15_000)
    check_row(page, SLOW.fn, Truth.of([SLOW]))
    load.weigh()
    load.assert_scripts_and_styles()
    assert any(url.endswith("/functions.css") for url in load.sizes), sorted(load.sizes)
    assert not any("uplot" in url.lower() for url in load.sizes), "the chart library is in the first load"
    assert load.frames, "no websocket data arrived"
    load.assert_within_budget("the Functions page's first load")

    assert fits(page) is None, fits(page)
    shape = row(page, SLOW.fn).evaluate(
        """(tr) => ({
            display: getComputedStyle(tr).display,
            right: tr.getBoundingClientRect().right,
            labels: [...tr.cells].map((td) => td.dataset.label || ""),
            name: tr.cells[0].textContent,
        })"""
    )
    assert shape["display"] == "grid", shape
    assert shape["right"] <= PHONE["width"], shape
    assert shape["name"] == SLOW.fn, shape
    assert shape["labels"][1:5] == ["Runs", "Failed", "Fail rate", "Retried"], shape["labels"]

    row(page, SLOW.fn).get_by_role("button", name=SLOW.fn).click()
    canvas = page.locator("#fn-detail .uplot canvas")
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert fits(page) is None, fits(page)

    page.set_viewport_size(TABLET)
    expect(rows(page).first).to_have_css("display", "table-row")
    scroll = page.locator('[data-widget="functions"] .tbl-scroll')
    assert scroll.evaluate("(box) => box.scrollWidth > box.clientWidth"), "the table fits: nothing to scroll"
    assert fits(page) is None, fits(page)
    # The chart follows the new width.
    page.wait_for_function(
        """() => {
            const canvas = document.querySelector("#fn-detail .uplot canvas");
            const host = document.querySelector('#fn-detail [data-f="plot"]');
            return !!canvas && Math.abs(canvas.getBoundingClientRect().width - host.clientWidth) <= 1;
        }"""
    )
