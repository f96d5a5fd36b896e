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
from dataclasses import dataclass

from server.settings import Settings, SourceSpec
from server.streams.connector import Connector, Sink
from server.streams.sources.celery.connector import CeleryConnector
from server.streams.sources.mojo.connector import MojoConnector
from server.streams.sources.native.connector import NativeConnector

Factory = Callable[[Settings, Sink, Callable[[], float]], Connector]


@dataclass(frozen=True)
class Kind:
    """A job system jobpulse can watch: how its connector is made, and where a JOBPULSE_SOURCES entry's URL goes."""

    make: Factory
    url_setting: str  # the environment variable that `label:kind:url` sets for this source alone


REGISTRY: dict[str, Kind] = {
    "native": Kind(NativeConnector, "REDIS_URL"),
    "celery": Kind(CeleryConnector, "JOBPULSE_CELERY_BROKER"),
    "mojo": Kind(MojoConnector, "JOBPULSE_MOJO_REDIS_URL"),
}


def make(spec: SourceSpec, sink: Sink, clock: Callable[[], float]) -> Connector:
    """The connector of one configured source, with its own settings.

    Raises:
        ValueError: for a kind no connector is registered for, naming the ones that are.
    """
    kind = REGISTRY.get(spec.kind)
    if kind is None:
        raise ValueError(f"source {spec.label}: no connector {spec.kind!r}; known: {', '.join(sorted(REGISTRY))}")
    return kind.make(spec.settings, sink, clock)
