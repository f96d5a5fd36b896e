"""The live state jobpulse folds events into: runners, channels, jobs, failures, series, health.

Pure layer: standard library and msgspec only. Plain classes with __slots__ (a job: a Struct), owned and
mutated only by `server.streams.core.reducer`; everyone else reads. Every collection
has a cap from `Limits`, so memory is bounded whatever the source sends.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msgspec import Struct

from server.streams.core.labels import SourceRule, source_of

if TYPE_CHECKING:
    from server.streams.core.events import AuditNoted

# Indexes into a series bucket: [published, completed, failed, retried, pending, running, scheduled,
# longest running (s)]. The first four count events; the rest are gauges sampled in that minute.
PUBLISHED, COMPLETED, FAILED, RETRIED, PENDING, RUNNING, SCHEDULED, LONGEST = range(8)
BUCKET_WIDTH = 8
COUNTS = (PUBLISHED, COMPLETED, FAILED, RETRIED)
GAUGES = (PENDING, RUNNING, SCHEDULED, LONGEST)
CHANNEL_WIDTH = 4  # a channel's minute: [published, completed, failed, retried]
DAY_MINUTES = 1440

TERMINAL = frozenset({"completed", "failed", "canceled", "expired"})
# Statuses whose jobs wait in the `terminal` pool; the search index keeps a set per status for these
# (queued, running and scheduled jobs have their own ordered pools, which serve as their index).
SETTLED = TERMINAL | {"unknown"}
# Phase of a job event within one attempt; with the attempt it orders a job's events (docs/protocol.md 1.1).
PHASE = {
    "queued": 0,
    "scheduled": 0,
    "started": 1,
    "retried": 2,
    "completed": 3,
    "failed": 3,
    "canceled": 3,
    "expired": 3,
}
RUNNER_STATUSES = ("offline", "stale", "draining", "busy", "online")
INDEX_FIELDS = ("status", "channel", "fn", "runner", "cid")


@dataclass(frozen=True)
class Limits:
    """Caps and rules of the fold. Every bound on memory lives here (set from Settings)."""

    max_jobs: int = 20_000
    max_runners: int = 2_000
    max_channels: int = 1_000
    max_sources: int = 10_000
    failures_cap: int = 500
    dedupe_window: int = 100_000
    series_minutes: int = 2 * DAY_MINUTES
    payload_cap: int = 4_096
    traceback_cap: int = 8_192
    error_cap: int = 2_000
    latency_samples: int = 60
    job_history: int = 20
    stale_factor: float = 2.5
    offline_factor: float = 6.0
    hours_retention: int = 30 * 24  # hourly series kept, for the "days" charts
    max_channel_series: int = 200  # channels with their own per-minute series
    channel_minutes: int = DAY_MINUTES  # per-channel series retention
    runner_events_cap: int = 500
    alert_log_cap: int = 500
    logs_cap: int = 500
    activity_rows: int = 50  # audit entries in the live activity widget
    pulse_points: int = 120  # seconds of heartbeat-latency samples
    # Alert rules (server/streams/core/rules.py).
    sla: Mapping[str, float] = field(default_factory=lambda: {"*": 300.0})  # channel -> oldest queued age SLA, s
    stuck_after: float = 600.0  # a job running longer is stuck
    fail_window: int = 5  # minutes a channel's failure rate is judged over
    fail_min: int = 5  # failures in the window before a channel can be "failing"
    fail_rate: float = 0.2  # failures / (failures + completions) that makes a channel failing
    fail_critical: float = 0.5
    # The configured sources by label (server/streams/core/labels.py); empty: one source, unnamed, ruled by the
    # factors above. With two or more, every id in the state carries its source's label.
    sources: Mapping[str, SourceRule] = field(default_factory=dict)

    def sla_of(self, channel: str) -> float:
        return self.sla.get(channel, self.sla.get("*", 300.0))

    @property
    def several(self) -> bool:
        """Whether sources share the state, their ids prefixed with their labels."""
        return len(self.sources) > 1

    def factors_of(self, source: str) -> tuple[float, float]:
        """(stale, offline) silence factors of a runner of `source`: each job system's own rule."""
        rule = self.sources.get(source)
        if rule is None:
            return self.stale_factor, self.offline_factor
        return rule.stale_factor, rule.offline_factor


class MinuteRing:
    """Fixed-size per-minute counters in flat arrays: a year of churn costs no more memory than a day."""

    __slots__ = ("size", "stamps", "values", "width")

    def __init__(self, width: int, size: int) -> None:
        self.width = width
        self.size = size
        self.stamps = array("q", [-1]) * size
        self.values = array("q", [0]) * (width * size)

    def add(self, minute: int, column: int, n: int = 1) -> None:
        slot = minute % self.size
        base = slot * self.width
        if self.stamps[slot] != minute:
            if self.stamps[slot] > minute:
                return  # older than what the ring still holds
            self.stamps[slot] = minute
            for i in range(self.width):
                self.values[base + i] = 0
        self.values[base + column] += n

    def get(self, minute: int) -> tuple[int, ...] | None:
        slot = minute % self.size
        if self.stamps[slot] != minute:
            return None
        base = slot * self.width
        return tuple(self.values[base : base + self.width])

    def sum(self, first: int, last: int, column: int) -> int:
        """The column summed over the minutes first..last that the ring holds."""
        total = 0
        for minute in range(max(first, last - self.size + 1), last + 1):
            slot = minute % self.size
            if self.stamps[slot] == minute:
                total += self.values[slot * self.width + column]
        return total

    def items(self, first: int, last: int) -> Iterator[tuple[int, tuple[int, ...]]]:
        for minute in range(max(first, last - self.size + 1), last + 1):
            values = self.get(minute)
            if values is not None:
                yield minute, values


class Alert:
    """One open hot issue: a rule's condition that holds now."""

    __slots__ = ("detail", "id", "key", "rule", "severity", "since", "title", "updated")

    def __init__(self, rule: str, key: str, severity: str, title: str, detail: str, since: float) -> None:
        self.id = f"{rule}:{key}" if key else rule
        self.rule = rule
        self.key = key
        self.severity = severity  # "warning" or "critical"
        self.title = title
        self.detail = detail
        self.since = since
        self.updated = since


class Runner:
    """One runner (worker process) as the fleet view needs it."""

    __slots__ = (
        "active",
        "boot",
        "channels",
        "concurrency",
        "failed",
        "first_seen",
        "gaps",
        "host",
        "id",
        "interval",
        "last_recv",
        "last_ts",
        "latencies",
        "offline_factor",
        "pid",
        "processed",
        "region",
        "skew",
        "source",
        "stale_factor",
        "state",
        "status",
        "stop_reason",
        "stopped",
        "version",
    )

    def __init__(self, runner_id: str, limits: Limits) -> None:
        self.id = runner_id
        # Its source (a label; "" with one unnamed source) and that job system's rule for silence.
        self.source = source_of(runner_id, limits.sources)
        self.stale_factor, self.offline_factor = limits.factors_of(self.source)
        self.host = ""
        self.region = ""
        self.pid = 0
        self.version = ""
        self.state = "running"
        self.channels: tuple[str, ...] = ()
        self.concurrency = 1
        self.active: tuple[tuple[str, str, str, float], ...] = ()  # (job, channel, fn, started)
        self.processed = 0
        self.failed = 0
        self.boot = 0.0
        self.interval = 2.0
        self.last_ts: float | None = None  # the runner's clock, last beat
        self.last_recv: float | None = None  # jobpulse's clock, last beat received
        self.skew = 0.0  # last (receive time - send time): latency plus clock offset
        self.first_seen: float | None = None
        self.stopped = False
        self.stop_reason = ""
        self.status = "offline"
        # (received at, latency = recv - sent, gap since the previous beat) per beat.
        self.latencies: deque[tuple[float, float, float | None]] = deque(maxlen=limits.latency_samples)
        self.gaps = 0


class Channel:
    """One channel (queue): its latest authoritative depth."""

    __slots__ = ("inflight", "name", "oldest", "paused", "queued", "scheduled", "ts")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queued = 0
        self.inflight = 0
        self.scheduled = 0
        self.oldest: float | None = None
        self.paused = False
        self.ts: float | None = None


# The ids of the jobs with one value of a search field. A value of one job (most correlation ids: one per job) holds
# its id as a 1-tuple, more as a dict of ids to None (an ordered set). Neither is a container the collector tracks
# (it untracks tuples and dicts of atoms): sets would be, and 100,000 of them made each full collection walk
# 100,000 more objects (see Job), and the big sets of a channel's or a status' ids 4 ms each per 100,000 ids.
Ids = dict[str, None] | tuple[str]

# A job's history entry: (source ts, event, attempt, runner).
HistoryEntry = tuple[float, str, int, str | None]


class Job(Struct, gc=False):
    """One job as its events told it.

    The job table holds up to 100,000 of these for the life of the process, and a full collection used to walk
    every one (and its history list, and its correlation id's index set), stalling the loop for 120 ms
    (bench/fold.py). A Struct with `gc=False` is never tracked by the collector, and everything it holds is
    atomic or a tuple of atoms (which the collector untracks on its first look), so a job costs a full
    collection nothing. That is safe because a job refers to no container that could lead back to it: no
    reference cycle can pass through one.
    """

    id: str
    channel: str
    fn: str
    cid: str | None = None
    status: str = "new"  # only until its first event is folded, in the same fold
    runner: str | None = None
    attempt: int = 0
    phase: int = -1
    ts: float = float("-inf")  # the source's time of the event that set the status
    max_attempts: int | None = None
    queued_at: float | None = None
    run_at: float | None = None
    started_at: float | None = None
    duration: float | None = None
    payload: bytes | None = None  # JSON, at most Limits.payload_cap bytes (else a truncation marker)
    error: str | None = None
    traceback: str | None = None
    reason: str | None = None
    updated: float = 0.0  # jobpulse's clock
    # The job's events, oldest first, at most Limits.job_history, flat: ts, event, attempt, runner, ts, ... One
    # tuple of atoms, replaced on each event: the collector untracks it at its first look. A list would stay
    # tracked, and so would a tuple of tuples (the collector looks at the outer tuple before the inner ones
    # it holds, then moves it to the old generation, which only a full collection visits).
    trail: tuple[float | str | int | None, ...] = ()

    @property
    def history(self) -> list[HistoryEntry]:
        """The job's events, oldest first: (source ts, event, attempt, runner)."""
        t = self.trail
        return [(t[i], t[i + 1], t[i + 2], t[i + 3]) for i in range(0, len(t), 4)]  # type: ignore[misc]


class Failure:
    """One entry of the recent-failures ring."""

    __slots__ = ("at", "attempt", "channel", "error", "event", "fn", "job", "runner", "traceback")

    def __init__(
        self,
        event: str,
        job: str,
        fn: str,
        channel: str,
        error: str,
        at: float,
        runner: str | None,
        attempt: int,
        traceback: str | None,
    ) -> None:
        self.event = event
        self.job = job
        self.fn = fn
        self.channel = channel
        self.error = error
        self.at = at
        self.runner = runner
        self.attempt = attempt
        self.traceback = traceback


class Link:
    """jobpulse's connection to one source: up or down since when, why, over which connections, what it warns of."""

    __slots__ = ("connected", "error", "kind", "label", "parts", "reconciled", "rtt", "since", "warnings")

    def __init__(self, label: str, kind: str = "") -> None:
        self.label = label
        self.kind = kind
        self.connected = False
        self.since: float | None = None
        self.error = ""
        self.reconciled: float | None = None
        self.rtt: float | None = None  # s, the source Redis' round trip at the last reconcile
        self.parts: dict[str, str] = {}  # a source's connections by name -> error ("" while up)
        self.warnings: dict[str, tuple[str, str, str]] = {}  # key -> (severity, title, detail): SourceWarning


class Health:
    """What jobpulse knows about its own intake: one `Link` per source, and the counters of all of them.

    `connected`, `since`, `error`, `rtt`, `reconciled` and `parts` read the links as one: with one source they
    are its own; with several, every source must be up for `connected`, and the others name the source (parts
    keyed `label:...`). Its warnings are each link's own (the rules name the source).
    """

    __slots__ = (
        "dupes",
        "events",
        "evicted_jobs",
        "gaps",
        "lag",
        "last_event",
        "links",
        "missed",
        "rejected",
        "shown",
        "stale_events",
    )

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}  # label -> link, in the configured order
        self.events = 0
        self.rejected: dict[str, int] = {}
        self.dupes = 0
        self.stale_events = 0  # events older than what the job already showed (out of order)
        self.gaps = 0
        self.missed = 0
        self.evicted_jobs = 0
        self.last_event: float | None = None
        # s, our receive time minus the source's `ts` of the last live job event: how far behind the source the
        # fold runs (includes the two clocks' skew; replayed events do not count).
        self.lag: float | None = None
        self.shown: tuple[int, ...] = ()  # the intake counters as of the last tick that flagged them

    @property
    def connected(self) -> bool:
        return bool(self.links) and all(link.connected for link in self.links.values())

    @property
    def any_connected(self) -> bool:
        return any(link.connected for link in self.links.values())

    @property
    def since(self) -> float | None:
        """When the last source went up or down."""
        return max((link.since for link in self.links.values() if link.since is not None), default=None)

    @property
    def error(self) -> str:
        down = [link for link in self.links.values() if not link.connected and link.error]
        if len(self.links) < 2:
            return down[0].error if down else ""
        return "; ".join(f"{link.label}: {link.error}" for link in down)

    @property
    def rtt(self) -> float | None:
        """The slowest source Redis' round trip."""
        return max((link.rtt for link in self.links.values() if link.rtt is not None), default=None)

    @property
    def reconciled(self) -> float | None:
        return max((link.reconciled for link in self.links.values() if link.reconciled is not None), default=None)

    @property
    def parts(self) -> dict[str, str]:
        if len(self.links) < 2:
            return next((dict(link.parts) for link in self.links.values()), {})
        return {f"{link.label}:{part}": error for link in self.links.values() for part, error in link.parts.items()}


class State:
    """Everything the widgets show. Created by `reducer.initial_state`."""

    __slots__ = (
        "activity",
        "alert_log",
        "alerts",
        "beats_this_tick",
        "channel_series",
        "channels",
        "counted_until",
        "day_end",
        "dirty_channel_minutes",
        "dirty_hours",
        "dirty_minutes",
        "dirty_runners",
        "failures",
        "failures_added",
        "health",
        "hours",
        "index",
        "jobs",
        "last_beat",
        "last_incident",
        "limits",
        "logs",
        "minute",
        "now",
        "pulse",
        "queued",
        "runner_events",
        "runner_jobs",
        "runners",
        "running",
        "scheduled",
        "seen",
        "seen_before",
        "seq",
        "series",
        "shell",
        "sources",
        "sums",
        "synthetic_until",
        "terminal",
        "totals",
        "watched_before",
    )

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.now = 0.0
        self.minute = 0
        self.runners: dict[str, Runner] = {}
        self.channels: dict[str, Channel] = {}
        # Ordered by last update (re-inserted on each change), so "newest first" is a walk backwards. A plain
        # dict, not an OrderedDict: iterating 100,000 jobs for a query is ten times faster.
        self.jobs: dict[str, Job] = {}
        # Search indexes: field -> value -> ids of the jobs with that value (see server/streams/core/search.py).
        # "status" holds only SETTLED statuses; the live ones are the pools above.
        self.index: dict[str, dict[str, Ids]] = {name: {} for name in INDEX_FIELDS}
        # Ordered sets of job ids by status; dict insertion order is arrival order.
        # OrderedDict, not dict: taking the oldest is O(1) after many deletions.
        self.running: OrderedDict[str, None] = OrderedDict()
        self.queued: OrderedDict[str, None] = OrderedDict()
        self.scheduled: OrderedDict[str, None] = OrderedDict()
        self.runner_jobs: dict[str, set[str]] = {}  # runner id -> ids of the jobs it runs (from events)
        self.terminal: OrderedDict[str, None] = OrderedDict()  # finished jobs, oldest first: evicted first
        self.failures: deque[Failure] = deque(maxlen=limits.failures_cap)
        self.failures_added = 0
        self.series: dict[int, list[int]] = {}
        # Rolling sums of the count columns: [this 24 h window, the 24 h before].
        self.sums: tuple[list[int], list[int]] = ([0] * BUCKET_WIDTH, [0] * BUCKET_WIDTH)
        self.watched_before = False  # some minute of the 24 h before the last 24 h has a bucket
        # Events received at or before this time are already in the restored series (a replay must not recount).
        self.counted_until = float("-inf")
        self.totals = [0, 0, 0]  # pending, running, scheduled now (sums of channel depth)
        # Job event ids folded lately, in two generations of at most Limits.dedupe_window each: the newest
        # ids, and the generation before. Plain dicts of strings, because the collector untracks those; a set
        # and a deque of 100,000 ids each cost every full collection 5 ms (bench/fold.py).
        self.seen: dict[str, None] = {}
        self.seen_before: dict[str, None] = {}
        self.sources: OrderedDict[str, int] = OrderedDict()  # src -> last seq
        self.health = Health()
        for rule in limits.sources.values():
            self.health.links[rule.label] = Link(rule.label, rule.kind)
        self.dirty_minutes: set[int] = set()
        self.dirty_runners: set[str] = set()
        self.hours: dict[int, list[int]] = {}  # hour -> bucket (counts summed, gauges last)
        self.dirty_hours: set[int] = set()
        self.channel_series: dict[str, MinuteRing] = {}
        self.dirty_channel_minutes: set[tuple[str, int]] = set()
        self.runner_events: deque[tuple[int, float, str, str, str]] = deque(maxlen=limits.runner_events_cap)
        self.alerts: dict[str, Alert] = {}
        self.alert_log: deque[tuple[int, float, str, str, str, str]] = deque(maxlen=limits.alert_log_cap)
        # Per service-matrix component, its latest incident since this process started: (at, severity, title).
        self.last_incident: dict[str, tuple[float, str, str]] = {}
        # The hourly history before this time is synthetic (the demo wrote it so its 24 h and 14 d views have data).
        self.synthetic_until: float | None = None
        self.logs: deque[tuple[int, float, str, str, str]] = deque(maxlen=limits.logs_cap)
        self.activity: deque[AuditNoted] = deque(maxlen=limits.activity_rows)  # newest first
        self.pulse: deque[tuple[int, float, float, float, int]] = deque(maxlen=limits.pulse_points)
        self.beats_this_tick: list[tuple[float, float | None]] = []  # (latency, gap) of beats since the last tick
        self.last_beat: float | None = None
        self.seq = 0  # numbers rows of the event logs (runner events, alert log, logs)
        self.day_end: float | None = None  # end of "today" in the configured time zone (from the clock tick)
        self.shell: dict[str, float | int | str] = {}  # the serving process's own numbers (from ShellStats)
