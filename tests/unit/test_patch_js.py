"""web/js/patch.js `mergePatch` and server/streams/core/mergepatch.py `apply` agree on the golden cases.

The browser applies the server's widget patches with mergePatch, so the two
must give identical results. The golden cases (tests/fixtures/mergepatch.json:
RFC 7396 appendix A, then widget-shaped and edge cases) run through both. The
JavaScript runs in node, or in headless Chromium with
JOBPULSE_PATCH_JS_ENGINE=chromium (tests/provision.py brings either up).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.streams.core import mergepatch
from tests.provision import chromium, required

ROOT = Path(__file__).resolve().parent.parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "mergepatch.json"
PATCH_JS = ROOT / "web" / "js" / "patch.js"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

CASES: list[dict[str, Any]] = json.loads(GOLDEN.read_text(encoding="utf-8"))

# Cases where patch.js is known to differ from the Python apply(). Strict xfail: fixing patch.js turns
# the case into an XPASS failure, a reminder to drop it from here.
JS_KNOWN_BUGS: dict[str, str] = {}  # golden case name -> why patch.js still fails it (none now)

# Applies every case and says whether the target was left as it was. `mergePatch` comes from the real module.
RUN_CASES_JS = """
(mergePatch, cases) => cases.map((c) => {
  const before = JSON.stringify(c.target);
  const result = mergePatch(c.target, c.patch);
  return { name: c.name, result: result === undefined ? "<undefined>" : result,
           unchanged: JSON.stringify(c.target) === before };
})
"""

NODE_SCRIPT = f"""
import {{ mergePatch }} from {json.dumps(PATCH_JS.as_uri())};
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString("utf8"));
process.stdout.write(JSON.stringify(({RUN_CASES_JS})(mergePatch, cases)));
"""

BROWSER_SCRIPT = f"""
async ([source, cases]) => {{
  const url = URL.createObjectURL(new Blob([source], {{ type: "text/javascript" }}));
  const {{ mergePatch }} = await import(url);
  return ({RUN_CASES_JS})(mergePatch, cases);
}}
"""


def _run_in_node(node: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node, "--input-type=module", "-e", NODE_SCRIPT],
        input=json.dumps(CASES).encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"node failed:\n{done.stderr.decode(errors='replace')}"
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def _run_in_chromium(executable: str) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    # Started and stopped here, not kept in a fixture: while it runs, Playwright's sync API marks its
    # event loop as the running one, which the pytest-asyncio tests after this one would trip over.
    with sync_playwright() as manager:
        browser = manager.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            results: list[dict[str, Any]] = page.evaluate(BROWSER_SCRIPT, [PATCH_JS.read_text(), CASES])
        finally:
            browser.close()
    return results


@pytest.fixture(scope="module")
def js_results(node_path: str) -> dict[str, dict[str, Any]]:
    """Every golden case run through web/js/patch.js (node, or Chromium with JOBPULSE_PATCH_JS_ENGINE=chromium)."""
    if os.environ.get("JOBPULSE_PATCH_JS_ENGINE") == "chromium":
        results = _run_in_chromium(required(chromium))
    else:
        results = _run_in_node(node_path)
    assert [r["name"] for r in results] == [c["name"] for c in CASES]
    return {r["name"]: r for r in results}


def _js_param(case: dict[str, Any]) -> Any:
    bug = JS_KNOWN_BUGS.get(case["name"])
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(case, id=case["name"], marks=marks)


def test_golden_cases_are_well_formed() -> None:
    """Every golden case has a unique name, a target, a patch and an expected result."""
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert set(case) == {"name", "target", "patch", "expected"}, case
    assert sum(name.startswith("rfc7396 ") for name in names) == 15  # all of appendix A


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_python_apply(case: dict[str, Any]) -> None:
    """server/streams/core/mergepatch.py apply() gives the expected result and leaves the target alone."""
    target = copy.deepcopy(case["target"])
    assert mergepatch.apply(target, case["patch"]) == case["expected"]
    assert target == case["target"]


@pytest.mark.parametrize("case", [_js_param(case) for case in CASES])
def test_js_merge_patch(case: dict[str, Any], js_results: dict[str, dict[str, Any]]) -> None:
    """web/js/patch.js mergePatch() gives the same result as apply() and leaves the target alone."""
    got = js_results[case["name"]]
    assert got["result"] == mergepatch.apply(copy.deepcopy(case["target"]), case["patch"]) == case["expected"]
    assert got["unchanged"], "mergePatch modified its target"
