"""The Failures page (/admin/jobs/failures) and the Overview's Top Failure Groups in a real Chromium, against a real
server and a real Redis: failed jobs grouped by cause live (exception type, normalised message, the job's own
innermost frame), their counts, functions, channels, New badge and sparkline, the search; a group's samples and a
sample's traceback in the job details; a two-phase retry of a group by an operator that the simulated job system
really does (and a viewer who may not); mute and unmute and the hot issue they silence; the hot issue's link to the
group; the page on a phone, and its first load.

Most jobs are the tests' own, published as a native source does (docs/protocol.md section 1.1) with realistic
Python tracebacks, so the groups the page must show are known. The retry needs a job system that answers
`retry` (docs/protocol.md section 2): there the simulated fleet (`jobpulse simulate`, publishing nothing on its
own: --rate 0) runs jobs the test queues through its control channel, forced to fail their first attempt with the
simulator's own realistic tracebacks. Deadlines are functional (`expect` and `wait_for_function` poll until true);
nothing sleeps to assert.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import redis

from server.streams.core.fingerprint import cause
from tests.conftest import LiveServer, SimulatedFleet, users_env
from tests.e2e.support import (
    FirstLoad,
    Locator,
    Page,
    Source,
    expect,
    open_live,
    tag,
    tagged,
    watch_all,
)
from tests.e2e.test_actions import commands_sent, sign_in, toast
from tests.e2e.test_phone import PHONE, fits

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("console_errors")]

FAILURES = "/admin/jobs/failures"
OVERVIEW = "/admin/jobs/overview"
AUDIT = "/admin/jobs/audit"
TABLE = "/admin/jobs/table"
RUNNER = "e2e-fg-runner"  # never beats: its job events alone say what it ran
EMPTY = "No job has failed since jobpulse started watching."

# Frames a traceback passes through before the job's own code: the job system's and the interpreter's (library
# frames, which a fingerprint skips when it picks the job's own frame).
RQ = ("/srv/app/.venv/lib/python3.12/site-packages/rq/job.py", 1326, "_execute", "return self.func(*self.args)")
STRPTIME = ("/usr/lib/python3.12/_strptime.py", 554, "_strptime", 'raise ValueError("time data %r does not match")')
REQUESTS = (
    "/srv/app/.venv/lib/python3.12/site-packages/requests/adapters.py",
    507,
    "send",
    "raise ConnectTimeout(e, request)",
)


def trace(frames: list[tuple[str, int, str, str]], last: str) -> str:
    """A Python traceback through `frames` (outermost first) ending in the exception line `last`."""
    lines = ["Traceback (most recent call last):"]
    for path, line, func, code in frames:
        lines += [f'  File "{path}", line {line}, in {func}', f"    {code}"]
    return "\n".join([*lines, last])


@dataclass(frozen=True)
class Failure:
    """One failed job's error line and traceback, and the function and channel it ran as."""

    error: str
    traceback: str
    fn: str
    channel: str

    @property
    def group(self) -> str:
        """The fingerprint jobpulse groups it by (the li's data-key)."""
        return cause(self.error, self.traceback).fingerprint


def charge(customer: str, fn: str = "billing.charge", channel: str = "billing", line: int = 88) -> Failure:
    """A KeyError raised in billing/charges.py's charge_customer: one cause whatever the customer (or the line)."""
    error = f"KeyError: '{customer}'"
    frames = [RQ, ("/srv/app/billing/charges.py", line, "charge_customer", "plan = PLANS[customer_id]")]
    return Failure(error, trace(frames, error), fn, channel)


def refund(customer: str) -> Failure:
    """The same exception and message as `charge`, raised by another line of the job's own code: another cause."""
    error = f"KeyError: '{customer}'"
    frames = [RQ, ("/srv/app/billing/refunds.py", 41, "refund", "charge = CHARGES[customer_id]")]
    return Failure(error, trace(frames, error), "billing.refund", "billing")


def bad_date(text: str) -> Failure:
    """A ValueError raised inside the standard library, called from imports/rows.py's parse_date."""
    error = f"ValueError: time data '{text}' does not match format '%Y-%m-%d'"
    own = ("/srv/app/imports/rows.py", 63, "parse_date", "return datetime.strptime(text, '%Y-%m-%d')")
    return Failure(error, trace([RQ, own, STRPTIME], error), "imports.parse_rows", "imports")


def timeout(host: str) -> Failure:
    """A requests ConnectTimeout from a library, called from notify/webhooks.py's deliver."""
    error = f"requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='{host}', port=443): timed out"
    own = ("/srv/app/notify/webhooks.py", 120, "deliver", "response = session.post(url, json=body, timeout=5)")
    return Failure(error, trace([RQ, own, REQUESTS], error), "notify.deliver", "webhooks")


def duplicate(email: str) -> Failure:
    error = (
        f'psycopg.errors.UniqueViolation: duplicate key value violates unique constraint "users_email_key" ({email})'
    )
    own = ("/srv/app/accounts/signup.py", 30, "create_user", "cursor.execute(INSERT_USER, row)")
    return Failure(error, trace([RQ, own], error), "accounts.signup", "default")


def division(report: int) -> Failure:
    error = "ZeroDivisionError: division by zero"
    own = ("/srv/app/reports/metrics.py", 17 + report, "conversion_rate", "return orders / visits")
    return Failure(error, trace([RQ, own], error), "reports.daily", "reports")


def fail(source: Source, job: str, failure: Failure) -> None:
    """Publish one job from queued to failed (one attempt, no more), in one message."""
    fields = {"fn": failure.fn, "channel": failure.channel}
    ran = {"src": RUNNER, "runner": RUNNER, **fields}
    start = time.time() - 1
    source.publish(
        [
            source.job_message("queued", job, ts=start, queued_at=start, max_attempts=1, **fields),
            source.job_message("started", job, ts=start + 0.2, started_at=start + 0.2, **ran),
            source.job_message("failed", job, error=failure.error, traceback=failure.traceback, duration=0.5, **ran),
        ]
    )


# -- fixtures ----------------------------------------------------------------------------------------------


def finish(live: LiveServer) -> None:
    output = live.finish()
    assert "Traceback" not in output, f"the server logged a traceback:\n{output}"


@pytest.fixture
def server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    """A real jobpulse in dev mode (everyone may look and act), folding four times a second."""
    live = LiveServer(redis_url, prefix, {"JOBPULSE_CLOCK_MS": "250"}).start()
    yield live
    finish(live)


@pytest.fixture
def users_server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    """A real jobpulse with real sign-in (vera, oscar, ada), folding four times a second."""
    live = LiveServer(redis_url, prefix, users_env(JOBPULSE_CLOCK_MS="250", JOBPULSE_COMMAND_RATE="100000")).start()
    yield live
    finish(live)


@pytest.fixture
def source(redis_url: str, prefix: str) -> Iterator[Source]:
    with Source.connect(redis_url, prefix, producer="e2e-producer", job_fields={"attempt": 1}) as source:
        yield source


# -- helpers -----------------------------------------------------------------------------------------------


def open_page(page: Page, server: LiveServer, path: str = FAILURES) -> Page:
    return open_live(page, server.url + path)


def groups(page: Page) -> Locator:
    return page.locator('main [data-widget="failure_groups"]:not([data-compact]) li.fg-group')


def group(page: Page, key: str) -> Locator:
    return page.locator(f'main [data-widget="failure_groups"]:not([data-compact]) li.fg-group[data-key="{key}"]')


def top(page: Page) -> Locator:
    """The Overview's Top Failure Groups card."""
    return page.locator('[data-widget="failure_groups"][data-compact]')


def issue(page: Page, key: str) -> Locator:
    return page.locator(f'[data-widget=hot_issues] li[data-key="failure_group:{key}"]')


def bars(spark: Locator) -> int:
    """The bars the sparkline draws (each a minute with failures), after checking its path is only bars."""
    d = spark.locator("path").get_attribute("d") or ""
    assert re.fullmatch(r"(M[\d.]+ 20V[\d.]+)*", d), d
    return d.count("M")


def check_group(line: Locator, failure: Failure, count: int, where: str) -> None:
    """The new group's line shows its cause, its count (all in the last hour), where it failed and its trend."""
    expect(line.locator(".fg-count")).to_have_text(str(count), timeout=15_000)
    found = cause(failure.error, failure.traceback)
    expect(line.locator(".fg-type")).to_have_text(found.type)
    expect(line.locator(".fg-message")).to_have_text(f": {found.message}")
    expect(line.locator(".fg-hour")).to_have_text(f"{count} in the last hour")
    expect(line.locator(".fg-where")).to_have_text(where)
    expect(line.locator(".fg-when")).to_have_text(re.compile(r"^first \S.* · last \S"))
    expect(line.locator(".fg-badges .badge")).to_have_text(["New"])
    spark = line.locator("svg.fg-spark")
    expect(spark).to_have_attribute("aria-label", f"{count} failures in the last 60 minutes")
    assert 1 <= bars(spark) <= 2, "one minute's bar (two when a minute ended between the failures)"
    box = spark.locator("path").bounding_box()
    assert box is not None and box["height"] > 0, "the sparkline draws nothing visible"


# -- tests -------------------------------------------------------------------------------------------------


def test_groups_appear_live_with_their_cause_counts_and_trend_and_the_search_narrows_them(
    page: Page, server: LiveServer, source: Source
) -> None:
    """Failed jobs become groups as they arrive: two KeyErrors of different customers raised by one line are one
    group (the quoted key set aside), the same KeyError raised elsewhere another, a ValueError raised inside the
    standard library a third, by the job's own frame; each with its count, functions, channels, New badge and a
    sparkline bar. A new failure of a group changes its line in place and brings it to the top; the search narrows
    the groups by exception, message, frame, function or channel."""
    open_page(page, server)
    card = page.locator('[data-widget="failure_groups"]')
    empty = card.locator('[data-f="empty"]')
    expect(empty).to_have_text(EMPTY)
    expect(empty).to_be_visible()

    # One cause, three jobs: two functions (both call charge_customer), two channels, and a deploy moved the line.
    fail(source, "j-charge-1", charge("cus_1"))
    fail(source, "j-charge-2", charge("cus_2", line=91))
    fail(source, "j-renew-1", charge("cus_NffrFeUfNV2Hib", fn="billing.renew", channel="renewals"))
    fail(source, "j-date-1", bad_date("31/02/2024"))
    fail(source, "j-date-2", bad_date("yesterday"))
    fail(source, "j-refund-1", refund("cus_1"))
    expect(groups(page)).to_have_count(3, timeout=15_000)
    expect(empty).to_be_hidden()
    charges, dates, refunds = charge("cus_1").group, bad_date("x").group, refund("x").group
    assert len({charges, dates, refunds}) == 3
    # The groups seen most lately first.
    assert groups(page).evaluate_all("(lis) => lis.map((li) => li.dataset.key)") == [refunds, dates, charges]

    check_group(
        group(page, charges), charge("cus_1"), 3,
        "at billing/charges.py in charge_customer · billing.charge (2), billing.renew (1) · on billing, renewals",
    )  # fmt: skip
    check_group(
        group(page, dates), bad_date("x"), 2, "at imports/rows.py in parse_date · imports.parse_rows (2) · on imports"
    )
    check_group(
        group(page, refunds), refund("x"), 1, "at billing/refunds.py in refund · billing.refund (1) · on billing"
    )
    expect(group(page, charges).locator(".fg-message")).to_have_text(": '<str>'")
    expect(group(page, dates).locator(".fg-message")).to_have_text(": time data '<str>' does not match format '<str>'")
    expect(card.locator('[data-f="summary"]')).to_have_text("3 shown of 3 groups")
    # Each group's own link target, for a hot issue's "Open the group".
    expect(group(page, charges)).to_have_attribute("id", f"g-{charges}")

    # Live: one more failure of the ValueError's cause changes its line in place, and brings it to the top.
    tag(group(page, dates), "dates")
    tag(group(page, charges), "charges")
    fail(source, "j-date-3", bad_date("2024-13-45"))
    expect(group(page, dates).locator(".fg-count")).to_have_text("3", timeout=15_000)
    expect(group(page, dates).locator(".fg-hour")).to_have_text("3 in the last hour")
    expect(group(page, dates).locator("svg.fg-spark")).to_have_attribute(
        "aria-label", "3 failures in the last 60 minutes"
    )
    assert tagged(group(page, dates), "dates"), "the group's line was replaced instead of changed in place"
    assert tagged(group(page, charges), "charges"), "another group's line was replaced"
    assert groups(page).evaluate_all("(lis) => lis.map((li) => li.dataset.key)") == [dates, refunds, charges]
    expect(card.locator('[data-f="summary"]')).to_have_text("3 shown of 3 groups")

    # The search ("/" goes to it), in any case: by exception, function, frame, channel, message.
    samples = group(page, charges).get_by_role("button", name="Samples")
    samples.click()
    expect(samples).to_have_attribute("aria-expanded", "true")
    page.locator("h1").click()
    page.keyboard.press("/")
    search = page.locator("#fg-q")
    expect(search).to_be_focused()
    page.keyboard.type("valueerror")
    expect(groups(page)).to_have_count(1)
    expect(group(page, dates)).to_be_visible()
    expect(card.locator('[data-f="summary"]')).to_have_text("1 shown of 3 groups")
    for text, keys in (
        ("KeyError", [refunds, charges]),
        ("billing.renew", [charges]),
        ("refunds.py", [refunds]),
        ("RENEWALS", [charges]),
        ("does not match", [dates]),
    ):
        search.fill(text)
        expect(groups(page)).to_have_count(len(keys))
        assert groups(page).evaluate_all("(lis) => lis.map((li) => li.dataset.key)") == keys, text
    search.fill("nothing-like-it")
    expect(groups(page)).to_have_count(0)
    expect(empty).to_be_visible()
    expect(empty).to_have_text("No failure group matches the search.")
    search.fill("")
    expect(groups(page)).to_have_count(3)
    expect(empty).to_be_hidden()
    # A group the search hid comes back as it was: the same line, its samples still open.
    assert tagged(group(page, charges), "charges"), "a group the search hid came back as a new line"
    expect(samples).to_have_attribute("aria-expanded", "true")
    expect(group(page, charges).locator(".fg-samples")).to_be_visible()


def test_samples_open_and_a_sample_shows_its_traceback(page: Page, server: LiveServer, source: Source) -> None:
    """Samples opens a group's first error and its newest failed jobs, newest first; a job opens its details, whose
    Error tab shows that job's own traceback. Samples again closes them."""
    for n, customer in enumerate(("cus_1", "cus_2", "cus_3")):
        fail(source, f"j-charge-{n}", charge(customer))
    fail(source, "j-date-1", bad_date("31/02/2024"))
    open_page(page, server)
    line = group(page, charge("x").group)
    expect(line.locator(".fg-count")).to_have_text("3", timeout=15_000)

    samples = line.get_by_role("button", name="Samples")
    box = line.locator(".fg-samples")
    expect(samples).to_have_attribute("aria-expanded", "false")
    expect(box).to_be_hidden()
    samples.click()
    expect(samples).to_have_attribute("aria-expanded", "true")
    expect(box).to_be_visible()
    expect(box.locator(".fg-example")).to_have_text("KeyError: 'cus_1'")  # the group's first error, as it came
    jobs = box.locator(".fg-sample-list button[data-job]")
    expect(jobs).to_have_text(["j-charge-2", "j-charge-1", "j-charge-0"])  # newest first
    expect(box.locator(".fg-sample-list li").first).to_contain_text("billing.charge on billing · KeyError: 'cus_3'")
    # Another group stays closed.
    dates = group(page, bad_date("x").group)
    expect(dates.locator(".fg-samples")).to_be_hidden()
    # Another group's failure leaves these samples as they are: the button under the keyboard's focus stays.
    jobs.first.focus()
    tag(jobs.first, "newest")
    fail(source, "j-date-2", bad_date("2024-02-30"))
    expect(dates.locator(".fg-count")).to_have_text("2", timeout=15_000)
    assert tagged(jobs.first, "newest"), "the samples were drawn again though they did not change"
    expect(jobs.first).to_be_focused()

    jobs.filter(has_text="j-charge-1").click()
    dialog = page.locator("#job-modal")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#jm-title")).to_have_text("Job j-charge-1")
    error_tab = dialog.locator('[role="tab"][data-tab="error"]')
    expect(error_tab).to_have_text("Error •")
    error_tab.click()
    expect(dialog.locator('[data-f="error"]')).to_have_text("KeyError: 'cus_2'")
    expect(dialog.locator('[data-f="traceback"]')).to_have_text(charge("cus_2").traceback)
    expect(dialog.locator('[data-f="traceback"]')).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    samples.click()
    expect(samples).to_have_attribute("aria-expanded", "false")
    expect(box).to_be_hidden()


# -- the retry, against the simulated job system ---------------------------------------------------------------

SIM_FN = "billing.charge_customer"  # not in the simulator's catalogue: its default profile, one attempt
SIM_FRAME = "billing/tasks.py in charge_customer"  # the job's own frame in the simulator's tracebacks of it


@pytest.fixture
def fleet(users_server: LiveServer) -> Iterator[SimulatedFleet]:
    """The simulated job system, publishing no jobs of its own (--rate 0): two runners on `email`, and its broker,
    which answers `run` and `retry` on the control channel."""
    sim = SimulatedFleet(
        users_server, "--runners", "2", "--channels", "1", "--rate", "0", "--seed", "23",
        "--time-scale", "0.3", "--silent-after", "never", "--heartbeat", "1",
    )  # fmt: skip
    sim.wait_for_runners(2)
    yield sim
    sim.stop()


def queue_failing_jobs(server: LiveServer, count: int) -> None:
    """Have the simulated job system queue `count` jobs whose first attempt fails (the simulator's `_sim` payload),
    with one attempt each: they end failed, with the simulator's realistic errors and tracebacks."""
    client = redis.Redis.from_url(server.redis_url)
    try:
        for n in range(count):
            command = {
                "v": 1, "type": "command", "id": f"e2e-{uuid.uuid4().hex[:10]}", "action": "run", "to": "system",
                "args": {"fn": SIM_FN, "channel": "email", "payload": {"customer": f"cus_{n}", "_sim": {"fail": 1}},
                         "max_attempts": 1},
                "ts": time.time(), "reply_to": f"{server.prefix}:replies",
            }  # fmt: skip
            assert client.publish(f"{server.prefix}:control", json.dumps(command)), "the simulator does not listen"
    finally:
        client.close()


# The fleet jobs' groups on the page: {fingerprint: count}.
SIM_GROUPS = """(frame) => Object.fromEntries([...document.querySelectorAll("li.fg-group")]
  .filter((li) => li.querySelector(".fg-where").textContent.startsWith("at " + frame))
  .map((li) => [li.dataset.key, Number(li.querySelector(".fg-count").textContent)]))"""


def test_an_operator_retries_a_group_in_two_phases_and_a_viewer_may_not(
    page: Page, browser: Browser, users_server: LiveServer, fleet: SimulatedFleet, console_errors: list[str]
) -> None:
    """oscar retries a group: the confirm dialog counts the group's failed jobs and names them; Cancel sends nothing
    more; Retry has the job system queue each again (their second attempt succeeds, as the jobs table shows), a
    toast says how many, a new preview finds none left, and the audit log has it all. vera (viewer) sees Retry and
    Mute disabled, saying why."""
    server = users_server
    sign_in(page, server, "oscar", FAILURES)
    queue_failing_jobs(server, 6)
    # The simulator picks each failure's error from the function's kinds (a KeyError or a ValueError): one group
    # or two, six failures in all.
    page.wait_for_function(
        f"(frame) => Object.values(({SIM_GROUPS})(frame)).reduce((a, b) => a + b, 0) === 6", arg=SIM_FRAME,
        timeout=30_000,
    )  # fmt: skip
    found: dict[str, int] = page.evaluate(SIM_GROUPS, SIM_FRAME)
    key, count = max(found.items(), key=lambda kv: kv[1])
    assert count >= 3, found
    line = group(page, key)
    expect(line.locator(".fg-where")).to_have_text(f"at {SIM_FRAME} · {SIM_FN} ({count}) · on email")
    line.get_by_role("button", name="Samples").click()
    shown = set(line.locator(".fg-sample-list button[data-job]").all_inner_texts())
    assert len(shown) == min(count, 5), shown

    retry = line.get_by_role("button", name="Retry failed jobs…")
    expect(retry).to_be_enabled()
    retry.click()
    confirm = page.locator("dialog.ad-confirm")
    expect(confirm).to_be_visible(timeout=15_000)
    expect(confirm).to_contain_text("Retry the group's failed jobs")
    expect(confirm.locator(".ad-count")).to_have_text(f"Would affect {count}")
    expect(confirm.locator(".ad-message")).to_have_text(
        re.compile(rf"^Retry {count} failed jobs of the group \w+Error: ")
    )
    sample = confirm.locator(".ad-sample li")
    expect(sample).to_have_count(count)  # every one: fewer than the preview's sample of ten
    jobs = sample.all_inner_texts()
    assert shown <= set(jobs), (shown, jobs)
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(retry).to_be_focused()
    sent = [c for c in commands_sent(page) if c["action"] == "group.retry"]
    assert [c.get("phase") for c in sent] == ["preview"] and sent[0]["args"] == {"group": key}, sent

    retry.click()
    expect(confirm.locator(".ad-count")).to_have_text(f"Would affect {count}", timeout=15_000)
    confirm.get_by_role("button", name="Retry", exact=True).click()
    expect(confirm).to_be_hidden(timeout=15_000)
    expect(toast(page, "success")).to_have_text(
        re.compile(rf"Retried {count} failed jobs of the group(?!;)"), timeout=15_000
    )
    sent = [c for c in commands_sent(page) if c["action"] == "group.retry"]
    assert [c.get("phase") for c in sent] == ["preview", "preview", "execute"], sent
    assert sent[2]["confirm"] and sent[2]["args"] == {"group": key}, sent

    # The job system ran each again, and its second attempt succeeded: the jobs table says so.
    page.goto(f"{server.url}{TABLE}?q=fn%3A{SIM_FN}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    for job in jobs:
        expect(page.locator(f'#jt-rows tr[data-key="{job}"] .badge')).to_have_text("completed", timeout=20_000)
    # None of the group's jobs is failed now: a new preview counts none. Nothing failed again: the count stays.
    open_page(page, server)
    line = group(page, key)
    expect(line.locator(".fg-count")).to_have_text(str(count), timeout=15_000)
    line.get_by_role("button", name="Retry failed jobs…").click()
    expect(confirm.locator(".ad-count")).to_have_text("Would affect 0", timeout=15_000)
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()

    # The audit log has the retry, done, by oscar, with its preview.
    page.goto(server.url + AUDIT)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    done = page.locator("#audit-rows tr").filter(has_text="group.retry").filter(has_text="done")
    expect(done.first).to_be_visible(timeout=15_000)
    expect(done).to_have_count(1)
    expect(done.first).to_contain_text("oscar")
    expect(done.first).to_contain_text(key)
    expect(page.locator("#audit-rows tr").filter(has_text="group.retry").filter(has_text="preview")).to_have_count(3)

    # A viewer sees the group, and its Retry and Mute disabled, saying why; Samples still opens.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        viewer = sign_in(watch_all(context.new_page(), console_errors), server, "vera", FAILURES)
        theirs = group(viewer, key)
        expect(theirs.locator(".fg-count")).to_have_text(str(count), timeout=15_000)
        for name in ("Retry failed jobs…", "Mute 24 h"):
            button = theirs.get_by_role("button", name=name)
            expect(button).to_be_disabled()
            expect(button).to_have_attribute("title", re.compile(r": .*operator"))
            expect(button).to_have_attribute("aria-describedby", "fg-note")
        note = viewer.locator("#fg-note")
        expect(note).to_be_visible()
        expect(note).to_contain_text("operator")
        expect(note).to_contain_text("Retry failed jobs…")
        samples = theirs.get_by_role("button", name="Samples")
        expect(samples).to_be_enabled()
        samples.click()
        expect(theirs.locator(".fg-samples")).to_be_visible()
        assert not commands_sent(viewer)
    finally:
        context.close()


# -- mute ---------------------------------------------------------------------------------------------------


def test_mute_hides_a_groups_hot_issue_and_unmute_brings_it_back(
    page: Page, users_server: LiveServer, source: Source, console_errors: list[str]
) -> None:
    """oscar mutes a new group: it says until when, the Overview's hot issue for it goes and the Top Failure Groups
    card leaves it out; "Show muted groups" off hides it on the Failures page. Unmute brings all of it back."""
    server = users_server
    sign_in(page, server, "oscar", OVERVIEW)
    charges, dates = charge("x").group, bad_date("x").group
    for n in range(3):  # a new cause with three failures: a hot issue (JOBPULSE_GROUP_NEW_MIN, 3)
        fail(source, f"j-charge-{n}", charge(f"cus_{n}"))
    for n in range(2):  # two: listed, no hot issue
        fail(source, f"j-date-{n}", bad_date(f"2024-02-3{n}"))
    overview = page
    hot = issue(overview, charges)
    expect(hot).to_be_visible(timeout=15_000)
    expect(hot).to_contain_text("New failure: KeyError in billing.charge")
    expect(issue(overview, dates)).to_have_count(0)
    card = top(overview)
    expect(card.locator("li.fg-group")).to_have_count(2)

    failures = open_page(watch_all(page.context.new_page(), console_errors), server)
    line = group(failures, charges)
    expect(line.locator(".fg-count")).to_have_text("3", timeout=15_000)
    mute = line.get_by_role("button", name="Mute 24 h")
    unmute = line.get_by_role("button", name="Unmute")
    expect(unmute).to_be_hidden()
    mute.click()
    expect(toast(failures, "success")).to_contain_text("Muted KeyError: '<str>' for 1440 min", timeout=15_000)
    expect(unmute).to_be_focused()  # Unmute takes the place of Mute, and its focus
    badge = line.locator(".fg-badges .badge").filter(has_text="Muted until")
    expect(badge).to_have_text(re.compile(r"^Muted until \S"))
    expect(badge).to_have_attribute("title", "Muted by oscar")
    expect(line).to_have_class(re.compile(r"\bmuted-group\b"))
    expect(mute).to_be_hidden()
    expect(unmute).to_be_visible()
    expect(line.locator(".fg-count")).to_have_text("3")  # still counted
    summary = failures.locator('main [data-widget="failure_groups"] [data-f="summary"]')
    expect(summary).to_have_text("2 shown of 2 groups · 1 muted")
    sent = [c for c in commands_sent(failures) if c["action"] == "group.mute"]
    assert len(sent) == 1 and sent[0]["args"] == {"group": charges, "minutes": 1440} and "phase" not in sent[0], sent

    # The Overview: its hot issue is gone, and the top groups leave it out.
    expect(issue(overview, charges)).to_have_count(0, timeout=15_000)
    expect(card.locator(f'li.fg-group[data-key="{charges}"]')).to_have_count(0)
    expect(card.locator("li.fg-group")).to_have_count(1)

    # Show muted groups, off: it goes from the list; on: back.
    show = failures.locator("#fg-muted")
    show.uncheck()
    expect(line).to_have_count(0)
    expect(groups(failures)).to_have_count(1)
    expect(summary).to_have_text("1 shown of 2 groups · 1 muted")
    show.check()
    expect(line).to_be_visible()
    show.uncheck()

    # Fails again while muted: counted, still no hot issue.
    fail(source, "j-charge-9", charge("cus_9"))
    show.check()
    expect(line.locator(".fg-count")).to_have_text("4", timeout=15_000)
    expect(issue(overview, charges)).to_have_count(0)

    unmute.click()
    expect(toast(failures, "success").filter(has_text="no longer muted")).to_have_count(1, timeout=15_000)
    expect(mute).to_be_focused()
    expect(badge).to_have_count(0)
    expect(line).not_to_have_class(re.compile(r"\bmuted-group\b"))
    expect(mute).to_be_visible()
    expect(summary).to_have_text("2 shown of 2 groups")
    expect(issue(overview, charges)).to_be_visible(timeout=15_000)
    expect(card.locator(f'li.fg-group[data-key="{charges}"]')).to_be_visible()
    # Unmuted, "Show muted groups" off hides nothing.
    show.uncheck()
    expect(groups(failures)).to_have_count(2)


# -- the Overview ------------------------------------------------------------------------------------------


def test_the_overview_lists_the_top_groups_and_a_hot_issue_opens_its_group(
    page: Page, server: LiveServer, source: Source
) -> None:
    """The Top Failure Groups card lists the five groups that failed most in the last hour, most first, with their
    counts; a new group with three failures or more is a hot issue whose "Open the group" lands on the Failures
    page with that group's samples open."""
    causes: list[tuple[Callable[[int], Failure], int, str]] = [
        (lambda n: charge(f"cus_{n}"), 6, "billing.charge"),
        (lambda n: bad_date(f"2024-02-{30 + n}"), 5, "imports.parse_rows"),
        (lambda n: refund(f"cus_{n}"), 4, "billing.refund"),
        (lambda n: timeout(f"hooks-{n}.example.com"), 3, "notify.deliver"),
        (lambda n: duplicate(f"user{n}@example.com"), 2, "accounts.signup"),
        (division, 1, "reports.daily"),
    ]
    open_page(page, server, OVERVIEW)
    card = top(page)
    expect(card.locator('[data-f="empty"]')).to_have_text("No job failed in the last hour.")
    expect(card.locator('[data-f="empty"]')).to_be_visible()
    keys = []
    for make, count, _ in causes:
        for n in range(count):
            fail(source, f"j-{make(n).fn}-{n}", make(n))
        keys.append(make(0).group)
    assert len(set(keys)) == 6

    lines = card.locator("li.fg-group")
    expect(lines).to_have_count(5, timeout=15_000)
    expect(lines.locator(".fg-hour")).to_have_text([f"{n} in the last hour" for _, n, _ in causes[:5]])
    expect(lines.locator(".fg-count")).to_have_text([str(n) for _, n, _ in causes[:5]])
    assert lines.evaluate_all("(lis) => lis.map((li) => li.dataset.key)") == keys[:5]
    expect(lines.locator(".fg-type")).to_have_text(
        ["KeyError", "ValueError", "KeyError", "requests.exceptions.ConnectTimeout", "psycopg.errors.UniqueViolation"]
    )
    expect(lines.nth(3).locator(".fg-message")).to_have_text(": HTTPSConnectionPool(host='<str>', port=<n>): timed out")
    expect(lines.nth(3).locator(".fg-where")).to_have_text(
        "at notify/webhooks.py in deliver · notify.deliver (3) · on webhooks"
    )
    expect(card.locator('[data-f="summary"]')).to_have_text("6 groups failing")
    # No actions in the card, no second element with a group's id on the page.
    expect(card.locator("button")).to_have_count(0)
    expect(card.locator("li[id]")).to_have_count(0)
    link = card.get_by_role("link", name="All failures")
    expect(link).to_have_attribute("href", FAILURES)

    # Hot issues: the four new groups with three failures or more.
    for key, (_, count, fn) in zip(keys, causes, strict=True):
        if count >= 3:
            expect(issue(page, key)).to_be_visible(timeout=15_000)
            expect(issue(page, key)).to_contain_text(f"in {fn}")
        else:
            expect(issue(page, key)).to_have_count(0)

    # The ValueError's "Open the group": the Failures page, that group's samples open and in view.
    wanted = keys[1]
    issue(page, wanted).get_by_role("link", name=re.compile("^Open the group")).click()
    expect(page).to_have_url(f"{server.url}{FAILURES}#g-{wanted}")
    line = group(page, wanted)
    samples = line.get_by_role("button", name="Samples")
    expect(samples).to_have_attribute("aria-expanded", "true", timeout=15_000)
    expect(line.locator(".fg-samples")).to_be_visible()
    expect(line.locator(".fg-sample-list button[data-job]")).to_have_count(5)
    expect(line.locator(".fg-example")).to_have_text(causes[1][0](0).error)
    expect(line).to_be_in_viewport()
    # The others stay closed; every group is listed.
    expect(page.locator(".fg-samples:visible")).to_have_count(1)
    expect(groups(page)).to_have_count(6)

    # A link to another group while on the page opens it too.
    page.evaluate("(key) => { location.hash = `#g-${key}`; }", keys[5])
    expect(group(page, keys[5]).get_by_role("button", name="Samples")).to_have_attribute("aria-expanded", "true")


# -- phone -------------------------------------------------------------------------------------------------


def test_on_a_phone_it_fits_and_its_first_load_is_light(page: Page, server: LiveServer, source: Source) -> None:
    """At 390x844 neither the Failures page nor the Overview scrolls sideways, long messages, frames and tracebacks
    included; the Failures page's first load (HTML, JS, CSS, the first second of data) stays under the budget, the
    job details' code not in it."""
    long_key = "cus_" + "Q" * 60
    for n in range(3):
        fail(source, f"j-charge-{n}", charge(f"{long_key}{n}", fn="billing.charge_customer_with_a_long_function_name"))
    fail(source, "j-timeout-1", timeout("hooks.very-long-subdomain-of-a-customer.example.com"))
    fail(source, "j-dup-1", duplicate("someone.with.a.long.address@example.com"))
    page.set_viewport_size(PHONE)
    load = FirstLoad(page)
    open_page(page, server)
    expect(groups(page)).to_have_count(3, timeout=15_000)
    load.weigh()
    load.assert_scripts_and_styles()
    assert any(url.endswith("/failures.css") for url in load.sizes), sorted(load.sizes)
    assert not any("job-modal" in url or "confirm" in url for url in load.sizes), sorted(load.sizes)
    assert load.frames, "no websocket data arrived"
    load.assert_within_budget("the Failures page's first load")

    assert fits(page) is None, fits(page)
    line = group(page, charge("x").group)
    line.get_by_role("button", name="Samples").click()
    expect(line.locator(".fg-samples")).to_be_visible()
    assert fits(page) is None, fits(page)
    box = line.locator("svg.fg-spark").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    # The tools wrap inside the width.
    for button in line.locator(".fg-tools button:visible").all():
        edge = button.bounding_box()
        assert edge is not None and edge["x"] + edge["width"] <= PHONE["width"], edge
    line.locator(".fg-sample-list button[data-job]").first.click()
    expect(page.locator("#job-modal #jm-title")).to_have_text("Job j-charge-2")
    page.keyboard.press("Escape")

    page.goto(server.url + OVERVIEW)
    expect(top(page).locator("li.fg-group")).to_have_count(3, timeout=15_000)
    assert fits(page) is None, fits(page)
