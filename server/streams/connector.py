"""What every connector offers the rest of jobpulse, and the types they share with it.

Shell layer. A connector (one folder under server/streams/sources/) is the only
code that knows one job system's layout. The aggregator runs one per
configured source, each under its own supervision, and hands it a `Sink` that
delivers its events to the fold (labelled with the source: several sources
share one state). The commander routes each operator command to the source
that owns its target and calls `perform` with that source's own ids and what
the fold knows that the action needs (`server.routing.Known`): a connector
never reads the state itself. Pages see a connector's `name` and the reasons in
`unsupported` (docs/protocol.md 4.5). Connectors are made from the registry
in `server.streams.sources`; docs/protocol.md section 7 says how to write one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from server.streams.core.events import SourceStatus

if TYPE_CHECKING:
    from server.actions import Args, Performed
    from server.routing import Known
    from server.streams.core.events import Event


class Sink(Protocol):
    """Where a connector delivers events: `feed` each (with our receive time), `chunk_end` after each batch."""

    def feed(self, event: Event, at: float, replay: bool = False) -> None: ...

    def chunk_end(self) -> None: ...


class CommandError(Exception):
    """An action could not be done: the source is not reachable, refused it, or nobody answered.

    `code` is the docs/protocol.md 4.3 refusal code the operator sees ("failed", "no_reply", "not_found",
    "unavailable"); the message says why.
    """

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class WireCommand:
    """One command of docs/protocol.md section 2 and how many replies to wait for (None: until the timeout)."""

    id: str
    action: str
    to: str
    args: dict[str, Any]
    expect: int | None = 1


class Connector(Protocol):
    """One job system, watched and acted on."""

    name: str  # its kind: native, celery, mojo
    unsupported: dict[str, str]  # action -> why this source cannot do it

    @property
    def connected(self) -> bool:
        """Whether it is following the source now (all of its connections up)."""
        ...

    async def run(self) -> None:
        """Stay connected until cancelled: catch up, follow, report status (`Status`), reconnect on loss."""

    async def close(self) -> None: ...

    def request_catch_up(self) -> None:
        """The fold saw a gap in this source's seqs: read the authoritative state again soon."""

    async def perform(self, action: str, args: Args, known: Known) -> Performed:
        """Do an operator action (already checked and routed here).

        Raises:
            CommandError: with the reason and refusal code when it cannot be done.
        """
        ...


def one_at_a_time(sink: Sink, clock: Callable[[], float]) -> Callable[[Event], None]:
    """A feed for the events a connector makes one at a time (an action's `runner.removed`): each received now,
    each its own chunk, so the pages show it at once."""

    def feed(event: Event) -> None:
        sink.feed(event, clock())
        sink.chunk_end()

    return feed


class Status:
    """A connector's up or down, told to the fold (a `SourceStatus` chunk) each time it is reported."""

    def __init__(self, sink: Sink, clock: Callable[[], float]) -> None:
        self.sink = sink
        self.clock = clock
        self.connected = False

    def __call__(self, connected: bool, error: str = "", parts: dict[str, str] | None = None) -> None:
        self.connected = connected
        now = self.clock()
        self.sink.feed(SourceStatus(connected=connected, at=now, error=error[:500], parts=parts or {}), now)
        self.sink.chunk_end()
