"""The product as a user installs it: build the sdist and the wheel as a release would, install the wheel into a
fresh virtualenv outside the checkout, and run `jobpulse demo` from an empty folder.

This is what the checkout's editable install cannot show: that every file the pages need ships in the wheel
(web/ is mapped into it as server/web), that the metadata is what a package index accepts, and that the demo
starts with nothing but the wheel and its dependencies. The checks: the wheel's web files are exactly the
checkout's, `jobpulse --version`, every page and every static file over HTTP, and one page live in Chromium.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server import __version__
from server.handlers.pages import NAV
from server.redis_server import free_port
from tests.conftest import get as fetch
from tests.e2e.support import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def checkout_web_files() -> set[str]:
    """The files under web/ that git tracks (what a release ships), relative to web/."""
    listed = run("git", "ls-files", "web", cwd=ROOT).split()
    return {name.removeprefix("web/") for name in listed}


@dataclass
class Demo:
    url: str
    wheel: Path
    sdist: Path
    venv: Path
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`python -m build`, a fresh venv with the wheel, and `jobpulse demo` running from an empty folder."""
    dist = tmp_path_factory.mktemp("dist")
    # The wheel is built from the sdist, as `python -m build` does: a file missing from the sdist fails here too.
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, timeout=300)
    (wheel,) = dist.glob("jobpulse-*.whl")
    (sdist,) = dist.glob("jobpulse-*.tar.gz")
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, timeout=400)
    elsewhere = tmp_path_factory.mktemp("anywhere")  # not the checkout: nothing may be found relative to it
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBPULSE_", "REDIS_URL", "PYTHON"))}
    log = elsewhere / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [venv / "bin" / "jobpulse", "demo", "--port", str(port), "--runners", "4", "--seed", "3", "--alert-sink"],
            cwd=elsewhere, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    running = Demo(f"http://127.0.0.1:{port}", wheel, sdist, venv, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"jobpulse demo exited with {process.returncode}:\n{running.output()}"
            try:
                with urllib.request.urlopen(running.url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the demo was not ready within 60 s:\n{running.output()}"
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C, as the demo says: it stops the fleet and its Redis
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    assert "Traceback" not in running.output(), running.output()
    assert "jobpulse demo: stopped" in running.output(), running.output()


def test_the_wheel_and_the_sdist_hold_every_page_file_and_index_ready_metadata(demo: Demo) -> None:
    web = checkout_web_files()
    assert {"templates/base.html", "js/app.js", "vendor/uplot/uPlot.esm.js"} <= web
    with zipfile.ZipFile(demo.wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"jobpulse-{__version__}.dist-info/METADATA").decode()
    assert {n.removeprefix("server/web/") for n in names if n.startswith("server/web/")} == web
    with tarfile.open(demo.sdist) as sdist:
        in_sdist = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {f"web/{name}" for name in web} <= in_sdist and {"LICENSE", "setup.py", "pyproject.toml"} <= in_sdist
    # What an index checks: the long description renders, the license and classifiers are declared.
    run(sys.executable, "-m", "twine", "check", "--strict", demo.wheel, demo.sdist)
    assert f"Version: {__version__}" in metadata and "License-Expression: MIT" in metadata
    assert "Classifier: Programming Language :: Python :: 3" in metadata
    assert re.search(r"^License-File: LICENSE$", metadata, re.M), metadata[:2000]
    version = run(demo.venv / "bin" / "jobpulse", "--version")
    assert version.strip() == f"jobpulse {__version__}"


def test_the_installed_demo_serves_every_page_and_every_static_file(demo: Demo) -> None:
    for _, path, label, _ in NAV:
        status, body = fetch(demo.url + path)
        assert status == 200, (path, status)
        assert b"data-widget" in body or b"data-page" in body, (label, body[:300])
        for asset in re.findall(rb'(?:src|href)="(/static/[^"?]+)', body):
            status, _ = fetch(demo.url + asset.decode())
            assert status == 200, (path, asset, status)
    for name in sorted(checkout_web_files()):
        status, body = fetch(f"{demo.url}/static/{name}")
        assert status == 200 and body, (name, status)
    # The documents the pages link to (the Operations page: the protocol), from the wheel's own copy.
    for name in sorted(p.name for p in (ROOT / "docs").glob("*.md")):
        status, body = fetch(f"{demo.url}/docs/{name}")
        assert status == 200 and body == (ROOT / "docs" / name).read_bytes(), (name, status)
    assert fetch(f"{demo.url}/docs/..%2Fsetup.py")[0] == 404
    # The installed package finds its own copy, not the checkout's.
    where = run(
        demo.venv / "bin" / "python", "-c",
        "from server.assets import docs_dir, web_dir; print(web_dir()); print(docs_dir())", cwd=demo.venv,
    )  # fmt: skip
    assert all(Path(line).is_relative_to(demo.venv) for line in where.split()), where


def test_the_installed_demo_sends_its_alerts_to_its_own_receiver(demo: Demo) -> None:
    """`--alert-sink`: a webhook receiver runs beside the demo and jobpulse's alerts are configured to go to it."""
    assert "jobpulse demo: alerts go to a webhook receiver at http://127.0.0.1:" in demo.output()
    deadline = time.monotonic() + 20
    while "checking signatures" not in demo.output():
        assert time.monotonic() < deadline, demo.output()
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while True:
        status, body = fetch(demo.url + "/api/widgets/notifications")
        view = json.loads(body)["data"] if status == 200 else {}
        if view.get("configured"):
            break
        assert time.monotonic() < deadline, (status, body[:500])
        time.sleep(0.5)
    assert [row["kind"] for row in view["targets"]["rows"].values()] == ["webhook"]


def test_the_installed_demo_is_live_in_a_browser(demo: Demo, page: Page) -> None:
    page.goto(demo.url + "/admin/jobs/runners")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    cards = page.locator("#fleet .rcard")
    expect(cards).to_have_count(4, timeout=20_000)
    for index in range(4):
        expect(cards.nth(index).locator(".badge")).to_have_text(re.compile(r"^\w+"))
