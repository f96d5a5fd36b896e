"""Operator actions in a real Chromium, against a real server with real sign-in and the simulated fleet.

The server runs with JOBPULSE_AUTH=users and the test users of tests/conftest.py (`users_env`): vera
(viewer), oscar (operator) and ada (admin). Each browser context signs in through the login page, so the
pages get a real session cookie and the websocket a real user. Actions go over the socket to the simulated
job system, which really purges and drains. Deadlines are generous and functional (`expect(...)` and
`wait_for_function` poll until true); nothing sleeps to assert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import TEST_USERS, LiveServer, SimulatedFleet, users_env
from tests.e2e.support import FirstLoad, Locator, Page, expect, install_ws_probe, preview_purge

if TYPE_CHECKING:
    from playwright.sync_api import Response

pytestmark = pytest.mark.e2e

MANAGE = "/admin/jobs/manage"
RUNNERS = "/admin/jobs/runners"
AUDIT = "/admin/jobs/audit"
UNSERVED = "webhooks-legacy"  # the simulator's channel that gets jobs and has no runner: it backs up

# Records every text the purge tile's queued cell of a channel shows from now on, so a test can tell that it
# reached 0 even if the simulator queues a new job a moment later.
QUEUED_RECORDER = """
(channel) => {
  window.__e2eQueued = [];
  const record = () => {
    const row = document.querySelector(`[data-part="purge"] tr[data-key="${channel}"]`);
    if (row) window.__e2eQueued.push(row.cells[1].textContent);
  };
  record();
  new MutationObserver(record).observe(document.querySelector('[data-part="purge"]'),
    { subtree: true, childList: true, characterData: true });
}
"""


@pytest.fixture
def server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    """A jobpulse with real sign-in (users vera, oscar, ada)."""
    live = LiveServer(redis_url, prefix, users_env(JOBPULSE_SESSION_CHECK_S="1")).start()
    yield live
    output = live.finish()
    assert "Traceback" not in output, f"the server logged a traceback:\n{output}"


@pytest.fixture
def fleet(server: LiveServer) -> Iterator[SimulatedFleet]:
    """A small, slow simulated fleet: few enough new jobs that a purged channel stays empty for a moment."""
    sim = SimulatedFleet(
        server, "--runners", "4", "--channels", "3", "--rate", "6", "--seed", "11",
        "--time-scale", "0.3", "--silent-after", "never", "--heartbeat", "1",
    )  # fmt: skip
    sim.wait_for_runners(4)  # asks the HTTP API with an admin token when the server signs users in
    yield sim
    sim.stop()


# -- helpers -----------------------------------------------------------------------------------------


class Load(FirstLoad):
    """FirstLoad without redirect responses (they have no body to weigh; what they lead to is weighed)."""

    def __init__(self, page: Page) -> None:
        super().__init__(page)
        self.redirects: list[str] = []

    def _on_response(self, response: Response) -> None:
        if 300 <= response.status < 400:
            self.redirects.append(f"{response.status} {response.url}")
        else:
            super()._on_response(response)


def sign_in(page: Page, server: LiveServer, name: str, path: str) -> Page:
    """Sign `name` in through the login page, landing on `path`; return once the page's socket is live."""
    install_ws_probe(page)
    page.goto(f"{server.url}/login?next={path}")
    page.locator("input[name=username]").fill(name)
    page.locator("input[name=password]").fill(TEST_USERS[name][1])
    page.locator("form.login-card button[type=submit]").click()
    expect(page).to_have_url(re.compile(re.escape(server.url + path)))
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#who .who-name")).to_have_text(name)
    expect(page.locator("#who .who-role")).to_have_text(TEST_USERS[name][0])
    return page


def commands_sent(page: Page) -> list[dict]:
    """The `cmd` frames the page sent over its socket (WS_PROBE)."""
    frames = [json.loads(text) for text in page.evaluate("() => window.__e2eWs.sent")]
    return [frame for frame in frames if frame.get("type") == "cmd"]


def toast(page: Page, kind: str) -> Locator:
    return page.locator(f"#toasts .toast-{kind}")


# -- tests -------------------------------------------------------------------------------------------


def test_purge_previews_confirms_toasts_and_audits_live(page: Page, server: LiveServer, fleet: SimulatedFleet) -> None:
    """ada purges the backed-up channel: the preview shows a count, Confirm purges it, a toast says so, the
    tile's queued count drops to 0, and the audit row and a toast appear live on a second browser page (another
    user's)."""
    sign_in(page, server, "ada", MANAGE)
    # A second browser (its own context, its own session): oscar watches the audit log.
    watcher = page.context.browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[union-attr]
    try:
        audit = sign_in(watcher.new_page(), server, "oscar", AUDIT)
        expect(audit.locator("#audit-summary")).not_to_have_text("Loading…")

        purge_row = page.locator(f'[data-part="purge"] tr[data-key="{UNSERVED}"]')
        expect(purge_row.locator("td").nth(1)).not_to_have_text("0", timeout=30_000)  # it has backed up
        page.evaluate(QUEUED_RECORDER, UNSERVED)

        confirm = preview_purge(page, UNSERVED)
        expect(confirm.locator(".ad-count")).to_have_text(re.compile(r"^Would affect [1-9][\d,]*$"))
        expect(confirm.locator(".ad-expiry")).to_have_text(re.compile(r"^confirm within \d+s$"))
        expect(confirm.locator(".ad-sample li").first).to_have_text(re.compile(r"\S"))
        # Focus starts on Cancel (Enter on a fresh dialog destroys nothing), inside the dialog.
        assert page.evaluate("() => document.activeElement.textContent") == "Cancel"
        preview = [c for c in commands_sent(page) if c["action"] == "channel.purge"]
        assert [c.get("phase") for c in preview] == ["preview"], preview

        confirm.get_by_role("button", name="Purge").click()
        expect(confirm).to_be_hidden(timeout=15_000)
        expect(toast(page, "success")).to_have_count(1, timeout=15_000)
        expect(toast(page, "success")).to_contain_text("Done:")
        sent = [c for c in commands_sent(page) if c["action"] == "channel.purge"]
        assert [c.get("phase") for c in sent] == ["preview", "execute"], sent
        assert sent[1]["confirm"] and sent[1]["args"] == {"channel": UNSERVED}
        assert sent[0]["id"] != sent[1]["id"]

        # The page shows the emptied queue (the simulator may queue a new job a moment later: any 0 counts).
        page.wait_for_function("() => window.__e2eQueued.includes('0')", timeout=20_000)

        # The activity widget on this page, and the audit page of the other browser, show the purge live.
        mine = page.locator("#activity tbody tr").filter(has_text="channel.purge").filter(has_text="done")
        expect(mine.first).to_be_visible(timeout=15_000)
        expect(mine.first).to_contain_text("ada · admin")
        theirs = audit.locator("#audit-rows tr").filter(has_text="channel.purge").filter(has_text="done")
        expect(theirs.first).to_be_visible(timeout=15_000)
        expect(theirs.first).to_contain_text("ada")
        expect(theirs.first).to_contain_text(UNSERVED)
        # The preview is audited too, and shows as one.
        expect(audit.locator("#audit-rows tr").filter(has_text="preview").first).to_be_visible()
        # The other operator is told in a toast too (every page follows `notices`); ada is not told twice.
        expect(audit.locator(".toast-info")).to_contain_text("ada:", timeout=10_000)
        expect(page.locator(".toast-info")).to_have_count(0)
    finally:
        watcher.close()


def test_operator_drains_one_runner_from_its_card(page: Page, server: LiveServer, fleet: SimulatedFleet) -> None:
    """oscar (operator) drains one runner from its card, in one step: its status badge becomes draining, and the
    toast offers to undo it, which undrains it. A restart, which cannot be undone, asks first, naming the runner
    and what happens to its jobs; Cancel sends nothing more."""
    sign_in(page, server, "oscar", RUNNERS)
    cards = page.locator("#fleet .rcard")
    expect(cards).to_have_count(4, timeout=15_000)
    live = page.locator('#fleet .rcard[data-status="online"], #fleet .rcard[data-status="busy"]')
    expect(live.first).to_be_visible(timeout=15_000)
    runner = live.first.get_attribute("data-key")
    card = page.locator(f'#fleet .rcard[data-key="{runner}"]')
    drain = card.locator('[data-op="drain"]')
    expect(drain).to_have_text("Drain")
    expect(drain).to_be_enabled()
    drain.click()

    expect(toast(page, "success")).to_have_count(1, timeout=15_000)
    expect(card.locator(".badge")).to_have_text("draining", timeout=20_000)
    expect(drain).to_have_text("Undrain")  # the same button now undoes it
    sent = [c for c in commands_sent(page) if c["action"] == "runner.drain"]
    assert len(sent) == 1 and sent[0]["args"] == {"runners": [runner]} and "phase" not in sent[0], sent
    # The slip is one click from taken back: the toast's Undo undrains the same runner.
    toast(page, "success").get_by_role("button", name="Undo (undrain)").click()
    expect(card.locator(".badge")).not_to_have_text("draining", timeout=20_000)
    expect(drain).to_have_text("Drain")
    undone = [c for c in commands_sent(page) if c["action"] == "runner.undrain"]
    assert len(undone) == 1 and undone[0]["args"] == {"runners": [runner]}, undone
    # A restart asks first: the preview names the runner and what becomes of its jobs. Cancel: no execute.
    card.locator('[data-op="restart"]').click()
    confirm = page.locator("dialog.ad-confirm")
    expect(confirm).to_be_visible(timeout=15_000)
    expect(confirm).to_contain_text(f"Restart {runner}?")
    expect(confirm).to_contain_text("then restarts")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    restarts = [c for c in commands_sent(page) if c["action"] == "runner.restart"]
    assert [c.get("phase") for c in restarts] == ["preview"], restarts
    # A bulk drain is an admin's: with two runners selected, oscar's bulk Drain is disabled, saying why.
    others = [
        key
        for key in page.evaluate("() => [...document.querySelectorAll('#fleet .rcard')].map(c => c.dataset.key)")
        if key != runner
    ]
    for key in others[:2]:
        page.locator(f'#fleet .rcard[data-key="{key}"] .rc-select').check()
    bulk = page.locator('#bulkbar [data-bulk="drain"]')
    expect(bulk).to_be_disabled()
    expect(bulk).to_have_attribute("title", re.compile("admin role"))
    expect(page.locator("#bulk-note")).to_be_visible()
    expect(page.locator("#bulk-note")).to_contain_text("admin role")
    expect(page.locator('#bulkbar [data-bulk="ping"]')).to_be_enabled()  # ping is not a bulk-admin action


def test_viewer_sees_every_action_disabled_with_its_reason(
    page: Page, server: LiveServer, fleet: SimulatedFleet
) -> None:
    """vera (viewer) may change nothing: each action button is disabled and says why, visibly."""
    sign_in(page, server, "vera", MANAGE)
    buttons = page.locator(".ops-grid .tile-foot button")
    expect(buttons).to_have_count(6)
    for i in range(6):
        button = buttons.nth(i)
        expect(button).to_be_disabled()
        why_id = button.get_attribute("aria-describedby")
        assert why_id, "a disabled action points at its reason"
        why = page.locator(f"#{why_id}")
        expect(why).to_be_visible()
        expect(why).to_have_text(re.compile(r"\S+: \S"))
        reason = (why.text_content() or "").split(": ", 1)[1].rstrip(".")
        expect(button).to_have_attribute("title", re.compile(re.escape(reason)))
    assert not commands_sent(page)

    page.goto(server.url + RUNNERS)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#fleet .rcard").first).to_be_visible(timeout=15_000)
    for op in ("drain", "restart", "logs"):
        button = page.locator(f'#fleet .rcard [data-op="{op}"]').first
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("aria-describedby", "ops-note")
        expect(button).to_have_attribute("title", re.compile(r": \S"))
    expect(page.locator("#ops-note")).to_be_visible()
    expect(page.locator("#ops-note")).to_contain_text("Drain")
    for name in ("Pause", "Purge", "Clear stuck"):
        expect(
            page.locator("[data-widget=channels] tbody tr").first.get_by_role("button", name=re.compile(name)).first
        ).to_be_disabled()
    expect(page.locator("#cap-note")).to_be_visible()
    expect(page.locator(".page-head").get_by_role("button", name="Broadcast Config")).to_be_disabled()


def test_run_job_form_refuses_invalid_json_without_sending(
    page: Page, server: LiveServer, fleet: SimulatedFleet
) -> None:
    """The Run Simple Job form checks the payload in the browser: invalid JSON is refused and nothing is sent;
    a valid one is sent as an object and queued."""
    sign_in(page, server, "oscar", MANAGE)
    page.locator('[data-tile="run"] .tile-foot button').click()
    form = page.locator("dialog.ad-form")
    expect(form).to_be_visible()
    form.get_by_label("Function").fill("e2e.hello")
    expect(form.get_by_label("Channel").locator("option")).not_to_have_count(0, timeout=10_000)
    payload = form.get_by_label("Payload (JSON object)")
    payload.fill('{"user_id": 42,')
    form.get_by_role("button", name="Run job").click()
    expect(payload).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".af-error").filter(has_text="not valid JSON").first).to_be_visible()
    expect(payload).to_be_focused()
    payload.fill("[1, 2]")
    form.get_by_role("button", name="Run job").click()
    expect(form.locator(".af-error").filter(has_text="must be a JSON object").first).to_be_visible()
    expect(form).to_be_visible()
    assert not commands_sent(page), "nothing may be sent while the payload is wrong"

    payload.fill('{"user_id": 42}')
    expect(payload).not_to_have_attribute("aria-invalid", "true")
    form.get_by_role("button", name="Run job").click()
    expect(form).to_be_hidden(timeout=15_000)
    expect(toast(page, "success")).to_have_count(1, timeout=15_000)
    sent = commands_sent(page)
    assert len(sent) == 1 and sent[0]["action"] == "job.run", sent
    assert sent[0]["args"]["payload"] == {"user_id": 42} and sent[0]["args"]["fn"] == "e2e.hello"


def test_dialog_traps_focus_and_escape_cancels(page: Page, server: LiveServer, fleet: SimulatedFleet) -> None:
    """The confirm dialog keeps Tab inside and Escape cancels: no execute is sent, focus returns."""
    sign_in(page, server, "ada", MANAGE)
    expect(page.locator(f'[data-part="purge"] tr[data-key="{UNSERVED}"]')).to_be_visible(timeout=30_000)
    confirm = preview_purge(page, UNSERVED)
    for _ in range(6):
        page.keyboard.press("Tab")
        assert page.evaluate("() => !!document.activeElement.closest('dialog.ad-confirm')")
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(page.locator('[data-tile="purge"] .tile-foot button')).to_be_focused()
    phases = [c.get("phase") for c in commands_sent(page) if c["action"] == "channel.purge"]
    assert phases == ["preview"], phases


def test_first_load_weight_of_the_action_pages(page: Page, server: LiveServer, fleet: SimulatedFleet) -> None:
    """The Operations Center, the audit page and the Runners page, signed in, stay under the first-load
    budget; the dialogs' and toasts' code is not part of it (it loads on first use)."""
    sign_in(page, server, "ada", MANAGE)  # the session cookie; the measured loads are the next ones
    for path, ready in ((MANAGE, "#activity"), (AUDIT, "#audit-table"), (RUNNERS, "#fleet .rcard")):
        load = Load(page)
        page.goto(server.url + path)
        expect(page.locator(ready).first).to_be_visible(timeout=15_000)
        load.weigh()
        load.assert_scripts_and_styles()
        load.assert_within_budget(f"{path}'s first load")
        loaded = " ".join(load.sizes)
        for lazy in ("confirm.js", "forms.js", "dialog.js", "runner-logs.js", "toast.js", "actions.css"):
            assert lazy not in loaded, f"{lazy} is in {path}'s first load"


def test_signed_out_elsewhere_goes_to_login(page: Page, server: LiveServer) -> None:
    """Revoking a user's sessions closes their open page's socket with 4401, and the page goes to the login."""
    import subprocess
    import sys

    sign_in(page, server, "oscar", RUNNERS + "?status=busy")
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "sessions", "revoke", "oscar"],
        env=server.env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert "ended 1 session(s) of oscar" in result.stdout
    # The socket notices at its next session check (JOBPULSE_SESSION_CHECK_S=1 here), the page then follows.
    expect(page).to_have_url(
        re.compile(re.escape(f"{server.url}/login?next=") + r"%2Fadmin%2Fjobs%2Frunners%3Fstatus%3Dbusy"),
        timeout=10_000,
    )
    expect(page.locator("input[name=username]")).to_be_visible()


def test_wall_opens_with_its_read_only_link(page: Page, redis_url: str, prefix: str) -> None:
    """The wall runs live from /wall?token=<viewer token>, with no sign-in and nothing to act on."""
    from server.auth import make_token

    token, digest = make_token()
    env = users_env()
    env["JOBPULSE_TOKENS"] += f" lobby:viewer:{digest}"
    live = LiveServer(redis_url, prefix, env).start()
    try:
        install_ws_probe(page)
        page.goto(f"{live.url}/wall?token={token}")
        expect(page).to_have_url(f"{live.url}/wall?token={token}")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
        welcome = page.evaluate("() => window.__e2eWs.sent.length")
        assert welcome >= 1  # it said hello: the socket was accepted with the link's token
        assert page.locator("button, input, select, textarea, form").count() == 0
        page.goto(f"{live.url}/wall")
        expect(page).to_have_url(re.compile(re.escape(f"{live.url}/login?next=%2Fwall")))
    finally:
        live.stop()
        live.close()


def test_the_scheduler_runs_a_scheduled_job_now_and_cancels_another(
    page: Page, server: LiveServer, fleet: SimulatedFleet
) -> None:
    """The Scheduled Jobs card's "Open Scheduler": every scheduled job by when it is due, live; Run now has the job
    system queue one now (it leaves the schedule), Cancel cancels another; both land in the audit log."""
    sign_in(page, server, "oscar", "/admin/jobs")
    # The button's handler comes with the page's module: on a loaded machine a click before it ran did nothing (a CI
    # run). The socket live says the module ran; the dialog's own code then loads on first use.
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    page.locator("#open-scheduler").click()
    scheduler = page.locator("dialog.scheduler")
    expect(scheduler).to_be_visible(timeout=15_000)
    rows = scheduler.locator("tbody tr")
    expect(rows.first).to_be_visible(timeout=30_000)  # the fleet schedules retries and jobs ahead
    dues = scheduler.locator(".sc-until").evaluate_all("(nodes) => nodes.map((n) => Number(n.dataset.until))")
    assert dues == sorted(dues), dues
    first = rows.first.get_attribute("data-key") or ""
    rows.first.get_by_role("button", name=f"Run now {first}").click()
    expect(toast(page, "success")).to_contain_text("queued now", timeout=15_000)
    expect(scheduler.locator(f'tbody tr[data-key="{first}"]')).to_have_count(0, timeout=10_000)
    second = rows.first.get_attribute("data-key") or ""
    rows.first.get_by_role("button", name=f"Cancel {second}").click()
    expect(scheduler.locator(f'tbody tr[data-key="{second}"]')).to_have_count(0, timeout=15_000)
    sent = [(c["action"], c["args"]) for c in commands_sent(page) if c["action"] in ("job.run_now", "job.cancel")]
    assert sent == [("job.run_now", {"job": first}), ("job.cancel", {"job": second})], sent
