"""What every connector offers the rest of jobpulse, and the types they share with it.

Shell layer. A connector (native, celery, mojo) is the only code that knows one
job system's layout; the aggregator runs it and is its `Sink`, the commander
sends through it (`send`, section-2 commands) or asks it to act (`perform`,
sources whose actions are not section-2 commands), and pages only see its
`name` and the reasons in `unsupported` (docs/protocol.md 4.5). Connectors are
made from `server.streams.sources`, a registry by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from server.streams.core.events import Event


class Sink(Protocol):
    """Where a connector delivers events (the aggregator)."""

    def feed(self, event: Event, at: float, replay: bool = False) -> None: ...

    def chunk_end(self) -> None: ...


class CommandError(Exception):
    """A command could not be sent or done (the source is not reachable, or refused it); the message says why."""


@dataclass(frozen=True)
class WireCommand:
    """One command of docs/protocol.md section 2 and how many replies to wait for (None: until the timeout)."""

    id: str
    action: str
    to: str
    args: dict[str, Any]
    expect: int | None = 1


class Connector(Protocol):
    name: str
    connected: bool
    unsupported: dict[str, str]  # action -> why this source cannot do it

    async def run(self) -> None: ...

    async def close(self) -> None: ...

    def request_catch_up(self) -> None: ...

    async def send(self, commands: list[WireCommand], wait_s: float) -> list[list[dict[str, Any]]]: ...
