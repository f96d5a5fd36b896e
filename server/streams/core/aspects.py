"""Aspects: which parts of the state a fold changed, so the hub recomputes only the widgets that read them.

Pure layer. `Aspect` names the bits; each widget declares the aspects it reads
(server/streams/core/widgets), and `fold` returns the union of those it changed.
The fold itself combines the plain `int` constants below: `|` of two IntFlag
members is a Python call (about a microsecond), of two ints one instruction,
and the fold does several per event at 200,000 events a second.

A seq gap (messages lost between a source and jobpulse) is not an aspect: the
fold counts it in `state.health.gaps`, and the shell asks the source to catch
up when that count moves.
"""

from __future__ import annotations

from enum import IntFlag
from typing import Final


class Aspect(IntFlag):
    """One part of the state widgets read."""

    COUNTERS = 1 << 0  # totals, today's counts, the gauges' totals
    SERIES = 1 << 1  # the per-minute and per-hour series, each channel's
    LIVE = 1 << 2  # the queued and running jobs
    FAILURES = 1 << 3  # the recent-failures ring
    SCHEDULED = 1 << 4  # the scheduled jobs
    RUNNERS = 1 << 5  # the fleet
    HEALTH = 1 << 6  # jobpulse's own intake and links
    CHANNELS = 1 << 7  # channel depths
    JOBS = 1 << 8  # any job's record (the job table, a job's detail)
    ALERTS = 1 << 9  # the hot issues
    PULSE = 1 << 10  # the heartbeat-latency samples
    LOGS = 1 << 11  # jobpulse's own warnings and errors
    PLATFORM = 1 << 12  # the serving process' numbers
    RUNNER_EVENTS = 1 << 13  # the runner event log
    ACTIVITY = 1 << 14  # the audit's live rows
    NOTIFY = 1 << 15  # the alert notifier's targets, outbox, silences and acknowledgements
    STATS = 1 << 16  # the per-function and per-channel numbers (runs, failures, runtime and wait sketches)
    GROUPS = 1 << 17  # the failure groups and their mutes


COUNTERS: Final = int(Aspect.COUNTERS)
SERIES: Final = int(Aspect.SERIES)
LIVE: Final = int(Aspect.LIVE)
FAILURES: Final = int(Aspect.FAILURES)
SCHEDULED: Final = int(Aspect.SCHEDULED)
RUNNERS: Final = int(Aspect.RUNNERS)
HEALTH: Final = int(Aspect.HEALTH)
CHANNELS: Final = int(Aspect.CHANNELS)
JOBS: Final = int(Aspect.JOBS)
ALERTS: Final = int(Aspect.ALERTS)
PULSE: Final = int(Aspect.PULSE)
LOGS: Final = int(Aspect.LOGS)
PLATFORM: Final = int(Aspect.PLATFORM)
RUNNER_EVENTS: Final = int(Aspect.RUNNER_EVENTS)
ACTIVITY: Final = int(Aspect.ACTIVITY)
NOTIFY: Final = int(Aspect.NOTIFY)
STATS: Final = int(Aspect.STATS)
GROUPS: Final = int(Aspect.GROUPS)
ALL: Final = int(~Aspect(0))  # every aspect
