"""Domain events: what a source says (native protocol messages) and what the shell says (ticks, reconcile).

Pure layer: standard library and msgspec only; no I/O, no clock, no randomness.
`parse_message(data)` turns one pub/sub payload (an object or a batch array, see
docs/protocol.md section 1.1) into typed events plus one rejection per object
that fails the schema. The shell adds receive times; the reducer folds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

PROTOCOL_VERSION = 1
MAX_BATCH = 1000

Id = Annotated[str, Meta(min_length=1, max_length=200)]
ChannelName = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")]
FnName = Annotated[str, Meta(min_length=1, max_length=300)]
# Every number a source sends has a range (docs/protocol.md 1.1); one outside it rejects its object, counted as a
# schema rejection. Counts and seqs stay below 2^53, the largest integer a browser holds exactly (a 4,300-digit
# one broke /metrics, the counters widget and persistence); times are epoch seconds below 10^11 (the year 5138),
# durations below that too: finite, and small enough for every sum and product the projections make.
MAX_COUNT = 2**53 - 1
MAX_TIME = 1e11
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Seconds = Annotated[float, Meta(ge=0, le=MAX_TIME)]
Time = Annotated[float, Meta(ge=0, le=MAX_TIME)]


def count(value: Any, name: str = "count") -> int:
    """`value` (an int, or text of one) as a count within 0..MAX_COUNT: the Celery and django-mojo edges, whose
    numbers no schema decodes.

    Raises:
        ValueError: outside the range, or not an integer (the caller rejects and counts the object).
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name}: not an integer")
    if isinstance(value, str) and len(value) > 20:  # int() of 4,300 digits is slow, and no count is that long
        raise ValueError(f"{name}: out of range")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}: not an integer") from None
    if not 0 <= number <= MAX_COUNT:
        raise ValueError(f"{name}: {str(number)[:30]} out of range")
    return number


def seconds(value: Any, name: str = "time") -> float:
    """`value` (a number) as a time or duration within 0..MAX_TIME, finite.

    Raises:
        ValueError: outside the range, not finite, or not a number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: not a number")
    if not 0 <= value <= MAX_TIME:  # false for NaN too; an int is compared as it is (float() of 10^400 overflows)
        raise ValueError(f"{name}: {str(value)[:30]} out of range")
    return float(value)


Version = Literal[1]
RunnerState = Literal["running", "draining", "drained", "paused"]
JobEventName = Literal["queued", "scheduled", "started", "retried", "completed", "failed", "canceled", "expired"]


class ActiveJob(Struct, frozen=True):
    """A job a runner is running now, as listed in its heartbeat."""

    job: Id
    channel: ChannelName
    fn: FnName
    started: Time


class Heartbeat(Struct, frozen=True, tag="heartbeat", tag_field="type"):
    """A runner's periodic beat (docs/protocol.md, `heartbeat`). `src` is the runner id."""

    v: Version
    src: Id
    seq: Count
    ts: Time
    boot: Time
    interval: Annotated[float, Meta(gt=0, le=3600)]
    host: Annotated[str, Meta(max_length=200)] = ""
    region: Annotated[str, Meta(max_length=100)] = ""
    pid: Count = 0
    version: Annotated[str, Meta(max_length=100)] = ""
    state: RunnerState = "running"
    channels: Annotated[list[ChannelName], Meta(max_length=1000)] = []
    concurrency: Annotated[int, Meta(ge=1, le=100_000)] = 1
    active: Annotated[list[ActiveJob], Meta(max_length=100)] = []
    processed: Count = 0
    failed: Count = 0
    id: Id | None = None


class RunnerStopped(Struct, frozen=True, tag="runner.stopped", tag_field="type"):
    """A runner stopped cleanly (docs/protocol.md, `runner.stopped`)."""

    v: Version
    src: Id
    seq: Count
    ts: Time
    reason: Annotated[str, Meta(max_length=200)] = ""
    id: Id | None = None


class RunnerRemoved(Struct, frozen=True, tag="runner.removed", tag_field="type"):
    """The job system forgot a dead runner (docs/protocol.md, `runner.removed`); jobpulse forgets it too."""

    v: Version
    src: Id
    seq: Count
    ts: Time
    runner: Id
    reason: Annotated[str, Meta(max_length=200)] = ""
    id: Id | None = None


class JobEvent(Struct, frozen=True, tag="job", tag_field="type"):
    """One lifecycle event of one job (docs/protocol.md, `job`)."""

    v: Version
    id: Id
    src: Id
    seq: Count
    ts: Time
    event: JobEventName
    job: Id
    channel: ChannelName
    fn: FnName
    attempt: Count = 1
    cid: Annotated[str, Meta(max_length=200)] | None = None
    runner: Id | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=MAX_COUNT)] | None = None
    queued_at: Time | None = None
    run_at: Time | None = None
    started_at: Time | None = None
    duration: Seconds | None = None
    payload: msgspec.Raw = msgspec.Raw()  # raw JSON, not parsed; empty when absent
    error: str | None = None
    traceback: str | None = None
    reason: Annotated[str, Meta(max_length=200)] | None = None


class ChannelDepth(Struct, frozen=True):
    """The depth of one channel at one moment."""

    queued: Count = 0
    inflight: Count = 0
    scheduled: Count = 0
    oldest: Time | None = None
    paused: bool = False
    ts: Time | None = None


class Depth(Struct, frozen=True, tag="depth", tag_field="type"):
    """A depth report for one or more channels (docs/protocol.md, `depth`)."""

    v: Version
    src: Id
    seq: Count
    ts: Time
    channels: Annotated[dict[ChannelName, ChannelDepth], Meta(max_length=10_000)]
    id: Id | None = None


SourceMessage = Heartbeat | RunnerStopped | RunnerRemoved | JobEvent | Depth
SOURCE_TYPES = frozenset({"heartbeat", "runner.stopped", "runner.removed", "job", "depth"})


# Events the shell makes. They carry their own time, so the reducer never reads a clock.


class Tick(Struct, frozen=True):
    """The clock advanced to `now` (jobpulse's clock); `connected` says whether the source is reachable.

    `day_end` is when "today" ends in the configured time zone (the shell knows time zones; the fold does not).
    """

    now: float
    connected: bool = True
    day_end: float | None = None


class LogRecorded(Struct, frozen=True):
    """jobpulse itself logged a warning or an error (shown on the service log page)."""

    at: float
    level: str
    logger: str
    message: str


class AuditNoted(Struct, frozen=True):
    """An operator command was audited (docs/protocol.md 5.5): the row of the live activity widget."""

    id: str
    at: float
    user: str
    role: str
    action: str
    target: str
    ok: bool
    result: str
    count: int | None
    message: str
    error: str = ""
    source: str = ""  # the sources the command went to (comma-separated), as the audit entry says


class ShellStats(Struct, frozen=True):
    """The serving process's own numbers: clients, flush time, memory (for the platform status page)."""

    at: float
    values: dict[str, float | int | str]


class NotifyTarget(Struct, frozen=True):
    """One alert target as the notifier sees it: its last success and last error (docs/alerts.md)."""

    name: str
    kind: str
    shown: str  # the URL without what may be secret
    last_ok: float | None = None
    last_error_at: float | None = None
    last_error: str = ""
    backlog: int = 0  # its notifications waiting, to be sent or retried


class NotifyLine(Struct, frozen=True):
    """One delivery attempt's outcome (the outbox's log, docs/protocol.md 8.3), or a dead letter."""

    at: float
    target: str
    id: str
    kind: str
    alert: str
    outcome: str  # sent, retry, dead, dropped
    severity: str = ""
    title: str = ""
    error: str = ""
    attempt: int = 0
    status: int = 0
    ms: float = 0.0


class NotifySilence(Struct, frozen=True):
    what: str  # an alert id or a rule
    until: float
    by: str
    reason: str = ""


class NotifyAlert(Struct, frozen=True):
    """A firing alert's shared record, as far as the pages need it: when it fired, who acknowledged it."""

    id: str
    fired_at: float
    sent: int
    acked_by: str = ""
    acked_at: float = 0.0


class NotifyStatus(Struct, frozen=True):
    """The alert notifier's view of the shared outbox (the Notifications page, the Hot Issues card's marks)."""

    at: float
    targets: tuple[NotifyTarget, ...]
    waiting: int
    retrying: int
    dead: int
    log: tuple[NotifyLine, ...]
    dead_letters: tuple[NotifyLine, ...]
    silences: tuple[NotifySilence, ...]
    firing: tuple[NotifyAlert, ...]


class SourceStatus(Struct, frozen=True):
    """The connection to the source went up or down at `at`.

    A source read over several connections (django-mojo: Redis and Postgres) names each in `parts`, with its error
    ("" while it is up), so the status page can say which one is down.
    """

    connected: bool
    at: float
    error: str = ""
    parts: dict[str, str] = {}
    source: str = ""  # the label of the source it is about (set on the way to the fold: labels.relabel)


class SourceWarning(Struct, frozen=True):
    """A condition of the job system itself that its connector sees and the fold cannot (django-mojo: its
    scheduler holds no lock). Raised as a hot issue (`source_warning:<key>`) until an empty `severity` clears it."""

    key: str
    at: float
    severity: str = ""  # "warning" or "critical"; "" clears
    title: str = ""
    detail: str = ""
    source: str = ""  # the label of the source it is about (set on the way to the fold: labels.relabel)


class Rejected(Struct, frozen=True):
    """An object from the source failed validation; `reason` is one of REJECT_REASONS."""

    reason: str
    detail: str = ""


class Reconciled(Struct, frozen=True):
    """What the authoritative keys said at `at` (docs/protocol.md section 1.3)."""

    at: float
    registered: tuple[str, ...]
    heartbeats: tuple[Heartbeat, ...]
    depth: dict[str, ChannelDepth]
    rtt: float | None = None
    # `registered` is the whole registry (not cut at a cap, and the source keeps one): a runner outside it
    # that is not beating was removed while jobpulse was not listening (an outage), and goes.
    complete: bool = False
    source: str = ""  # the label of the source whose keys these are: only its runners can be missing from them


class RunnerRecord(Struct, frozen=True):
    """A runner as jobpulse last knew it: what `P:jp:runners` keeps across restarts."""

    beat: Heartbeat
    last_recv: float | None
    stopped: bool = False
    stop_reason: str = ""
    first_seen: float | None = None


class FailureRecord(Struct, frozen=True):
    """One failure in the recent-failures ring: what `P:jp:failures` keeps across restarts."""

    event: str
    job: str
    fn: str
    channel: str
    error: str
    at: float
    runner: str | None = None
    attempt: int = 0
    traceback: str | None = None


class StatCell(Struct, frozen=True, array_like=True):
    """One function's or channel's numbers over one minute or hour, as the store keeps them (docs/protocol.md 1.7).

    `rt` and `wt` are the runtime and wait sketches (server/streams/core/sketch.py: bucket index -> count), checked
    by the store with `sketch.unflat` as it decodes them from their flat form.
    """

    kind: Literal["fn", "channel"]
    name: Annotated[str, Meta(min_length=1, max_length=300)]
    res: Literal["m", "h"]
    slot: Annotated[int, Meta(ge=0, le=MAX_COUNT)]
    completed: Count
    failed: Count
    retried: Count
    rt_max: Seconds
    wt_max: Seconds
    rt: dict[int, int]
    wt: dict[int, int]


class GroupRecord(Struct, frozen=True):
    """A failure group as the store keeps it (server/streams/core/groups.py; docs/protocol.md 1.7)."""

    id: Annotated[str, Meta(pattern=r"^[0-9a-f]{16}$")]
    type: Annotated[str, Meta(max_length=200)]
    message: Annotated[str, Meta(max_length=300)]
    frame: Annotated[str, Meta(max_length=600)]
    example: Annotated[str, Meta(max_length=500)]
    count: Count
    first: Time
    last: Time
    functions: Annotated[dict[Annotated[str, Meta(max_length=300)], Count], Meta(max_length=20)]
    channels: Annotated[dict[Annotated[str, Meta(max_length=200)], Count], Meta(max_length=20)]
    minutes: Annotated[dict[str, Count], Meta(max_length=60)]
    samples: Annotated[list[tuple[Id, Time, Annotated[str, Meta(max_length=300)], Annotated[str, Meta(max_length=200)],
                                  Annotated[str, Meta(max_length=200)]]], Meta(max_length=5)]  # fmt: skip


class GroupMute(Struct, frozen=True):
    """One muted failure group: it raises no hot issue until `until`."""

    group: str
    until: float
    by: str
    reason: str = ""


class GroupMutes(Struct, frozen=True):
    """The failure groups muted now, as every process reads them from the store (server/groups.py)."""

    mutes: tuple[GroupMute, ...]


class Restored(Struct, frozen=True):
    """jobpulse's own durable state, read back from the store at start."""

    series: dict[int, tuple[int, ...]]
    runners: tuple[RunnerRecord, ...]
    failures: tuple[FailureRecord, ...]
    counted_until: float = float("-inf")  # the receive time of the last event the series counted
    hours: dict[int, tuple[int, ...]] = {}
    channel_series: dict[str, dict[int, tuple[int, ...]]] = {}
    synthetic_until: float | None = None  # the history before this is made up (the demo's backfill)
    stats: tuple[StatCell, ...] = ()  # per-function and per-channel cells (server/streams/core/functions.py)
    now: float = 0.0  # jobpulse's clock when the store was read: which minute, hour and day are open
    groups: tuple[GroupRecord, ...] = ()  # the failure groups (server/streams/core/groups.py)
    # Per stat ("fn:<name>", "channel:<name>"): its related names (a function's channels, a channel's functions).
    related: dict[str, tuple[str, ...]] = {}


Event = (
    SourceMessage
    | Tick
    | SourceStatus
    | SourceWarning
    | Rejected
    | Reconciled
    | Restored
    | LogRecorded
    | ShellStats
    | AuditNoted
    | NotifyStatus
    | GroupMutes
)

REJECT_REASONS = ("too_large", "json", "schema", "version", "unknown_type", "batch", "error")

_typed = msgspec.json.Decoder(SourceMessage)
_typed_batch = msgspec.json.Decoder(list[SourceMessage])
_raw_batch = msgspec.json.Decoder(list[msgspec.Raw])
_untyped = msgspec.json.Decoder()


def parse_message(data: bytes, max_bytes: int) -> tuple[list[SourceMessage], list[Rejected]]:
    """Parse one pub/sub payload from `P:events` into messages and rejections.

    Valid payloads take one typed decode. Only a payload that fails it is taken
    apart object by object, so that one bad object in a batch costs only itself
    and each rejection names its reason.
    """
    if len(data) > max_bytes:
        return [], [Rejected("too_large", f"{len(data)} bytes > {max_bytes}")]
    first = data.lstrip()[:1]
    try:
        if first == b"[":
            messages = _typed_batch.decode(data)
            if len(messages) > MAX_BATCH:
                return [], [Rejected("batch", f"{len(messages)} objects > {MAX_BATCH}")]
            return messages, []
        return [_typed.decode(data)], []
    # msgspec checks UTF-8 only as it makes a str, and then raises UnicodeDecodeError, which is no DecodeError: a
    # string that is not UTF-8 escaped this function (found by bench/hostile.py). Live, it was counted as an
    # `error` with a logged traceback; replayed from P:stream, it ended the connector's reconcile loop.
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        pass
    except RecursionError:
        return [], [Rejected("json", "nested too deeply")]
    if first != b"[":
        rejection = _judge(data)
        return [], [rejection]
    try:
        parts = _raw_batch.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return [], [Rejected("json", str(exc)[:200])]
    except RecursionError:
        return [], [Rejected("json", "nested too deeply")]
    if len(parts) > MAX_BATCH:
        return [], [Rejected("batch", f"{len(parts)} objects > {MAX_BATCH}")]
    good: list[SourceMessage] = []
    bad: list[Rejected] = []
    for part in parts:
        try:
            good.append(_typed.decode(part))
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            bad.append(_judge(bytes(part)))
    return good, bad


def _judge(data: bytes) -> Rejected:
    """Say why one object failed the typed decode: not JSON, a newer version, an unknown type, or the schema."""
    try:
        obj: Any = _untyped.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejected("json", str(exc)[:200])
    except RecursionError:
        return Rejected("json", "nested too deeply")
    if not isinstance(obj, dict):
        return Rejected("schema", f"expected an object, got {type(obj).__name__}")
    version = obj.get("v")
    if isinstance(version, int) and not isinstance(version, bool) and version > PROTOCOL_VERSION:
        return Rejected("version", f"v={version}")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in SOURCE_TYPES:  # an unhashable `type` cannot be `in` a set
        return Rejected("unknown_type", f"type={str(kind)[:50]}")
    try:
        _typed.decode(data)
    except msgspec.ValidationError as exc:
        return Rejected("schema", f"{kind}: {exc}"[:300])
    except RecursionError:
        return Rejected("schema", f"{kind}: nested too deeply")
    return Rejected("schema", str(kind))  # pragma: no cover - the typed decode failed above


def encode(message: Struct) -> bytes:
    """Encode a message as compact JSON (used by the simulator, tests and benchmarks)."""
    return msgspec.json.encode(message)
