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

from server.streams.events import FailureRecord, Restored, RunnerRecord
from server.streams.reducer import runner_record
from server.streams.state import BUCKET_WIDTH, State

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
        self.series_minutes = series_minutes
        self.failures_cap = failures_cap
        self._persisted: set[int] = set()  # minutes known to be in the series hash
        self.corrupt = 0  # entries that failed to decode on load (skipped, counted)

    async def load(self, now: float) -> Restored:
        """Read the durable state back; entries that do not decode are skipped and counted."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.series_key)
        pipe.hgetall(self.runners_key)
        pipe.lrange(self.failures_key, 0, self.failures_cap - 1)
        pipe.hget(self.meta_key, "counted_until")
        raw_series, raw_runners, raw_failures, raw_counted = await pipe.execute()

        oldest = int(now // 60) - self.series_minutes + 1
        series: dict[int, tuple[int, ...]] = {}
        expired: list[bytes] = []
        for field, value in raw_series.items():
            try:
                minute = int(field)
                bucket = _bucket_decoder.decode(value)
            except (ValueError, msgspec.DecodeError):
                self.corrupt += 1
                continue
            if minute < oldest:
                expired.append(field)
            elif len(bucket) == BUCKET_WIDTH:
                series[minute] = tuple(bucket)
            else:
                self.corrupt += 1
        if expired:
            await self.client.hdel(self.series_key, *expired)
        self._persisted = set(series)

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
        if self.corrupt:
            log.warning("store: skipped %d entries that did not decode", self.corrupt)
        return Restored(series=series, runners=tuple(runners), failures=tuple(failures), counted_until=counted_until)

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
        if not (written or expired):
            return 0
        try:
            await pipe.execute()
        except BaseException:
            # Not written: keep it dirty so the next save tries again.
            state.dirty_minutes |= minutes
            state.dirty_runners |= runner_ids
            state.failures_added = max(state.failures_added, added)
            self._persisted.update(expired)
            raise
        return written
