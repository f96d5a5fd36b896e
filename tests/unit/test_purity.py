"""The pure core stays pure: no I/O, clock, randomness or framework imports (enforced, not trusted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The core is a directory: whatever is added under it is held to the same rule. A connector's translator (its
# `events.py`, the job system's wire into core events) and its key layout are pure too; the rest of a connector
# is the shell. Five modules of server/ are the protocol, the roles, redaction, the actions' arguments and routing.
PURE_GLOBS = ["server/streams/core/**/*.py", "server/streams/sources/*/events.py", "server/streams/sources/*/keys.py"]
PURE = sorted(
    {"server/protocol.py", "server/roles.py", "server/redact.py", "server/actions.py", "server/routing.py"}
    | {p.relative_to(ROOT).as_posix() for pattern in PURE_GLOBS for p in ROOT.glob(pattern)}
)
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


def test_the_core_directory_is_found():
    """The globs see the core (a renamed folder would otherwise empty the parametrized tests above)."""
    assert "server/streams/core/reducer.py" in PURE and "server/streams/core/widgets/fleet.py" in PURE
    assert "server/streams/sources/celery/events.py" in PURE and "server/streams/sources/mojo/events.py" in PURE
