"""Widget keys: the server's view_key and the page's viewKey (web/js/views.js) spell every view alike."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from server.protocol import ErrorCode, ProtocolError, parse_view_key, view_key

ROOT = Path(__file__).resolve().parents[2]
CASES = [
    ("counters", {}),
    ("fleet", {"status": "stale", "region": "eu-west", "q": ""}),
    ("jobs", {"q": 'status:failed func:send_* "a b" -cid:x', "sort": "-updated", "page": "2"}),
    ("job", {"id": "j_8f2c01"}),
    ("jobs", {"q": "ünïcödé ✓ & = ? / # % + ~ ! * ' ( )"}),
    ("fleet", {"q": "web-01.eu_west:8080"}),
]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_keys_round_trip(name, params):
    """A canonical key parses back to its name and its non-empty parameters."""
    key = view_key(name, params)
    assert parse_view_key(key) == (name, {k: v for k, v in params.items() if v})


@pytest.mark.parametrize(
    "key",
    ["fleet?status=stale&region=eu-west", "Fleet", "fleet?a=1&a=2", "fleet?a", "fleet?q=a b", "x" * 500, "job?id=%zz"],
)
def test_non_canonical_or_bad_keys_are_refused(key):
    """Keys out of order, badly named, repeated, unencoded or too long are refused with a reason."""
    with pytest.raises(ProtocolError) as info:
        parse_view_key(key)
    assert info.value.code is ErrorCode.UNKNOWN_WIDGET


def test_javascript_spells_keys_like_python(node_path):
    """web/js/views.js viewKey gives the same keys as server/protocol.py view_key."""
    node = node_path
    script = (
        f"import {{ viewKey }} from {json.dumps((ROOT / 'web/js/views.js').as_uri())};"
        f"const cases = {json.dumps(CASES)};"
        "console.log(JSON.stringify(cases.map(([n, p]) => viewKey(n, p))));"
    )
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, timeout=30, check=True)
    assert json.loads(done.stdout) == [view_key(name, params) for name, params in CASES]


def test_the_wall_link_may_see_exactly_what_the_wall_shows():
    """server/handlers/ws.py's WALL_WIDGETS: the widgets of web/templates/wall.html and every page's health."""
    import re

    from server.handlers.ws import WALL_WIDGETS

    template = (ROOT / "web" / "templates" / "wall.html").read_text()
    assert set(re.findall(r'data-widget="([^"]+)"', template)) | {"health"} == WALL_WIDGETS
