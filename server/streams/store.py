"""jobpulse's own durable state in Redis: series, runners, recent failures (docs/protocol.md 1.7).

Shell layer. `load()` reads it back into a `Restored` event at start;
`save(state)` writes what changed since the last save, in one pipeline. Values
are absolute (not increments), so several jobpulse processes folding the same
source can share one store, and a repeated save is harmless.
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
import redis.asyncio as aredis

from server.streams.core import functions, sketch
from server.streams.core.events import (
    MAX_COUNT,
    MAX_TIME,
    Count,
    FailureRecord,
    GroupMute,
    GroupRecord,
    Restored,
    RunnerRecord,
    Seconds,
    StatCell,
)
from server.streams.core.functions import Cell
from server.streams.core.groups import Group
from server.streams.core.runners import runner_record
from server.streams.core.series import BUCKET_WIDTH
from server.streams.core.state import Limits, State

log = logging.getLogger("jobpulse.store")

_runner_decoder = msgspec.json.Decoder(RunnerRecord)
_failure_decoder = msgspec.json.Decoder(FailureRecord)
_bucket_decoder = msgspec.json.Decoder(list[int])
_encoder = msgspec.json.Encoder()


class _StoredCell(msgspec.Struct, array_like=True):
    """A stat cell's value in Redis: [completed, failed, retried, rt_max, wt_max, [rt flat], [wt flat]]; every number
    bounded as it decodes (the sketches' buckets by `sketch.unflat`)."""

    completed: Count
    failed: Count
    retried: Count
    rt_max: Seconds
    wt_max: Seconds
    rt: list[int]
    wt: list[int]


_cell_decoder = msgspec.json.Decoder(_StoredCell)
_group_decoder = msgspec.json.Decoder(GroupRecord)
_Name = Annotated[str, msgspec.Meta(max_length=300)]
_related_decoder = msgspec.json.Decoder(Annotated[list[_Name], msgspec.Meta(max_length=100)])
_mute_decoder = msgspec.json.Decoder(GroupMute)

# Deletes a stat hash's slots older than ARGV[1] inside Redis: the sweep costs no round trip per field.
_SWEEP = """
local gone = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local slot = tonumber(field)
  if slot == nil or slot < tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], field)
    gone = gone + 1
  end
end
return gone
"""
SWEEP_EVERY = 600.0  # s between sweeps of the stats hashes' expired slots


class Store:
    """Reads and writes `P:jp:*` keys."""

    def __init__(
        self,
        client: aredis.Redis,
        prefix: str,
        series_minutes: int,
        failures_cap: int,
        stats_minutes: int = 2_880,
        stats_hours: int = 720,
    ) -> None:
        self.client = client
        # Per-function and per-channel cells (server/streams/core/functions.py): SET of "kind:name", and for each
        # a HASH slot -> cell by resolution: `stats:m:kind:name` (minutes) and `stats:h:kind:name` (hours).
        self.stats_key = f"{prefix}:jp:stats"
        self.related_key = f"{prefix}:jp:stats:related"  # HASH "kind:name" -> [related names]
        self.groups_key = f"{prefix}:jp:groups"  # HASH fingerprint -> GroupRecord
        self.mutes_key = f"{prefix}:jp:groups:muted"  # HASH fingerprint -> GroupMute (every process reads it)
        self.stats_minutes = stats_minutes
        self.stats_hours = stats_hours
        self._stat_versions: dict[tuple[str, str], int] = {}  # the version of each stat as last written
        self._stat_names: set[tuple[str, str]] = set()  # every stat read or written: swept for expired slots
        self._swept = float("-inf")
        self.series_key = f"{prefix}:jp:series"
        self.runners_key = f"{prefix}:jp:runners"
        self.failures_key = f"{prefix}:jp:failures"
        self.meta_key = f"{prefix}:jp:meta"
        self.hours_key = f"{prefix}:jp:hours"
        self.channels_key = f"{prefix}:jp:cseries"  # SET of the channels that have a series hash
        self.channel_key = f"{prefix}:jp:cseries:"  # + channel: HASH minute -> [published, completed, ...]
        self.series_minutes = series_minutes
        self.failures_cap = failures_cap
        self._persisted: set[int] = set()  # minutes known to be in the series hash
        self._persisted_hours: set[int] = set()
        self._persisted_channel: dict[str, set[int]] = {}
        self.corrupt = 0  # entries that failed to decode on load (skipped, counted)

    async def load(self, now: float, limits: Limits) -> Restored:
        """Read the durable state back; entries that do not decode are skipped and counted."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.series_key)
        pipe.hgetall(self.runners_key)
        pipe.lrange(self.failures_key, 0, self.failures_cap - 1)
        pipe.hget(self.meta_key, "counted_until")
        pipe.hgetall(self.hours_key)
        pipe.smembers(self.channels_key)
        pipe.hget(self.meta_key, "synthetic_until")
        pipe.smembers(self.stats_key)
        pipe.hgetall(self.groups_key)
        pipe.hgetall(self.related_key)
        (
            raw_series,
            raw_runners,
            raw_failures,
            raw_counted,
            raw_hours,
            raw_channels,
            raw_synthetic,
            raw_stats,
            raw_groups,
            raw_related,
        ) = await pipe.execute()

        minute_now = int(now // 60)
        series = await self._buckets(self.series_key, raw_series, minute_now - self.series_minutes + 1)
        self._persisted = set(series)
        hours = await self._buckets(self.hours_key, raw_hours, minute_now // 60 - limits.hours_retention + 1)
        self._persisted_hours = set(hours)
        channel_series: dict[str, dict[int, tuple[int, ...]]] = {}
        names = sorted(c.decode(errors="replace") for c in raw_channels)[: limits.max_channel_series]
        if names:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self.channel_key + name)
            for name, raw in zip(names, await pipe.execute(), strict=True):
                minutes = await self._buckets(self.channel_key + name, raw, minute_now - limits.channel_minutes + 1)
                channel_series[name] = minutes
                self._persisted_channel[name] = set(minutes)

        runners = []
        for value in raw_runners.values():
            try:
                runners.append(_runner_decoder.decode(value))
            except msgspec.DecodeError:
                self.corrupt += 1
        failures = []
        for value in raw_failures:
            try:
                failures.append(_failure_decoder.decode(value))
            except msgspec.DecodeError:
                self.corrupt += 1
        try:
            counted_until = float(raw_counted) if raw_counted is not None else float("-inf")
        except ValueError:
            counted_until = float("-inf")
        synthetic_until = _time(raw_synthetic)
        if raw_synthetic is not None and synthetic_until is None:
            self.corrupt += 1
        stats = await self._load_stats(raw_stats, minute_now, limits)
        groups = []
        for value in raw_groups.values():
            try:
                groups.append(_group_decoder.decode(value))
            except msgspec.DecodeError:
                self.corrupt += 1
        if self.corrupt:
            log.warning("store: skipped %d entries that did not decode", self.corrupt)
        return Restored(
            series=series,
            runners=tuple(runners),
            failures=tuple(failures),
            counted_until=counted_until,
            hours=hours,
            channel_series=channel_series,
            synthetic_until=synthetic_until,
            stats=tuple(stats),
            now=now,
            groups=tuple(groups),
            related=self._related(raw_related),
        )

    def _related(self, raw: dict[bytes, bytes]) -> dict[str, tuple[str, ...]]:
        out = {}
        for key, value in raw.items():
            try:
                names = _related_decoder.decode(value)
            except msgspec.DecodeError:
                self.corrupt += 1
                continue
            out[key.decode(errors="replace")] = tuple(names)
        return out

    async def mutes(self) -> tuple[GroupMute, ...]:
        """The failure groups muted now (expired mutes are left for `unmute` or the next `mute` to clear)."""
        raw = await self.client.hgetall(self.mutes_key)
        out = []
        for value in raw.values():
            try:
                out.append(_mute_decoder.decode(value))
            except msgspec.DecodeError:
                self.corrupt += 1
        return tuple(sorted(out, key=lambda m: m.group))

    async def mute(self, mute: GroupMute, now: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.mutes_key, mute.group, _encoder.encode(mute))
        for group, value in (await self.client.hgetall(self.mutes_key)).items():
            if (group.decode(errors="replace") if isinstance(group, bytes) else group) == mute.group:
                continue
            try:
                if _mute_decoder.decode(value).until <= now:
                    pipe.hdel(self.mutes_key, group)
            except msgspec.DecodeError:
                pipe.hdel(self.mutes_key, group)
        await pipe.execute()

    async def unmute(self, group: str) -> bool:
        return bool(await self.client.hdel(self.mutes_key, group))

    def stat_key(self, res: str, kind: str, name: str) -> str:
        return f"{self.stats_key}:{res}:{kind}:{name}"

    async def _load_stats(self, members: set[bytes], minute_now: int, limits: Limits) -> list[StatCell]:
        """The stats' cells the fold's memory keeps: every hour within fn_days and the minutes within fn_minutes."""
        names: list[tuple[str, str]] = []
        for raw in sorted(members):
            kind, _, name = raw.decode(errors="replace").partition(":")
            if kind in (functions.FN, functions.CHANNEL) and name and len(name) <= 300:
                names.append((kind, name))
            else:
                self.corrupt += 1
        self._stat_names.update(names)
        left = {functions.FN: limits.max_functions, functions.CHANNEL: limits.max_channel_series}
        kept = []
        for kind, name in names:
            if left[kind] > 0:  # the caps of the fold: more would be skipped by its restore anyway
                left[kind] -= 1
                kept.append((kind, name))
        names = kept
        if not names:
            return []
        minutes = max(limits.fn_minutes, limits.fn_window)
        fields = [str(m) for m in range(minute_now - minutes + 1, minute_now + 1)]
        oldest_hour = minute_now // 60 - 24 * (limits.fn_days + 1)
        pipe = self.client.pipeline(transaction=False)
        for kind, name in names:
            pipe.hmget(self.stat_key("m", kind, name), fields)
            pipe.hgetall(self.stat_key("h", kind, name))
        replies = await pipe.execute()
        out: list[StatCell] = []
        for k, (kind, name) in enumerate(names):
            for field, raw in zip(fields, replies[2 * k], strict=True):
                if raw is not None:
                    self._cell(out, kind, name, "m", field.encode(), raw)
            for field, raw in replies[2 * k + 1].items():
                try:
                    if int(field) < oldest_hour:
                        continue
                except ValueError:
                    self.corrupt += 1
                    continue
                self._cell(out, kind, name, "h", field, raw)
        return out

    def _cell(self, out: list[StatCell], kind: str, name: str, res: str, field: bytes | str, raw: bytes | str) -> None:
        """Decode and check one stored cell (every number bounded, the sketches well formed) into `out`."""
        try:
            stored = _cell_decoder.decode(raw)
            slot = int(field)
            if not 0 <= slot <= MAX_COUNT:
                raise ValueError("slot out of range")
            rt, wt = sketch.unflat(stored.rt), sketch.unflat(stored.wt)
        except (ValueError, msgspec.DecodeError):
            self.corrupt += 1
            return
        out.append(StatCell(kind, name, res, slot, stored.completed, stored.failed, stored.retried,  # type: ignore[arg-type]
                            stored.rt_max, stored.wt_max, rt, wt))  # fmt: skip

    async def read_stat(self, res: str, kind: str, name: str, first: int, last: int) -> list[StatCell]:
        """One stat's stored cells of slots first..last (for /api/functions: the whole retention, from Redis)."""
        raw = await self.client.hgetall(self.stat_key(res, kind, name))
        out: list[StatCell] = []
        for field, value in raw.items():
            try:
                slot = int(field)
            except ValueError:
                continue
            if first <= slot <= last:
                self._cell(out, kind, name, res, field, value)
        out.sort(key=lambda c: c.slot)
        return out

    def _save_stats(self, state: State, pipe: aredis.client.Pipeline) -> int:
        """Queue the writes of the stats whose numbers moved since the last save; return the fields written."""
        written = 0
        for stats in (state.fn_stats, state.channel_stats):
            for stat in stats.values():
                key = (stat.kind, stat.name)
                if self._stat_versions.get(key) == stat.version:
                    continue
                if key not in self._stat_names:
                    pipe.sadd(self.stats_key, f"{stat.kind}:{stat.name}")
                    self._stat_names.add(key)
                self._stat_versions[key] = stat.version
                by_res: dict[str, dict[str, bytes]] = {}
                for res, slot, cell in functions.stored_cells(stat):
                    by_res.setdefault(res, {})[str(slot)] = _encode_cell(cell)
                for res, mapping in by_res.items():
                    pipe.hset(self.stat_key(res, stat.kind, stat.name), mapping=mapping)  # type: ignore[arg-type]
                    written += len(mapping)
                related = _encoder.encode(list(stat.related))
                pipe.hset(self.related_key, f"{stat.kind}:{stat.name}", related)
        if state.now - self._swept >= SWEEP_EVERY:
            self._swept = state.now
            minute = state.minute
            for kind, name in self._stat_names:
                pipe.eval(_SWEEP, 1, self.stat_key("m", kind, name), minute - self.stats_minutes + 1)
                pipe.eval(_SWEEP, 1, self.stat_key("h", kind, name), minute // 60 - self.stats_hours + 1)
        return written

    async def _buckets(self, key: str, raw: dict[bytes, bytes], oldest: int) -> dict[int, tuple[int, ...]]:
        """Decode a hash of numbered buckets; drop (from Redis too) the ones older than `oldest`."""
        out: dict[int, tuple[int, ...]] = {}
        expired: list[bytes] = []
        for field, value in raw.items():
            try:
                number = int(field)
                bucket = _bucket_decoder.decode(value)
            except (ValueError, msgspec.DecodeError):
                self.corrupt += 1
                continue
            if number < oldest:
                expired.append(field)
            elif len(bucket) <= BUCKET_WIDTH:
                out[number] = tuple(bucket)
            else:
                self.corrupt += 1
        if expired:
            await self.client.hdel(key, *expired)
        return out

    async def save(self, state: State) -> int:
        """Write what changed since the last save; return the number of fields written."""
        pipe = self.client.pipeline(transaction=False)
        written = 0

        minutes, state.dirty_minutes = state.dirty_minutes, set()
        if minutes:
            mapping = {str(m): _encoder.encode(state.series[m]) for m in minutes if m in state.series}
            if mapping:
                pipe.hset(self.series_key, mapping=mapping)  # type: ignore[arg-type]
                written += len(mapping)
            self._persisted.update(int(m) for m in mapping)
        oldest = state.minute - state.limits.series_minutes + 1
        expired = [m for m in self._persisted if m < oldest]
        if expired:
            pipe.hdel(self.series_key, *(str(m) for m in expired))
            self._persisted.difference_update(expired)

        runner_ids, state.dirty_runners = state.dirty_runners, set()
        if runner_ids:
            present = {}
            gone = []
            for runner_id in runner_ids:
                runner = state.runners.get(runner_id)
                if runner is None:
                    gone.append(runner_id)
                else:
                    present[runner_id] = _encoder.encode(runner_record(runner))
            if present:
                pipe.hset(self.runners_key, mapping=present)  # type: ignore[arg-type]
                written += len(present)
            if gone:
                pipe.hdel(self.runners_key, *gone)

        hours, state.dirty_hours = state.dirty_hours, set()
        if hours:
            mapping = {str(h): _encoder.encode(state.hours[h]) for h in hours if h in state.hours}
            if mapping:
                pipe.hset(self.hours_key, mapping=mapping)  # type: ignore[arg-type]
                written += len(mapping)
                self._persisted_hours.update(int(h) for h in mapping)
        oldest_hour = state.minute // 60 - state.limits.hours_retention + 1
        expired_hours = [h for h in self._persisted_hours if h < oldest_hour]
        if expired_hours:
            pipe.hdel(self.hours_key, *(str(h) for h in expired_hours))
            self._persisted_hours.difference_update(expired_hours)

        channel_minutes, state.dirty_channel_minutes = state.dirty_channel_minutes, set()
        by_channel: dict[str, dict[str, bytes]] = {}
        for channel, minute in channel_minutes:
            ring = state.channel_series.get(channel)
            values = ring.get(minute) if ring is not None else None
            if values is not None:
                by_channel.setdefault(channel, {})[str(minute)] = _encoder.encode(values)
        oldest_channel_minute = state.minute - state.limits.channel_minutes + 1
        trimmed = False
        for channel, mapping in by_channel.items():
            persisted = self._persisted_channel.setdefault(channel, set())
            if not persisted:
                pipe.sadd(self.channels_key, channel)
            pipe.hset(self.channel_key + channel, mapping=mapping)  # type: ignore[arg-type]
            written += len(mapping)
            persisted.update(int(m) for m in mapping)
        for channel, persisted in self._persisted_channel.items():
            old = [m for m in persisted if m < oldest_channel_minute]
            if old:
                pipe.hdel(self.channel_key + channel, *(str(m) for m in old))
                persisted.difference_update(old)
                trimmed = True

        stats_written = self._save_stats(state, pipe)
        written += stats_written
        group_ids, state.dirty_groups = state.dirty_groups, set()
        if group_ids:
            present = {g: _encoder.encode(_group_record(state.groups[g])) for g in group_ids if g in state.groups}
            gone = [g for g in group_ids if g not in state.groups]
            if present:
                pipe.hset(self.groups_key, mapping=present)  # type: ignore[arg-type]
                written += len(present)
            if gone:
                pipe.hdel(self.groups_key, *gone)

        added, state.failures_added = min(state.failures_added, len(state.failures)), 0
        if added:
            newest_first = [state.failures[i] for i in range(added)]
            records = [
                _encoder.encode(
                    FailureRecord(f.event, f.job, f.fn, f.channel, f.error, f.at, f.runner, f.attempt, f.traceback)
                )
                for f in reversed(newest_first)
            ]
            pipe.lpush(self.failures_key, *records)
            pipe.ltrim(self.failures_key, 0, self.failures_cap - 1)
            written += added

        if written:
            pipe.hset(self.meta_key, "counted_until", repr(state.now))
        if not (written or expired or expired_hours or trimmed):
            return 0
        try:
            await pipe.execute()
        except BaseException:
            # Not written: keep it dirty so the next save tries again.
            state.dirty_minutes |= minutes
            state.dirty_runners |= runner_ids
            state.dirty_hours |= hours
            state.dirty_channel_minutes |= channel_minutes
            state.failures_added = max(state.failures_added, added)
            state.dirty_groups |= group_ids
            self._persisted.update(expired)
            self._stat_versions = {key: -1 for key in self._stat_versions}  # write every stat again
            raise
        return written


def _group_record(g: Group) -> GroupRecord:
    return GroupRecord(
        g.id, g.type, g.message, g.frame, g.example, g.count, g.first, g.last, dict(g.functions), dict(g.channels),
        {str(m): n for m, n in g.minutes.items()}, [tuple(s) for s in g.samples],  # type: ignore[misc]
    )  # fmt: skip


def _encode_cell(cell: Cell) -> bytes:
    completed, failed, retried = cell.counts
    return _encoder.encode(
        [completed, failed, retried, cell.rt_max, cell.wt_max, sketch.flat(cell.rt), sketch.flat(cell.wt)]
    )


def _time(raw: bytes | None) -> float | None:
    """A time jobpulse wrote into its meta hash, or None when absent or not a sane epoch second."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value < MAX_TIME else None
