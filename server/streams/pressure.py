"""How hard the event loop's thread is pushed: the share of wall time it ran, or was ready to run and waited.

Shell layer. On Linux both come from `/proc/thread-self/schedstat` (time on a CPU and time runnable but queued
for one, in ns), read with one `pread` of a descriptor kept open (about a microsecond). Elsewhere only the
thread's CPU time is known, which cannot see the waiting: on a machine whose cores are all taken, a thread that
wants a whole core gets less and looks less loaded than it is. The hub samples it once a flush to tell a loop
that keeps up from one that has more work than time (see hub.py, the tick).
"""

from __future__ import annotations

import contextlib
import os
import time

SCHEDSTAT = "/proc/thread-self/schedstat"


class LoopPressure:
    """Samples of the calling thread's load: each `sample()` is the share of the time since the last one."""

    def __init__(self) -> None:
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            self._fd = os.open(SCHEDSTAT, os.O_RDONLY)
        self._wall = time.monotonic_ns()
        self._busy = self._busy_ns()

    def _busy_ns(self) -> int:
        if self._fd is not None:
            try:
                running, waiting, _ = os.pread(self._fd, 64, 0).split()
                return int(running) + int(waiting)
            except (OSError, ValueError):
                os.close(self._fd)
                self._fd = None
        return time.thread_time_ns()

    def sample(self) -> float:
        """The share of wall time since the last sample that this thread ran or waited for a CPU (0..~1)."""
        wall, busy = time.monotonic_ns(), self._busy_ns()
        span = wall - self._wall
        share = (busy - self._busy) / span if span > 0 else 0.0
        self._wall, self._busy = wall, busy
        return share

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
