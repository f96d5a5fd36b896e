"""The pages on a real Celery cluster (JOBPULSE_SOURCE=celery): the same pages, no page knows the source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from server.redis_server import RedisServer
from tests.celery_cluster.worker import Worker
from tests.conftest import LiveServer
from tests.e2e.support import Page, expect, install_ws_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def cluster(prefix: str) -> Iterator[tuple[LiveServer, Any, str]]:
    from tests.celery_cluster.app import Tasks

    broker = RedisServer().start()
    tasks = Tasks(broker.url)
    name = f"page-{prefix[-6:]}@test"
    server = LiveServer(broker.url, prefix, env={"JOBPULSE_SOURCE": "celery", "JOBPULSE_RECONCILE_S": "0.5"}).start()
    worker = Worker(broker.url, name)
    try:
        yield server, tasks, name
    finally:
        tasks.close()
        worker.stop()
        worker.log.close()
        output = server.finish()
        broker.stop()
        assert "Traceback" not in output, output


def test_dashboard_and_runners_show_the_celery_worker_live(page: Page, cluster: tuple[LiveServer, Any, str]) -> None:
    server, tasks, name = cluster
    install_ws_probe(page)
    page.goto(server.url + "/admin/jobs/runners")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    card = page.locator(f'#fleet .rcard[data-key="{name}"]')
    expect(card.locator(".badge")).to_have_text(re.compile("^(online|busy)$"), timeout=20_000)
    expect(card.locator(".rc-where")).to_contain_text("test")
    # Logs is not something Celery can do: disabled, with the reason, not a dead button.
    logs = card.get_by_role("button", name="Logs")
    expect(logs).to_be_disabled()
    expect(logs).to_have_attribute("title", re.compile("no log"))

    page.goto(server.url + "/admin/jobs")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    completed = page.locator('[data-widget=counters] [data-key="completed"] [data-f=v]')
    failed = page.locator('[data-widget=counters] [data-key="failed"] [data-f=v]')
    for i in range(5):
        tasks.add.delay(i, i)
    tasks.fail.delay("from the page test")
    expect(completed).to_have_text("5", timeout=20_000)
    expect(failed).to_have_text("1", timeout=20_000)
    expect(page.locator("[data-widget=failures]")).to_contain_text("from the page test")


def test_rate_limit_from_the_job_details(page: Page, cluster: tuple[LiveServer, Any, str]) -> None:
    """On Celery, a failed task's details offer "Rate limit…": the form, the preview, the confirmation, a toast."""
    server, tasks, name = cluster
    install_ws_probe(page)
    page.goto(server.url + "/admin/jobs")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    tasks.fail.delay("rate me")
    failure = page.locator("[data-widget=failures] tbody[data-f=rows] tr").first
    expect(failure).to_contain_text("rate me", timeout=20_000)
    failure.click()
    details = page.get_by_role("dialog")
    limit = details.get_by_role("button", name="Rate limit…")
    expect(limit).to_be_enabled(timeout=10_000)
    limit.click()
    form = page.locator("dialog[open]").filter(has_text="Rate limit a task")
    expect(form.get_by_label("Function")).to_have_value("tests.celery_cluster.app.fail")
    form.get_by_label("Rate").fill("10/d")
    form.get_by_role("button", name="Preview…").click()
    expect(form).to_contain_text("Rate: like 10/m")  # refused in the browser: nothing sent
    form.get_by_label("Rate").fill("30/m")
    form.get_by_role("button", name="Preview…").click()
    confirm = page.locator("dialog.ad-confirm")
    expect(confirm).to_be_visible(timeout=15_000)
    expect(confirm).to_contain_text("Limit to 30/m tests.celery_cluster.app.fail on every live runner (1)?")
    confirm.get_by_role("button", name="Rate limit").click()
    expect(page.locator("#toasts .toast-success")).to_contain_text("Set the rate limit of", timeout=15_000)
    expect(page.locator("#toasts .toast-success")).to_contain_text(name)
