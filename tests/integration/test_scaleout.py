"""Three jobpulse processes behind nginx, one Redis (docs/reliability.md section 8).

nginx runs docs/deploy/nginx.conf itself (ports changed), so the documented
deployment is the tested one. The test checks what several processes must
give: the same state everywhere, a command that runs once whichever process
(or processes, on a retry) it reaches, its audit entry and toast notice on
every process, and a client that reconnects through the balancer to another
process and carries on there.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.redis_server import free_port
from tests.conftest import LiveServer, SimulatedFleet, bearer, users_env
from tests.integration.helpers import LiveClient, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx.conf"
PROCESSES = 3


class Nginx:
    """nginx in the foreground with docs/deploy/nginx.conf, listening on `port`, upstreams on `backends`."""

    def __init__(self, binary: str, port: int, backends: list[int]) -> None:
        self.port = port
        self.dir = tempfile.TemporaryDirectory(prefix="jobpulse-nginx-")
        site = CONFIG.read_text()
        upstreams = iter(backends)
        site = re.sub(r"server 127\.0\.0\.1:\d+", lambda _: f"server 127.0.0.1:{next(upstreams)}", site)
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        root = self.dir.name
        Path(root, "site.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the temp dirs made by the master
        temp = " ".join(
            f"{kind}_temp_path {root}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        Path(root, "nginx.conf").write_text(
            f"{user}daemon off; worker_processes 1; pid {root}/nginx.pid; error_log {root}/error.log warn;\n"
            f"events {{ worker_connections 1024; }}\n"
            f"http {{ access_log off; {temp} include {root}/site.conf; }}\n"
        )
        self.process = subprocess.Popen(
            [binary, "-p", root, "-c", f"{root}/nginx.conf"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"nginx exited: {out}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not answer")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.dir.cleanup()


@pytest.fixture
def cluster(redis_url: str, prefix: str, nginx_path: str) -> Iterator[tuple[list[LiveServer], Nginx, SimulatedFleet]]:
    binary = nginx_path
    servers = [LiveServer(redis_url, prefix, env=users_env()).start() for _ in range(PROCESSES)]
    fleet = SimulatedFleet(servers[0], "--runners", "4", "--channels", "3", "--rate", "20", "--seed", "3")
    nginx = None
    try:
        fleet.wait_for_runners(4)
        nginx = Nginx(binary, free_port(), [s.port for s in servers])
        yield servers, nginx, fleet
    finally:
        if nginx is not None:
            nginx.stop()
        fleet.stop()
        outputs = [s.finish() for s in servers]
    for output in outputs:
        assert "Traceback" not in output, output


def api(url: str) -> Any:
    request = urllib.request.Request(url, headers=bearer("ada"))
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def test_three_processes_behind_nginx_act_as_one(cluster: tuple[list[LiveServer], Nginx, SimulatedFleet]) -> None:
    servers, nginx, _ = cluster
    via = f"ws://127.0.0.1:{nginx.port}/ws"

    # The same state on every process: the same fleet, the same channels.
    def fleets() -> list[set[str]]:
        return [set(api(f"{s.url}/api/widgets/runners")["data"]["rows"]) for s in servers]

    deadline = time.monotonic() + 10
    seen = fleets()
    while len({frozenset(f) for f in seen}) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # polling three HTTP APIs: there is no event to wait on
        seen = fleets()
    assert len(seen[0]) == 4 and all(f == seen[0] for f in seen), seen
    channels = [set(api(f"{s.url}/api/jobs/health")["channels"]) for s in servers]
    assert all(c == channels[0] for c in channels), channels

    # Watchers on every process, each directly on its own.
    watchers = [await LiveClient.connect(s.ws_url, ["notices", "activity"], headers=bearer("vera")) for s in servers]
    oscar = await LiveClient.connect(via, ["counters", "runners"], headers=bearer("oscar"))
    try:
        first_process = oscar.welcome["epoch"]
        args = {"fn": "ops.scaled", "channel": "email", "payload": {}, "cid": "scaleout-1"}
        ack = await oscar.command("job.run", args, cmd_id="scaleout-cmd-1")
        assert ack["ok"], ack
        # Its audit entry and notice reach the operators on every process.
        for watcher in watchers:
            await watcher.wait_for(
                lambda c: any(
                    r["action"] == "job.run" and r["user"] == "oscar-token" for r in c.data["notices"]["rows"].values()
                ),
                within=5,
            )

        # The client drops and comes back through the balancer: least_conn sends it to another process, where it
        # resumes (that process's snapshots, then patches), and a retry of the same command id runs nothing again.
        await oscar.close()
        moved = oscar
        for _ in range(PROCESSES):
            moved = await LiveClient.connect(
                via, ["counters", "runners"], epoch=first_process, resume=dict(oscar.seqs), previous=oscar,
                headers=bearer("oscar"),
            )  # fmt: skip
            if moved.welcome["epoch"] != first_process:
                break
            await moved.close()
        assert moved.welcome["epoch"] != first_process, "the balancer never sent the client to another process"
        await moved.wait_for(lambda c: c.data["runners"]["total"] == 4 and any(
            f["type"] == "patch" for f in c.frames), within=10)  # fmt: skip
        assert moved.gaps == 0
        again = await moved.command("job.run", args, cmd_id="scaleout-cmd-1")
        assert again == ack, (again, ack)
        entries = api(f"{servers[2].url}/api/audit?limit=500")["entries"]
        assert [e["cmd"] for e in entries].count("scaleout-cmd-1") == 1, "executed and audited once"
        await moved.close()
    finally:
        for watcher in watchers:
            await watcher.close()


async def test_serve_with_workers_runs_whole_processes_on_one_port(redis_url: str, prefix: str) -> None:
    """`JOBPULSE_WORKERS=2 jobpulse serve`: two processes share the port, each a whole jobpulse (its own epoch),
    both ready; pages connect to either and get the same widgets."""
    port = free_port()
    proc = serve({"REDIS_URL": redis_url, "JOBPULSE_PREFIX": prefix, "JOBPULSE_AUTH": "dev", "JOBPULSE_WORKERS": "2",
                  "HOST": "127.0.0.1", "PORT": str(port), "JOBPULSE_LOG_LEVEL": "warning"})  # fmt: skip
    try:
        epochs: set[str] = set()
        deadline = time.monotonic() + 30
        while len(epochs) < 2:
            assert time.monotonic() < deadline, f"one process answered every connection: {epochs}"
            try:
                client = await LiveClient.connect(f"ws://127.0.0.1:{port}/ws", ["counters"])
            except OSError:
                await asyncio.sleep(0.2)  # not listening yet
                continue
            try:
                epochs.add(client.welcome["epoch"])
                await client.wait_for(lambda c: "counters" in c.data, 5)
            finally:
                await client.close()
    finally:
        os.killpg(proc.pid, 15)
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
    assert "Traceback" not in err.decode(errors="replace"), err[-3000:]
