"""The registry of connectors by name: which job systems jobpulse can watch, and how each connector is made.

Shell layer. `JOBPULSE_SOURCE` (one source) or each entry of `JOBPULSE_SOURCES`
(several) names one of these kinds. Adding a job system means adding its folder
beside native/, celery/ and mojo/ (server/streams/connector.py says what a
connector offers; docs/protocol.md section 7 walks through one) and one entry
here. Every connector is made the same way: its source's settings, the sink its
events go to (the aggregator, labelled with the source), and the clock.
"""

from __future__ import annotations

from collections.abc import Callable

from server.settings import Settings, SourceSpec
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


def make(spec: SourceSpec, sink: Sink, clock: Callable[[], float]) -> Connector:
    """The connector of one configured source, with its own settings.

    Raises:
        ValueError: for a kind no connector is registered for, naming the ones that are.
    """
    factory = REGISTRY.get(spec.kind)
    if factory is None:
        raise ValueError(f"source {spec.label}: no connector {spec.kind!r}; known: {', '.join(sorted(REGISTRY))}")
    return factory(spec.settings, sink, clock)
