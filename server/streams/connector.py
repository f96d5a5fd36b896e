"""What every connector offers the rest of jobpulse: a name, a run loop, its state, and commands.

Shell layer. A connector (native, celery) is the only code that knows one job
system's Redis layout; the aggregator runs it, the commander sends through it,
and pages only see its `name` (docs/protocol.md 4.5).
"""

from __future__ import annotations

from typing import Any, Protocol

from server.streams.native import WireCommand


class Connector(Protocol):
    name: str
    connected: bool
    unsupported: dict[str, str]  # action -> why this source cannot do it

    async def run(self) -> None: ...

    async def close(self) -> None: ...

    def request_catch_up(self) -> None: ...

    async def send(self, commands: list[WireCommand], wait_s: float) -> list[list[dict[str, Any]]]: ...
