"""The durable outbox in Redis: the alerts' shared records, the notifications waiting, retrying and dead.

Keys, under `<prefix>:jp:notify:`:

- `alerts` (hash): alert id -> its shared record (server/notify/lifecycle.Record, JSON);
- `outbox` (stream, consumer group `senders`): one entry per notification and target, waiting to be sent;
- `retry` (sorted set, by due time): entries whose attempt failed, waiting out their backoff;
- `dead` (list, newest first): entries that used up their attempts or were refused for good;
- `log` (list, newest first): every attempt's outcome, for the page;
- `targets` (hash): each target's last success and last error;
- `silences` (hash): alert or rule -> until when it is silenced, by whom.

Deciding and enqueueing happen in one transaction (WATCH on `alerts`), so with
several processes each transition is recorded and enqueued once. An entry is
read by one process (XREADGROUP) and stays pending under its name until it is
acknowledged, moved to `retry` or to `dead`, each in one MULTI with the
acknowledgement: a process that dies mid-delivery leaves it pending, and after
`lease` seconds of silence another process takes it over (XAUTOCLAIM).
Everything read back is untrusted: what does not decode is dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import redis.asyncio as aredis
from redis.exceptions import ResponseError, WatchError

from server.notify.lifecycle import Notice, Policy, Proposal, Record, Resolve, acknowledge, decide
from server.streams.core.events import NotifyAlert, NotifyLine, NotifySilence, NotifyStatus, NotifyTarget

log = logging.getLogger("jobpulse.notify")

GROUP = "senders"
MAX_RECORDS = 2_000  # shared alert records kept (resolved ones are pruned oldest first beyond it)
WATCH_TRIES = 20  # transactions retried when another process wrote the records meanwhile


class Entry(msgspec.Struct, frozen=True):
    """One notification on its way to one target."""

    t: str  # the target's name
    n: Notice
    a: int = 0  # attempts made
    e: str = ""  # the last attempt's error


class Silence(msgspec.Struct, frozen=True):
    until: float
    by: str
    reason: str = ""


@dataclass(frozen=True)
class Taken:
    id: str  # the stream entry's id
    entry: Entry | None  # None: it did not decode (acknowledged and dropped by `drop`)


class _Dead(msgspec.Struct, frozen=True):
    at: float
    entry: Entry


_records = msgspec.json.Decoder(Record)
_line = msgspec.json.Decoder(NotifyLine)
_dead = msgspec.json.Decoder(_Dead)
_error = msgspec.json.Decoder(tuple[float, str])
_entry = msgspec.json.Decoder(Entry)
_silence = msgspec.json.Decoder(Silence)
_encode = msgspec.json.Encoder().encode

# Moves the entries whose backoff is over from `retry` back to the stream, atomically: two processes running it
# at once move each entry once.
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', member)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


class Outbox:
    """The outbox of one jobpulse deployment (every process with the same prefix shares it)."""

    def __init__(self, client: aredis.Redis, prefix: str, cap: int, log_cap: int, dead_cap: int) -> None:
        base = f"{prefix}:jp:notify"
        self.client = client
        self.alerts_key = f"{base}:alerts"
        self.stream = f"{base}:outbox"
        self.retry_key = f"{base}:retry"
        self.dead_key = f"{base}:dead"
        self.log_key = f"{base}:log"
        self.targets_key = f"{base}:targets"
        self.silences_key = f"{base}:silences"
        self.cap = cap
        self.log_cap = log_cap
        self.dead_cap = dead_cap
        self.malformed = 0  # records, entries and silences that did not decode
        self.dropped = 0  # notifications not enqueued: the outbox was full
        self.contended = 0  # rounds given up after WATCH_TRIES conflicting writes (proposed again next round)
        self._move_due = client.register_script(_MOVE_DUE)

    async def ensure_group(self) -> None:
        try:
            # From the stream's start: entries added before any process made the group are sent too.
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- the shared records -----------------------------------------------------------------------

    def _decode_records(self, raw: Mapping[Any, Any]) -> dict[str, Record]:
        out = {}
        for key, value in raw.items():
            try:
                record = _records.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.malformed += 1
                continue
            if record.id != _text(key):
                self.malformed += 1
                continue
            out[record.id] = record
        return out

    async def records(self) -> dict[str, Record]:
        return self._decode_records(await self.client.hgetall(self.alerts_key))

    async def apply(
        self, proposals: Iterable[Proposal], now: float, policy: Policy, route: Callable[[Record], list[str]]
    ) -> list[Notice]:
        """Decide every proposal against the shared records and enqueue what is news for every target, in one
        transaction; returns the notices enqueued (none when another process got there first)."""
        wanted = list(proposals)
        if not wanted:
            return []
        async with self.client.pipeline(transaction=True) as pipe:
            for attempt in range(WATCH_TRIES):
                try:
                    await pipe.watch(self.alerts_key)
                    records = self._decode_records(await pipe.hgetall(self.alerts_key))
                    waiting = await pipe.xlen(self.stream) + await pipe.zcard(self.retry_key)
                    changes: dict[str, Record] = {}
                    addressed: list[tuple[Notice, list[str]]] = []  # each notice and the targets it goes to
                    for proposal in wanted:
                        key = proposal.id if isinstance(proposal, Resolve) else proposal.issue.id
                        current = changes.get(key, records.get(key))
                        record, notice = decide(current, proposal, now, policy)
                        if notice is not None and record is not None:
                            if notice.kind == "resolved":
                                # To whoever was told it fired, whatever its severity became.
                                to = list(record.routed) or route(record)
                            else:
                                to = route(record)
                                told = tuple(sorted({*record.routed, *to}))
                                if told != record.routed:
                                    record = replace(record, routed=told)
                                    notice = replace(notice, record=record)
                            addressed.append((notice, to))
                        if record is not None:
                            changes[key] = record
                    if not changes:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return []
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for key, record in changes.items():
                        pipe.hset(self.alerts_key, key, _encode(record))
                    for notice, to in addressed:
                        for target in to:
                            if waiting >= self.cap:
                                self.dropped += 1
                                pipe.lpush(self.log_key, _log_line(now, target, notice, "dropped", "outbox full"))
                                continue
                            waiting += 1
                            pipe.xadd(self.stream, {"m": _encode(Entry(t=target, n=notice))})
                            pipe.hincrby(self.targets_key, f"{target}:backlog", 1)
                    if addressed:
                        pipe.ltrim(self.log_key, 0, self.log_cap - 1)
                    await pipe.execute()
                    break
                except WatchError:
                    # Another process changed a record meanwhile: decide again on what it wrote.
                    if attempt == WATCH_TRIES - 1:
                        self.contended += 1
                        return []  # the next round proposes it all again
        await self._prune(now)
        return [notice for notice, _ in addressed]

    async def enqueue(self, notice: Notice, targets: list[str], now: float) -> int:
        """Queue `notice` for `targets` outside the lifecycle (a test notification); returns how many."""
        waiting = sum(await asyncio.gather(self.client.xlen(self.stream), self.client.zcard(self.retry_key)))
        room = max(0, self.cap - waiting)
        pipe = self.client.pipeline(transaction=True)
        for target in targets[:room]:
            pipe.xadd(self.stream, {"m": _encode(Entry(t=target, n=notice))})
            pipe.hincrby(self.targets_key, f"{target}:backlog", 1)
        for target in targets[room:]:
            self.dropped += 1
            pipe.lpush(self.log_key, _log_line(now, target, notice, "dropped", "outbox full"))
        await pipe.execute()
        return min(room, len(targets))

    async def _prune(self, now: float) -> None:
        """Keep at most MAX_RECORDS records: the resolved ones longest over go first."""
        if await self.client.hlen(self.alerts_key) <= MAX_RECORDS:
            return
        records = await self.records()
        over = sorted((r for r in records.values() if r.state == "resolved"), key=lambda r: r.resolved_at)
        extra = len(records) - MAX_RECORDS
        if extra > 0 and over:
            await self.client.hdel(self.alerts_key, *(r.id for r in over[:extra]))

    async def acknowledge(self, alert_id: str, user: str, now: float) -> Record | None:
        """Acknowledge a firing alert (no more reminders for its episode); None if it is not firing."""
        async with self.client.pipeline(transaction=True) as pipe:
            for _ in range(WATCH_TRIES):
                try:
                    await pipe.watch(self.alerts_key)
                    raw = await pipe.hget(self.alerts_key, alert_id)
                    record = self._decode_records({alert_id.encode(): raw}).get(alert_id) if raw else None
                    acked = acknowledge(record, user, now) if record is not None else None
                    if acked is None:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(self.alerts_key, alert_id, _encode(acked))
                    await pipe.execute()
                    return acked
                except WatchError:
                    continue
            raise WatchError(f"the alert records kept changing: {alert_id} was not acknowledged")

    # -- silences -----------------------------------------------------------------------------------

    async def silence(self, what: str, until: float, by: str, reason: str = "") -> None:
        await self.client.hset(self.silences_key, what, _encode(Silence(until=until, by=by, reason=reason)))

    async def unsilence(self, what: str) -> bool:
        return bool(await self.client.hdel(self.silences_key, what))

    async def silences(self, now: float) -> dict[str, Silence]:
        """The silences in force; expired ones are removed."""
        raw = await self.client.hgetall(self.silences_key)
        out: dict[str, Silence] = {}
        expired = []
        for key, value in raw.items():
            name = _text(key)
            try:
                silence = _silence.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.malformed += 1
                expired.append(key)
                continue
            if silence.until <= now:
                expired.append(key)
            else:
                out[name] = silence
        if expired:
            await self.client.hdel(self.silences_key, *expired)
        return out

    # -- delivery -----------------------------------------------------------------------------------

    def _taken(self, messages: Any) -> list[Taken]:
        out = []
        for entry_id, fields in messages:
            try:
                entry: Entry | None = _entry.decode(fields[b"m"])
            except (KeyError, TypeError, msgspec.DecodeError, msgspec.ValidationError):
                self.malformed += 1
                entry = None
            out.append(Taken(_text(entry_id), entry))
        return out

    async def take(self, consumer: str, count: int, block_ms: int) -> list[Taken]:
        """New entries for this process (at most `count`, waiting up to `block_ms` for one)."""
        answer: Any = await self.client.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms)
        return [t for _, messages in answer or [] for t in self._taken(messages)]

    async def take_over(self, consumer: str, lease_s: float, count: int) -> list[Taken]:
        """Entries another process took and has held silently for `lease_s`: it died mid-delivery."""
        answer: Any = await self.client.xautoclaim(
            self.stream, GROUP, consumer, int(lease_s * 1000), "0-0", count=count
        )
        # [next id, [(id, fields)...], deleted ids]: an entry deleted meanwhile comes back without fields.
        return self._taken([m for m in answer[1] if m and m[1]]) if answer else []

    async def keep(self, consumer: str, entry_ids: list[str]) -> None:
        """Renew this process's hold on entries still being sent (resets their idle time)."""
        if entry_ids:
            await self.client.xclaim(self.stream, GROUP, consumer, 0, list[Any](entry_ids), justid=True)

    async def move_due(self, now: float, limit: int = 64) -> int:
        return int(await self._move_due(keys=[self.retry_key, self.stream], args=[now, limit]))

    async def drop(self, entry_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        await pipe.execute()

    async def sent(self, entry_id: str, entry: Entry, now: float, status: int, ms: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.hset(self.targets_key, f"{entry.t}:ok", now)
        pipe.hincrby(self.targets_key, f"{entry.t}:backlog", -1)
        pipe.lpush(self.log_key, _log_line(now, entry.t, entry.n, "sent", "", entry.a + 1, status, ms))
        pipe.ltrim(self.log_key, 0, self.log_cap - 1)
        await pipe.execute()

    async def failed(
        self, entry_id: str, entry: Entry, now: float, error: str, status: int, ms: float, due: float | None
    ) -> None:
        """An attempt failed: the entry waits in `retry` until `due`, or (None) goes to the dead letters."""
        attempt = entry.a + 1
        again = Entry(t=entry.t, n=entry.n, a=attempt, e=error)
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        if due is None:
            pipe.lpush(self.dead_key, _encode({"at": now, "entry": again}))
            pipe.ltrim(self.dead_key, 0, self.dead_cap - 1)
            pipe.hincrby(self.targets_key, f"{entry.t}:backlog", -1)
        else:
            pipe.zadd(self.retry_key, {_encode(again): due})
        pipe.hset(self.targets_key, f"{entry.t}:error", _encode([now, error]))
        outcome = "dead" if due is None else "retry"
        pipe.lpush(self.log_key, _log_line(now, entry.t, entry.n, outcome, error, attempt, status, ms))
        pipe.ltrim(self.log_key, 0, self.log_cap - 1)
        await pipe.execute()

    async def view(self, targets: list[tuple[str, str, str]], now: float, lines: int, dead: int) -> NotifyStatus:
        """What the pages show (one read of every key): `targets` as (name, kind, shown)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.targets_key)
        pipe.lrange(self.log_key, 0, lines - 1)
        pipe.lrange(self.dead_key, 0, dead - 1)
        pipe.xlen(self.stream)
        pipe.zcard(self.retry_key)
        pipe.llen(self.dead_key)
        pipe.hgetall(self.alerts_key)
        raw_targets, raw_log, raw_dead, waiting, retrying, dead_count, raw_records = await pipe.execute()
        marks = {_text(k): v for k, v in raw_targets.items()}
        shown = []
        for name, kind, where in targets:
            ok = _number(marks.get(f"{name}:ok"))
            error_at, error = None, ""
            raw_error = marks.get(f"{name}:error")
            if raw_error is not None:
                try:
                    error_at, error = _error.decode(raw_error)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    self.malformed += 1
            # What waits for it (to send or retry), counted in the same transactions as the entries themselves.
            backlog = min(max(int(_number(marks.get(f"{name}:backlog")) or 0), 0), self.cap)
            shown.append(NotifyTarget(name, kind, where, ok, error_at, error[:300], backlog))
        log_lines = []
        for raw in raw_log:
            try:
                log_lines.append(_line.decode(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.malformed += 1
        dead_lines = []
        for raw in raw_dead:
            try:
                letter = _dead.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.malformed += 1
                continue
            e = letter.entry
            dead_lines.append(
                NotifyLine(
                    at=letter.at,
                    target=e.t,
                    id=e.n.id,
                    kind=e.n.kind,
                    alert=e.n.record.id,
                    outcome="dead",
                    severity=e.n.record.severity,
                    title=e.n.record.title,
                    error=e.e,
                    attempt=e.a,
                )
            )
        records = self._decode_records(raw_records)
        firing = tuple(
            NotifyAlert(r.id, r.fired_at, r.sent, r.acked_by, r.acked_at)
            for r in sorted(records.values(), key=lambda r: r.fired_at)
            if r.state == "firing"
        )
        silences = tuple(
            NotifySilence(what, s.until, s.by, s.reason) for what, s in sorted((await self.silences(now)).items())
        )
        return NotifyStatus(
            at=now, targets=tuple(shown), waiting=int(waiting), retrying=int(retrying), dead=int(dead_count),
            log=tuple(log_lines), dead_letters=tuple(dead_lines), silences=silences, firing=firing,
        )  # fmt: skip

    async def forget_consumers(self, idle_s: float) -> int:
        """Remove senders that hold nothing and were idle `idle_s` (processes long gone): the group stays small."""
        gone = 0
        for consumer in await self.client.xinfo_consumers(self.stream, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] >= idle_s * 1000:
                await self.client.xgroup_delconsumer(self.stream, GROUP, consumer["name"])
                gone += 1
        return gone


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) < 1e11 else None  # not NaN, a plausible epoch


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _log_line(
    at: float, target: str, notice: Notice, outcome: str, error: str, attempt: int = 0, status: int = 0,
    ms: float = 0.0,
) -> bytes:  # fmt: skip
    return _encode(
        {
            "at": at,
            "target": target,
            "id": notice.id,
            "kind": notice.kind,
            "alert": notice.record.id,
            "severity": notice.record.severity,
            "title": notice.record.title,
            "outcome": outcome,
            "error": error,
            "attempt": attempt,
            "status": status,
            "ms": round(ms, 1),
        }
    )
