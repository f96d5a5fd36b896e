"""The Redis-backed job queue: jobs really live in Redis, and every transition is one atomic Lua script.

Per channel: a LIST of waiting ids (LPUSH in, RPOP out: oldest first), an in-flight
ZSET scored by start time and a scheduled ZSET scored by `run_at`; per job a HASH
that expires after it finishes. Taking a job from a runner is fenced on (status,
runner, attempt). Scripts build job keys from a prefix: one Redis, not a cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from server.simulator.keys import Keys

FINISHED_TTL = 3600
"""Seconds a finished job's hash is kept (for `retry` and lookups) before Redis drops it."""

TERMINAL = frozenset({"completed", "failed", "canceled", "expired"})


class Script:
    """A Lua script run by EVALSHA, loaded again when Redis forgot it (a restart, SCRIPT FLUSH)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: aredis.Redis, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[str | int | float]) -> None:
        """Add the script to a pipeline (by source: a pipeline cannot fall back on NOSCRIPT)."""
        pipe.eval(self.source, len(keys), *keys, *args)


# KEYS: job, queue, scheduled. ARGV: id, run_at ('' to queue now), field/value pairs.
# Creating is idempotent, so a batch sent twice after a lost reply adds nothing twice.
_ENQUEUE = Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
else
  redis.call('LPUSH', KEYS[2], ARGV[1])
end
return 1
""")

# KEYS: paused set, then (queue, inflight) per channel. ARGV: job key prefix, runner, now, max jobs, channels.
_CLAIM = Script("""
local want = tonumber(ARGV[4])
local out = {}
local n = (#KEYS - 1) / 2
for i = 1, n do
  if #out >= want then break end
  if redis.call('SISMEMBER', KEYS[1], ARGV[4 + i]) == 0 then
    while #out < want do
      local id = redis.call('RPOP', KEYS[2 * i])
      if not id then break end
      local jk = ARGV[1] .. id
      -- At-least-once delivery: an id whose job is no longer queued (canceled, a duplicate) is dropped.
      if redis.call('HGET', jk, 'status') == 'queued' then
        redis.call('HSET', jk, 'status', 'running', 'runner', ARGV[2], 'started_at', ARGV[3])
        redis.call('ZADD', KEYS[2 * i + 1], ARGV[3], id)
        out[#out + 1] = redis.call('HGETALL', jk)
      end
    end
  end
end
return out
""")

# KEYS: job, inflight, queue, scheduled. ARGV: id, runner, attempt, mode, run_at, ttl, field/value pairs.
# mode: 'done' (terminal, expires), 'queue' (waiting now), 'schedule' (waiting for run_at).
_SETTLE = Script("""
local cur = redis.call('HMGET', KEYS[1], 'status', 'runner', 'attempt')
if cur[1] ~= 'running' or cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
if ARGV[4] == 'done' then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
elseif ARGV[4] == 'queue' then
  redis.call('LPUSH', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
end
return 1
""")

# KEYS: (scheduled, queue) per channel. ARGV: job key prefix, now, limit per channel.
_DUE = Script("""
local out = {}
for i = 1, #KEYS / 2 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2 * i - 1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[2 * i - 1], id)
    local jk = ARGV[1] .. id
    if redis.call('HGET', jk, 'status') == 'scheduled' then
      redis.call('HSET', jk, 'status', 'queued', 'queued_at', ARGV[2])
      redis.call('LPUSH', KEYS[2 * i], id)
      out[#out + 1] = redis.call('HGETALL', jk)
    end
  end
end
return out
""")

# KEYS: paused set, then (queue, inflight, scheduled) per channel. ARGV: job key prefix, channels.
_DEPTH = Script("""
local out = {}
for i = 1, (#KEYS - 1) / 3 do
  local q = KEYS[3 * i - 1]
  local oldest = ''
  local tail = redis.call('LINDEX', q, -1)
  if tail then oldest = redis.call('HGET', ARGV[1] .. tail, 'queued_at') or '' end
  out[i] = {redis.call('LLEN', q), redis.call('ZCARD', KEYS[3 * i]), redis.call('ZCARD', KEYS[3 * i + 1]),
            oldest, redis.call('SISMEMBER', KEYS[1], ARGV[1 + i])}
end
return out
""")

# KEYS: queue. ARGV: job key prefix, now, ttl.
_PURGE = Script("""
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  local jk = ARGV[1] .. id
  if redis.call('HGET', jk, 'status') == 'queued' then
    redis.call('HSET', jk, 'status', 'canceled', 'reason', 'purged', 'finished_at', ARGV[2])
    redis.call('EXPIRE', jk, ARGV[3])
    out[#out + 1] = redis.call('HGETALL', jk)
  end
end
return out
""")

# KEYS: job, queue, scheduled. ARGV: id, now, ttl. Returns {previous status, job} ({} when unknown).
_CANCEL = Script("""
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {} end
if st == 'queued' then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
elseif st == 'scheduled' then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  return {st, redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'status', 'canceled', 'reason', 'operator', 'finished_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {st, redis.call('HGETALL', KEYS[1])}
""")

# KEYS: job, queue. ARGV: id, now. Returns {previous status, job} ({} when unknown).
_RETRY = Script("""
local cur = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'max_attempts')
if not cur[1] then return {} end
if cur[1] ~= 'failed' and cur[1] ~= 'canceled' and cur[1] ~= 'expired' then
  return {cur[1], redis.call('HGETALL', KEYS[1])}
end
local attempt = tonumber(cur[2]) + 1
local max_attempts = math.max(tonumber(cur[3]), attempt)
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempt', attempt, 'max_attempts', max_attempts,
           'queued_at', ARGV[2], 'runner', '', 'started_at', '', 'finished_at', '', 'error', '', 'reason', '')
redis.call('PERSIST', KEYS[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
return {cur[1], redis.call('HGETALL', KEYS[1])}
""")

# KEYS: job, queue, scheduled. ARGV: id, now. Returns {previous status, job} ({} when unknown); only a scheduled
# job moves: it is queued now, as if its run_at had come.
_RUN_NOW = Script("""
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {} end
if st ~= 'scheduled' then return {st, redis.call('HGETALL', KEYS[1])} end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'queued_at', ARGV[2], 'run_at', '')
redis.call('LPUSH', KEYS[2], ARGV[1])
return {st, redis.call('HGETALL', KEYS[1])}
""")


def _float(value: str | None) -> float | None:
    return float(value) if value else None


@dataclass
class Job:
    """One job as its Redis hash holds it. `attempt` is the attempt that runs (or is about to)."""

    id: str
    channel: str
    fn: str
    payload: Any
    cid: str | None
    attempt: int
    max_attempts: int
    status: str
    key: str
    """What seeds its outcomes: the producer's sequence number, or the job id for jobs sent by command."""
    queued_at: float | None = None
    run_at: float | None = None
    started_at: float | None = None
    runner: str | None = None

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> Job:
        """Rebuild a job from HGETALL (a mapping, or the flat list a script returns)."""
        raw = data.get("payload")
        return cls(
            id=data["id"],
            channel=data["channel"],
            fn=data["fn"],
            payload=msgspec.json.decode(raw) if raw else None,
            cid=data.get("cid") or None,
            attempt=int(data.get("attempt") or 1),
            max_attempts=int(data.get("max_attempts") or 1),
            status=data.get("status", ""),
            key=data.get("key") or data["id"],
            queued_at=_float(data.get("queued_at")),
            run_at=_float(data.get("run_at")),
            started_at=_float(data.get("started_at")),
            runner=data.get("runner") or None,
        )

    def to_hash(self) -> dict[str, str]:
        """The hash fields a new job is created with."""
        return {
            "id": self.id,
            "channel": self.channel,
            "fn": self.fn,
            "payload": msgspec.json.encode(self.payload).decode(),
            "cid": self.cid or "",
            "attempt": str(self.attempt),
            "max_attempts": str(self.max_attempts),
            "status": self.status,
            "key": self.key,
            "queued_at": repr(self.queued_at) if self.queued_at is not None else "",
            "run_at": repr(self.run_at) if self.run_at is not None else "",
        }

    def event(self, event: str, **extra: Any) -> dict[str, Any]:
        """The `job` event fields of the protocol for this job (without the envelope)."""
        fields: dict[str, Any] = {
            "event": event,
            "job": self.id,
            "cid": self.cid,
            "channel": self.channel,
            "fn": self.fn,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "queued_at": self.queued_at,
        }
        fields.update(extra)
        return fields


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _jobs(rows: Sequence[Sequence[str]]) -> list[Job]:
    return [Job.from_hash(_pairs(row)) for row in rows]


def _flat(fields: Mapping[str, str | int | float | None]) -> list[str]:
    out: list[str] = []
    for name, value in fields.items():
        out.append(name)
        out.append("" if value is None else repr(value) if isinstance(value, float) else str(value))
    return out


@dataclass(frozen=True)
class Depth:
    """One channel's depth, as the protocol's `depth` message carries it."""

    queued: int
    inflight: int
    scheduled: int
    oldest: float | None
    paused: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "inflight": self.inflight,
            "scheduled": self.scheduled,
            "oldest": self.oldest,
            "paused": self.paused,
        }


class JobQueue:
    """Atomic job operations on one Redis, under one prefix. Redis errors propagate to the caller."""

    def __init__(self, client: aredis.Redis, keys: Keys) -> None:
        self._client = client
        self.keys = keys

    def enqueue(self, pipe: Pipeline, job: Job) -> None:
        """Add creating `job` (queued, or scheduled when it has `run_at`) to a pipeline."""
        k = self.keys
        run_at = repr(job.run_at) if job.status == "scheduled" and job.run_at is not None else ""
        args = [job.id, run_at, *_flat(job.to_hash())]
        _ENQUEUE.queue(pipe, [k.job(job.id), k.queue(job.channel), k.scheduled(job.channel)], args)

    async def claim(self, runner: str, channels: Sequence[str], count: int, now: float) -> list[Job]:
        """Take up to `count` queued jobs for `runner`, trying `channels` in order and skipping paused ones."""
        k = self.keys
        keys = [k.paused]
        for ch in channels:
            keys += [k.queue(ch), k.inflight(ch)]
        args: list[str | int | float] = [k.job_prefix, runner, repr(now), count, *channels]
        rows = await _CLAIM(self._client, keys, args)
        return _jobs(rows)

    async def settle(
        self,
        job: Job,
        runner: str,
        mode: str,
        fields: Mapping[str, str | int | float | None],
        run_at: float = 0.0,
    ) -> bool:
        """Move a running attempt on: `done`, `queue` or `schedule`. False when `runner` no longer holds it."""
        k = self.keys
        keys = [k.job(job.id), k.inflight(job.channel), k.queue(job.channel), k.scheduled(job.channel)]
        args: list[str | int | float] = [job.id, runner, str(job.attempt), mode, repr(run_at), FINISHED_TTL]
        args += _flat(fields)
        return bool(await _SETTLE(self._client, keys, args))

    async def due(self, channels: Sequence[str], now: float, limit: int = 500) -> list[Job]:
        """Move scheduled jobs whose `run_at` has come to their queue; return them."""
        k = self.keys
        keys: list[str] = []
        for ch in channels:
            keys += [k.scheduled(ch), k.queue(ch)]
        return _jobs(await _DUE(self._client, keys, [k.job_prefix, repr(now), limit]))

    async def depth(self, channels: Sequence[str]) -> dict[str, Depth]:
        """The depth of every channel in `channels`, read atomically."""
        k = self.keys
        keys = [k.paused]
        for ch in channels:
            keys += [k.queue(ch), k.inflight(ch), k.scheduled(ch)]
        rows = await _DEPTH(self._client, keys, [k.job_prefix, *channels])
        out: dict[str, Depth] = {}
        for ch, (queued, inflight, scheduled, oldest, paused) in zip(channels, rows, strict=True):
            out[ch] = Depth(int(queued), int(inflight), int(scheduled), _float(oldest), bool(paused))
        return out

    async def purge(self, channel: str, now: float) -> list[Job]:
        """Delete the channel's queue; every job that was waiting in it is now canceled (reason `purged`)."""
        k = self.keys
        return _jobs(await _PURGE(self._client, [k.queue(channel)], [k.job_prefix, repr(now), FINISHED_TTL]))

    async def get(self, job_id: str) -> Job | None:
        """The job, or None when it is unknown (never existed, or expired after finishing)."""
        data: dict[str, str] = await self._client.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        return Job.from_hash(data) if data else None

    async def get_many(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Several jobs in one round trip."""
        if not job_ids:
            return []
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        rows = await pipe.execute()
        return [Job.from_hash(row) if row else None for row in rows]

    async def cancel(self, job_id: str, channel: str, now: float) -> tuple[str, Job] | None:
        """Cancel a queued or scheduled job. Returns (previous status, job), or None for an unknown job.

        A running or finished job is left alone: its status is returned for the caller to decide.
        """
        k = self.keys
        keys = [k.job(job_id), k.queue(channel), k.scheduled(channel)]
        result = await _CANCEL(self._client, keys, [job_id, repr(now), FINISHED_TTL])
        if not result:
            return None
        return result[0], Job.from_hash(_pairs(result[1]))

    async def run_now(self, job_id: str, channel: str, now: float) -> tuple[str, Job] | None:
        """Queue a scheduled job now instead of at its run_at. Returns (previous status, job); the job is unchanged
        when it was not scheduled. None when unknown."""
        k = self.keys
        result = await _RUN_NOW(self._client, [k.job(job_id), k.queue(channel), k.scheduled(channel)],
                                [job_id, repr(now)])  # fmt: skip
        if not result:
            return None
        return result[0], Job.from_hash(_pairs(result[1]))

    async def retry(self, job_id: str, channel: str, now: float) -> tuple[str, Job] | None:
        """Queue a failed, canceled or expired job again as its next attempt.

        Returns (previous status, job); the job is unchanged when it was in another state. None when unknown.
        """
        k = self.keys
        result = await _RETRY(self._client, [k.job(job_id), k.queue(channel)], [job_id, repr(now)])
        if not result:
            return None
        return result[0], Job.from_hash(_pairs(result[1]))

    async def inflight(self, channel: str) -> list[tuple[str, float]]:
        """Every in-flight job id of the channel, with when its attempt started."""
        rows: list[tuple[str, float]] = await self._client.zrange(  # type: ignore[assignment]
            self.keys.inflight(channel), 0, -1, withscores=True
        )
        return [(member, float(score)) for member, score in rows]
