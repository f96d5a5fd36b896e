"""What every part of one running fleet shares: configuration, Redis, the queue, the outbox, the workload.

Built by the fleet when it starts and handed to runners, the producer and the
broker, so none of them imports another's module just to reach shared state.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aredis

from server.simulator.config import FleetConfig
from server.simulator.keys import Keys
from server.simulator.outbox import Outbox
from server.simulator.queue import JobQueue
from server.simulator.workload import Workload


def _ignore(channel: str) -> None:
    return None


def _nothing() -> None:
    return None


@dataclass
class Context:
    """Shared state of one fleet run."""

    config: FleetConfig
    keys: Keys
    redis: aredis.Redis
    queue: JobQueue
    outbox: Outbox
    workload: Workload
    boot: float
    channels: list[str]
    """Every channel the broker reports depth for (configured ones, plus any a `run` command used)."""
    paused: set[str] = field(default_factory=set)
    """Paused channels, as the broker last set or read them (runners report `paused` from it)."""
    notify: Callable[[str], None] = _ignore
    """Wake the runners that consume a channel: it has a new queued job."""
    hung: set[str] = field(default_factory=set)
    """Jobs whose attempt hangs right now (randomly hung ones are capped at `max_hung`)."""
    max_hung: int = 1
    backlog: dict[str, int] = field(default_factory=dict)
    """Queued count per channel from the latest depth read (the producer's backlog cap uses it)."""
    stalls: dict[str, asyncio.Event] = field(default_factory=dict)
    """Channels whose attempts wait on a stalled dependency (a locked database) until the event is set."""
    rerouted: Callable[[], None] = _nothing
    """A runner booted with other channels than before: who consumes what changed."""

    def scaled(self, seconds: float) -> float:
        """Modelled seconds to real seconds."""
        return seconds * self.config.time_scale

    @property
    def ttl(self) -> int:
        """The TTL of a heartbeat key: at least 3 heartbeat intervals, in whole seconds (SET ... EX)."""
        return max(1, math.ceil(3 * self.config.heartbeat_interval))
