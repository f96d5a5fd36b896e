"""The registry of connectors by name: which job systems jobpulse can watch, and how each connector is made.

Shell layer. `JOBPULSE_SOURCE` names one of these; adding a job system means
adding its connector (server/streams/connector.py says what it offers) and one
entry here. Every connector is made the same way: the settings, the sink its
events go to (the aggregator), and the clock.
"""

from __future__ import annotations

from collections.abc import Callable

from server.settings import Settings
from server.streams.connector import Connector, Sink
from server.streams.sources.celery.connector import CeleryConnector
from server.streams.sources.mojo.connector import MojoConnector
from server.streams.sources.native.connector import NativeConnector

Factory = Callable[[Settings, Sink, Callable[[], float]], Connector]

REGISTRY: dict[str, Factory] = {
    "native": NativeConnector,
    "celery": CeleryConnector,
    "mojo": MojoConnector,
}


def make(settings: Settings, sink: Sink, clock: Callable[[], float]) -> Connector:
    """The connector of `settings.source`.

    Raises:
        ValueError: for a source no connector is registered for, naming the ones that are.
    """
    factory = REGISTRY.get(settings.source)
    if factory is None:
        raise ValueError(f"JOBPULSE_SOURCE: no connector {settings.source!r}; known: {', '.join(sorted(REGISTRY))}")
    return factory(settings, sink, clock)
