"""The pure core stays pure: no I/O, clock, randomness or framework imports (enforced, not trusted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "server/protocol.py",
    "server/roles.py",
    "server/redact.py",
    "server/actions.py",
    "server/streams/events.py",
    "server/streams/celery_events.py",
    "server/streams/mojo_events.py",
    "server/streams/mojo_keys.py",
    "server/streams/state.py",
    "server/streams/reducer.py",
    "server/streams/rules.py",
    "server/streams/search.py",
    "server/streams/patterns.py",
    "server/streams/mergepatch.py",
    "server/streams/widgets/__init__.py",
    "server/streams/widgets/common.py",
    "server/streams/widgets/dashboard.py",
    "server/streams/widgets/overview.py",
    "server/streams/widgets/fleet.py",
    "server/streams/widgets/jobs.py",
    "server/streams/widgets/platform.py",
]  # fmt: skip
FORBIDDEN = {"asyncio", "time", "datetime", "random", "uuid", "os", "socket", "redis", "starlette", "jinja2",
             "uvicorn", "websockets", "hiredis", "secrets", "threading", "subprocess"}  # fmt: skip
HANDLERS_FORBIDDEN = {"redis", "hiredis"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_nothing_impure(module):
    """The reducer, projections, events and protocol import no I/O, clock or randomness."""
    bad = imported_roots(ROOT / module) & FORBIDDEN
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_only_the_pure_layer_of_the_project(module):
    """The pure layer depends on nothing of the shell."""
    tree = ast.parse((ROOT / module).read_text())
    allowed = {m.replace("/", ".").removesuffix(".py").removesuffix(".__init__") for m in PURE} | {"server"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("server"):
            names = (
                [node.module] if node.module != "server.streams" else [f"server.streams.{a.name}" for a in node.names]
            )
            for name in names:
                assert name in allowed, f"{module} imports {name}"


@pytest.mark.parametrize(
    "module", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "server/handlers").glob("*.py"))
)
def test_handlers_do_not_talk_to_redis(module):
    """Handlers go through the hub and the aggregator, never to Redis directly."""
    assert not imported_roots(ROOT / module) & HANDLERS_FORBIDDEN
