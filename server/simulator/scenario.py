"""The story scenario: a repeating cycle of incidents that come and go, as data, and what holds at a time.

Pure: no asyncio, no Redis, no clock. The timeline is written for a reference
cycle of 300 s and stretched or compressed to the configured one; the director
(director.py) applies each phase when it begins and ends. Between phases the
fleet is healthy: every channel's demand is below its capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE_CYCLE = 300.0
"""Seconds of the cycle the phase offsets below are written for."""

SCENARIOS = ("steady", "story")
"""steady: today's fleet, trouble from the start (a backed-up channel, a runner silent for good).
story: a healthy fleet that runs TIMELINE over and over."""

SILENT_RUNNER = "silent_runner"
LEGACY_BACKLOG = "legacy_backlog"
LEGACY_RUNNER = "legacy_runner"
REPORTS_STALL = "reports_stall"
WEBHOOKS_FAILING = "webhooks_failing"
DEPLOY = "deploy"

KINDS = (SILENT_RUNNER, LEGACY_BACKLOG, LEGACY_RUNNER, REPORTS_STALL, WEBHOOKS_FAILING, DEPLOY)

# The knobs the phases turn (the director reads them; tests check against them).
LEGACY_SHARE = 3.0
"""While the legacy app publishes, webhooks-legacy gets this many times its usual share of jobs."""
REPORTS_SURGE = 1.5
"""During the reports stall, reports get this many times their usual share of jobs (a month-end rush)."""
FAIL_RATE = 0.9
"""Share of webhook attempts that fail during the failure burst."""
FAIL_ERROR = "http_401"
"""What they fail with: not retryable, so each failure is final and counts at once in the failure rate."""
STALLED_CHANNEL = "reports"
FAILING_CHANNEL = "webhooks"


@dataclass(frozen=True)
class Phase:
    """One incident of the cycle: what it is, and when it holds (offsets in the reference cycle, seconds)."""

    kind: str
    start: float
    end: float
    what: str
    """What a user sees, for the log."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: unknown phase {self.kind!r}")
        if not 0 <= self.start < self.end <= REFERENCE_CYCLE:
            raise ValueError(f"{self.kind}: needs 0 <= start < end <= {REFERENCE_CYCLE:g}")


# Why these offsets: jobpulse's demo rules (JOBPULSE_STUCK_AFTER_S=90, reports SLA 60 s, a runner stale after 5 s
# and offline after 12 s, a 2-minute failure window) must each raise their alert and clear it again, and the cycle
# starts calm so a new user first sees a healthy fleet.
# - silent_runner 55 s: stale then offline, cleared by the new boot; its held jobs stay under the 90 s stuck limit.
# - legacy_backlog from 95 s, legacy_runner from 135 s: "backlog and no runner" for 40 s, then consumed; the
#   runner keeps webhooks-legacy until the cycle ends, after the last retries of its jobs are done.
# - reports_stall 85 s, with 1.5x the reports: its runners' slots fill with waiting attempts in about 7 s, then the
#   queue grows (to ~280 at the default rate); the oldest queued report passes its 60 s SLA about 68 s in and is
#   back under it about 10 s after the release (~30 s of warning); the queue is empty about 55 s after the
#   release, during the deploy; no attempt waits as long as the 90 s stuck limit.
# - webhooks_failing 45 s: raises "webhooks channel failing"; it clears once those minutes leave the window.
# - deploy 50 s: a rolling restart (no alert: runners say they restart), after the other incidents.
TIMELINE: tuple[Phase, ...] = (
    Phase(SILENT_RUNNER, 30.0, 85.0, "a runner stops responding, holding its jobs"),
    Phase(LEGACY_BACKLOG, 95.0, 165.0, "the legacy app publishes to webhooks-legacy"),
    Phase(LEGACY_RUNNER, 135.0, 300.0, "a runner consumes webhooks-legacy"),
    Phase(REPORTS_STALL, 140.0, 225.0, "a month-end rush of reports, and the reports database is locked"),
    Phase(WEBHOOKS_FAILING, 155.0, 200.0, "webhook receivers reject deliveries (401 Unauthorized)"),
    Phase(DEPLOY, 240.0, 290.0, "a deploy restarts every runner, one by one"),
)


def _scale(cycle: float) -> float:
    if not cycle > 0:
        raise ValueError("cycle: must be > 0")
    return cycle / REFERENCE_CYCLE


def window(phase: Phase, cycle: float) -> tuple[float, float]:
    """The phase's (start, end) offsets, in seconds, within a cycle of `cycle` seconds."""
    scale = _scale(cycle)
    return phase.start * scale, phase.end * scale


def active(t: float, cycle: float, timeline: tuple[Phase, ...] = TIMELINE) -> tuple[Phase, ...]:
    """The phases that hold `t` seconds after the scenario started (in timeline order); none before it starts."""
    _scale(cycle)
    if t < 0:
        return ()
    offset = t % cycle
    return tuple(phase for phase in timeline if _holds(phase, offset, cycle))


def _holds(phase: Phase, offset: float, cycle: float) -> bool:
    start, end = window(phase, cycle)
    return start <= offset < end


def next_change(t: float, cycle: float, timeline: tuple[Phase, ...] = TIMELINE) -> float:
    """The first time after `t` at which a phase may begin or end: a phase's bound, or the cycle's wrap."""
    _scale(cycle)
    if t < 0:
        return 0.0
    base = (t // cycle) * cycle
    offset = t - base
    bounds = sorted({bound for phase in timeline for bound in window(phase, cycle)} | {cycle})
    return base + next((bound for bound in bounds if bound > offset), cycle)


def cycle_number(t: float, cycle: float) -> int:
    """Which repetition of the cycle `t` falls in (0 for the first)."""
    return int(max(0.0, t) // cycle)


def phase_of(kind: str, timeline: tuple[Phase, ...] = TIMELINE) -> Phase:
    """The phase of `kind` in `timeline`."""
    for phase in timeline:
        if phase.kind == kind:
            return phase
    raise KeyError(kind)
