"""Redis key and channel names of one simulated job system, all under one prefix.

The protocol's names (`P:events`, `P:runners`, ...) come first; the simulator's
own job-system keys live under `P:sim:` so they never collide with jobpulse's
`P:jp:` keys. Pure naming: no Redis, no I/O.
"""

from __future__ import annotations

import re

CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class Keys:
    """Every key and channel name the simulator reads or writes, for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.events = f"{prefix}:events"
        self.runners = f"{prefix}:runners"
        self.depth = f"{prefix}:depth"
        self.stream = f"{prefix}:stream"
        self.control = f"{prefix}:control"
        self.replies = f"{prefix}:replies"
        self.job_prefix = f"{prefix}:sim:job:"
        self.paused = f"{prefix}:sim:paused"
        self.channels = f"{prefix}:sim:channels"

    def runner(self, runner_id: str) -> str:
        """The heartbeat key of one runner."""
        return f"{self.prefix}:runner:{runner_id}"

    def job(self, job_id: str) -> str:
        """The hash that holds one job."""
        return f"{self.job_prefix}{job_id}"

    def queue(self, channel: str) -> str:
        """The list of job ids waiting in a channel (LPUSH to add, RPOP to take: oldest first)."""
        return f"{self.prefix}:sim:queue:{channel}"

    def inflight(self, channel: str) -> str:
        """The sorted set of job ids taken by a runner, scored by when the attempt started."""
        return f"{self.prefix}:sim:inflight:{channel}"

    def scheduled(self, channel: str) -> str:
        """The sorted set of job ids waiting for their `run_at`, scored by it."""
        return f"{self.prefix}:sim:scheduled:{channel}"
