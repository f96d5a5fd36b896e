"""The live state jobpulse folds events into, and the rules of the fold (`Limits`).

Pure layer. `State` holds every domain's records (jobs, runners, channels,
series; each defined by its own module beside this one, with the fold of its
events) and jobpulse's own health: `Health`, one `Link` per source, and the
open alerts. The fold (server/streams/core/reducer.py and the domain modules)
mutates it; everyone else reads. Every collection has a cap from `Limits`, so
memory is bounded whatever the source sends.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.streams.core.channels import Channel
from server.streams.core.fingerprint import Cause
from server.streams.core.functions import Pending, Stat
from server.streams.core.groups import Group
from server.streams.core.jobs import INDEX_FIELDS, SETTLED, Failure, Ids, Job
from server.streams.core.labels import SourceRule
from server.streams.core.runners import Runner
from server.streams.core.series import BUCKET_WIDTH, DAY_MINUTES, MinuteRing

if TYPE_CHECKING:
    from server.streams.core.events import AuditNoted, NotifyStatus


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
    # Per-function and per-channel numbers (server/streams/core/functions.py): functions with their own stat
    # (the rest count as "(other)"; channels share max_channel_series), the rolling window the Functions table
    # shows, and how many minute, hour and day summaries the charts keep in memory.
    max_functions: int = 200
    fn_window: int = 60
    fn_minutes: int = 360
    fn_hours: int = 7 * 24
    fn_days: int = 30
    # Failure groups (server/streams/core/groups.py) and their hot-issue rule (server/streams/core/rules.py):
    # a group is new for group_new_s after it first appears, and raises one once it has group_new_min failures;
    # a spike is group_spike_min failures in 5 minutes and group_spike_factor times its rate over the hour.
    max_groups: int = 500
    group_new_s: float = 3600.0
    group_new_min: int = 3
    group_spike_min: int = 10
    group_spike_factor: float = 3.0
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
        "unmeasured",
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
        self.unmeasured = 0  # runtimes and waits two source clocks made negative: not counted in the sketches
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
        "cause_memo",
        "channel_series",
        "channel_stats",
        "channels",
        "counted_until",
        "day_end",
        "dirty_channel_minutes",
        "dirty_groups",
        "dirty_hours",
        "dirty_minutes",
        "dirty_runners",
        "failures",
        "failures_added",
        "fn_pending",
        "fn_stats",
        "group_mutes",
        "groups",
        "health",
        "hours",
        "index",
        "jobs",
        "last_beat",
        "last_incident",
        "limits",
        "logs",
        "minute",
        "notify",
        "notify_at",
        "now",
        "places",
        "pools",
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
        # A live job's value is its place (`places` when it entered), which Live Jobs' rows carry so a page orders
        # them itself: a merge patch replaces a list whole, and an `order` list was most of a tick's bytes (B6).
        # The other pools hold 0 (a cached int: no memory per job).
        self.running: OrderedDict[str, int] = OrderedDict()
        self.queued: OrderedDict[str, int] = OrderedDict()
        self.places = 0
        self.scheduled: OrderedDict[str, int] = OrderedDict()
        self.runner_jobs: dict[str, set[str]] = {}  # runner id -> ids of the jobs it runs (from events)
        self.terminal: OrderedDict[str, int] = OrderedDict()  # finished jobs, oldest first: evicted first
        # A job's status -> the pool of its jobs (every settled status: terminal), for jobs.move.
        self.pools: dict[str, OrderedDict[str, int]] = {
            "queued": self.queued,
            "running": self.running,
            "scheduled": self.scheduled,
            **dict.fromkeys(SETTLED, self.terminal),
        }
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
        # Per-function and per-channel numbers, by name (server/streams/core/functions.py).
        self.fn_stats: dict[str, Stat] = {}
        self.channel_stats: dict[str, Stat] = {}
        # Failure groups by fingerprint, ordered by last seen (server/streams/core/groups.py); the ones changed
        # since the store's last save; the mutes (group -> until, by, reason); the causes parsed lately.
        self.groups: dict[str, Group] = {}
        self.dirty_groups: set[str] = set()
        self.group_mutes: dict[str, tuple[float, str, str]] = {}
        self.cause_memo: dict[tuple[str | None, str | None], Cause] = {}
        self.fn_pending: dict[tuple[str, str], Pending] = {}  # noted by the job fold, drained each clock tick
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
        self.notify: NotifyStatus | None = None  # the alert notifier's last view (None: no alert target)
        self.notify_at = 0.0
        self.pulse: deque[tuple[int, float, float, float, int]] = deque(maxlen=limits.pulse_points)
        self.beats_this_tick: list[tuple[float, float | None]] = []  # (latency, gap) of beats since the last tick
        self.last_beat: float | None = None
        self.seq = 0  # numbers rows of the event logs (runner events, alert log, logs)
        self.day_end: float | None = None  # end of "today" in the configured time zone (from the clock tick)
        self.shell: dict[str, float | int | str] = {}  # the serving process's own numbers (from ShellStats)
