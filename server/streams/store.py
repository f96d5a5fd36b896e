"""jobpulse's own durable state in Redis: series, runners, recent failures (docs/protocol.md 1.7).

Shell layer. `load()` reads it back into a `Restored` event at start;
`save(state)` writes what changed since the last save, in one pipeline. Values
are absolute (not increments), so several jobpulse processes folding the same
source can share one store, and a repeated save is harmless.
"""

from __future__ import annotations

import logging

import msgspec
import redis.asyncio as aredis

from server.streams.core.events import MAX_TIME, FailureRecord, Restored, RunnerRecord
from server.streams.core.runners import runner_record
from server.streams.core.series import BUCKET_WIDTH
from server.streams.core.state import Limits, State

log = logging.getLogger("jobpulse.store")

_runner_decoder = msgspec.json.Decoder(RunnerRecord)
_failure_decoder = msgspec.json.Decoder(FailureRecord)
_bucket_decoder = msgspec.json.Decoder(list[int])
_encoder = msgspec.json.Encoder()


class Store:
    """Reads and writes `P:jp:*` keys."""

    def __init__(self, client: aredis.Redis, prefix: str, series_minutes: int, failures_cap: int) -> None:
        self.client = client
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
        (
            raw_series,
            raw_runners,
            raw_failures,
            raw_counted,
            raw_hours,
            raw_channels,
            raw_synthetic,
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
        )

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
            self._persisted.update(expired)
            raise
        return written


def _time(raw: bytes | None) -> float | None:
    """A time jobpulse wrote into its meta hash, or None when absent or not a sane epoch second."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value < MAX_TIME else None
