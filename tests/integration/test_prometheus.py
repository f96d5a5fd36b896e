"""The Prometheus side of alerting: the shipped rules (docs/deploy/prometheus-rules.yml) pass promtool's check
and their own unit tests, and a real Prometheus scraping a real jobpulse (with a token, as documented) evaluates
them on live data."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from server.redis_server import free_port
from tests.conftest import TEST_TOKENS, LiveServer, users_env
from tests.integration.helpers import Publisher
from tests.integration.test_alerts import report

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"


def test_the_shipped_rules_pass_promtool_check_and_their_unit_tests(prometheus_path: str) -> None:
    promtool = str(Path(prometheus_path) / "promtool")
    checked = subprocess.run([promtool, "check", "rules", "prometheus-rules.yml"], cwd=DEPLOY, capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "prometheus-rules.test.yml"], cwd=DEPLOY,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def prometheus_api(port: int, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}{query}", timeout=2) as response:
            return json.load(response)["data"]
    except OSError:
        return None


def start_prometheus(folder: str, config: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(folder) / "prometheus"), f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_a_real_prometheus_scrapes_jobpulse_and_evaluates_the_rules(
    redis_url: str, prefix: str, aredis_client: Any, prometheus_path: str, tmp_path: Path
) -> None:
    import asyncio

    server = LiveServer(redis_url, prefix, env=users_env(JOBPULSE_CLOCK_MS="250")).start()
    port = free_port("127.0.0.1")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{DEPLOY / 'prometheus-rules.yml'}]\n"
        "scrape_configs:\n"
        "  - job_name: jobpulse\n"
        f"    authorization: {{type: Bearer, credentials: {TEST_TOKENS['vera']}}}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    prometheus = start_prometheus(prometheus_path, config, tmp_path / "data", port)
    try:
        publisher = Publisher(aredis_client, prefix)
        await report(publisher, 7)  # email: a backlog, and no runner consumes it

        def value(query: str) -> float | None:
            data = prometheus_api(port, "/api/v1/query", query=query)
            result = data["result"] if data else []
            return float(result[0]["value"][1]) if result else None

        def rule_state(name: str) -> str | None:
            data = prometheus_api(port, "/api/v1/alerts")
            states = [a["state"] for a in (data or {}).get("alerts", []) if a["labels"]["alertname"] == name]
            return states[0] if states else None

        for _ in range(300):
            if (
                value('up{job="jobpulse"}') == 1.0
                and value('jobpulse_channel_queued{channel="email"}') == 7.0
                and rule_state("JobpulseBacklogNoRunner") == "pending"  # true now; fires after its `for: 2m`
            ):
                break
            await asyncio.sleep(0.1)
        assert value('up{job="jobpulse"}') == 1.0, "Prometheus did not scrape jobpulse with its token"
        assert value('jobpulse_channel_runners{channel="email"}') == 0.0
        assert value('jobpulse_source_up{source="native"}') == 1.0
        assert rule_state("JobpulseBacklogNoRunner") == "pending"
        assert rule_state("JobpulseSourceDown") is None
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        output = server.finish()
    assert "Traceback" not in output, output
