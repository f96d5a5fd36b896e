"""Operator actions on a django-mojo 1.39.10 deployment: its control channels, its Redis keys and its Postgres rows.

Shell layer. docs/mojo.md section 8 ("Actions") is the table this module implements: ping and shutdown/drain go
to an engine's control channel; run, batch, retry, cancel and purge write `jobs_job`/`jobs_jobevent` the way
django-mojo's own code does (`mojo/apps/jobs/__init__.py` publish, `services/job_actions.py`), with a
write-capable Postgres URL (psycopg 3, the `jobpulse[mojo]` extra), then touch Redis after the commit as
django-mojo does; clear-stuck hands abandoned in-flight entries to django-mojo's own reaper. What django-mojo
cannot do at all is listed in `UNSUPPORTED` with the reason (docs/mojo.md section 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis.asyncio as aredis

from server import actions
from server.actions import Args, Performed
from server.routing import Known
from server.streams.connector import CommandError
from server.streams.sources.mojo.keys import MojoKeys

if TYPE_CHECKING:
    from psycopg import AsyncConnection, AsyncCursor

log = logging.getLogger("jobpulse.mojo")

UNSUPPORTED = {
    "runner.undrain": "django-mojo cannot take back a shutdown request: a draining engine finishes its running jobs "
    "and exits",
    "runner.restart": "django-mojo has no restart: engines are plain processes that the deployment's supervisor "
    "(cron jobman, systemd) starts again",
    "runner.logs": "django-mojo engines log to files on their own hosts; no control command returns them",
    "broadcast": "django-mojo engines act only on ping, status, shutdown and execute (arbitrary code, not offered); "
    "any other message or a config change is logged and dropped",
    "channel.pause": "django-mojo's pause flag holds back only the scheduler's delayed jobs; engines keep taking the "
    "channel's queued jobs",
    "channel.resume": "django-mojo's pause flag holds back only the scheduler's delayed jobs, so there is no real "
    "pause to resume",
    "task.rate_limit": "django-mojo has no per-function rate limit (JOBS_CHANNEL_LIMITS is a static per-engine "
    "setting)",
}
# django-mojo does these by writing jobs_job/jobs_jobevent in its own code: they need a write-capable Postgres URL.
WRITE_ACTIONS = frozenset({"job.run", "job.batch", "job.retry", "job.run_now", "job.cancel", "channel.purge"})
NO_WRITE_URL = (
    "needs JOBPULSE_MOJO_WRITE_DATABASE_URL (a Postgres role that may write jobs_job and jobs_jobevent): "
    "django-mojo does this by writing its job rows"
)

# django-mojo's rules and defaults (settings it does not publish anywhere jobpulse can read; these are its defaults).
CHANNEL_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")  # __init__.py:104: no ':' (the engine splits the queue key on it)
PAYLOAD_MAX_BYTES = 16_384  # JOBS_PAYLOAD_MAX_BYTES, __init__.py:73
EXPIRES_S = 900  # JOBS_DEFAULT_EXPIRES_SEC, __init__.py:74
MAX_RETRIES = 0  # JOBS_DEFAULT_MAX_RETRIES, __init__.py:75: max_retries counts every attempt, so 0 means one
BACKOFF_BASE = 2.0  # JOBS_DEFAULT_BACKOFF_BASE
BACKOFF_MAX_S = 3600  # JOBS_DEFAULT_BACKOFF_MAX
TERMINAL = ("completed", "failed", "canceled", "expired")
RETRYABLE = ("failed", "canceled", "expired")  # services/job_actions.py:150
UNCONFIRMED = "Redis publish not confirmed"  # __init__.py:460, what django-mojo marks an unconfirmed mirror with
REAPER_PASS_S = 5  # job_engine.py:1386: each engine's reaper looks at its channels every 5 s
DB_IDLE_CHECK_S = 5.0  # an idle write connection is checked before use (a restarted server drops it silently)
SAMPLE = 100  # ids listed in a result
APPLICATION_NAME = "jobpulse-mojo-actions"

# django-mojo's metrics account `global` (apps/metrics/redis_metrics.py:78-102, utils.py:18-25,82-122,165-184):
# one counter per granularity, hours to years, and the index sets its own readers walk.
METRIC_BUCKETS = (("hr", "%Y-%m-%dT%H", 3), ("day", "%Y-%m-%d", 360), ("wk", "%Y-%U", 360), ("mon", "%Y-%m", None),
                  ("yr", "%Y", None))  # fmt: skip
METRIC_ACCOUNTS = "mets:_accounts_"
METRIC_SLUGS = "mets:global:slugs"
METRIC_CATEGORIES = "mets:global:cats"
METRIC_CATEGORY = "jobs"

JOB_COLUMNS = """id, channel, func, payload, status, run_at, expires_at, attempt, max_retries, backoff_base,
    backoff_max_sec, broadcast, cancel_requested, max_exec_seconds, runner_id, last_error, stack_trace, metadata,
    created, modified, started_at, finished_at, idempotency_key"""
EVENT_COLUMNS = "job_id, channel, event, at, runner_id, attempt, details, created, modified"
# No column of django-mojo's tables has a database default (Django fills them): every insert names them all.
INSERT_JOB = f"""INSERT INTO jobs_job ({JOB_COLUMNS}) VALUES (%s, %s, %s, %s::jsonb, 'pending', %s, %s, 0, %s, %s, %s,
    %s, false, %s, NULL, '', '', %s::jsonb, %s, %s, NULL, NULL, NULL)"""
INSERT_EVENT = f"INSERT INTO jobs_jobevent ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)"


@dataclass(frozen=True)
class _NewJob:
    """One job row to publish, as `mojo.apps.jobs.publish` builds it (__init__.py:880-909)."""

    func: str
    channel: str
    payload: dict[str, Any]
    run_at: datetime | None
    expires_at: datetime
    max_retries: int = MAX_RETRIES
    backoff_base: float = BACKOFF_BASE
    backoff_max: int = BACKOFF_MAX_S
    max_exec_seconds: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class MojoActions:
    """Does operator actions on one django-mojo deployment.

    Args:
        keys: the deployment's key and channel names.
        redis: a client on django-mojo's Redis (bytes replies).
        write_url: a postgresql:// URL whose role may write jobs_job and jobs_jobevent ("" = none).
        state: jobpulse's folded state, only to know which runners are live ("*").
        feed: hands jobpulse events (runner.removed) to the fold.
        wait_s: how long to wait for replies.
    """

    def __init__(
        self,
        keys: MojoKeys,
        redis: aredis.Redis,
        write_url: str,
        feed: Callable[[Any], None],
        wait_s: Callable[[], float],
    ) -> None:
        self.keys = keys
        self.redis = redis
        self.write_url = write_url
        self.feed = feed
        self.wait_s = wait_s
        self._conn: AsyncConnection[Any] | None = None
        self._used = 0.0  # monotonic time the write connection last answered
        # One connection, one transaction at a time: psycopg serializes statements, not transactions.
        self._db_lock = asyncio.Lock()
        self._seqs = itertools.count(1)  # of the runner.removed events jobpulse itself makes (src "jobpulse-mojo")

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()

    async def perform(self, action: str, args: Args, known: Known) -> Performed:
        try:
            return await self._perform(action, args, known)
        except (aredis.RedisError, OSError) as exc:
            raise CommandError(f"{action}: django-mojo's Redis failed: {type(exc).__name__}: {exc}") from None

    async def _perform(self, action: str, args: Args, known: Known) -> Performed:
        if action in UNSUPPORTED:
            raise CommandError(f"{action}: {UNSUPPORTED[action]}", "unavailable")
        if action in WRITE_ACTIONS and not self.write_url:
            raise CommandError(f"{action} {NO_WRITE_URL}", "unavailable")
        if isinstance(args, actions.RunnersArgs | actions.RestartArgs):
            runners = actions.addressed(known.live, args)
            if not runners:
                raise CommandError("no live django-mojo engine to address", "no_reply")
            if action == "runner.ping":
                return await self._ping(runners)
            if action in ("runner.shutdown", "runner.drain"):
                return await self._shutdown(runners, drain=action == "runner.drain")
        elif isinstance(args, actions.RunArgs):
            return await self._run(args)
        elif isinstance(args, actions.BatchArgs):
            return await self._batch(args, known)
        elif isinstance(args, actions.JobArgs):
            if action == "job.cancel":
                return await self._cancel(args.job)
            if action == "job.retry":
                return await self._retry(args.job)
            if action == "job.run_now":
                return await self._run_now(args.job)
        elif isinstance(args, actions.ChannelArgs) and action == "channel.purge":
            return await self._purge(args.channel)
        elif isinstance(args, actions.ClearStuckArgs):
            return await self._clear_stuck(args.channel, args.older_than, known)
        elif isinstance(args, actions.CleanupArgs):
            return self._cleanup(known)
        raise CommandError(f"{action}: not available on django-mojo")

    # -- engines: the control channel (job_engine.py:665-794) ------------------------------------------

    async def _ping(self, runners: list[str]) -> Performed:
        """`{"command":"ping","reply_channel":R}` on each engine's ctl channel; it answers the bare string "pong".

        The reply names no runner, so each engine gets a reply channel of its own (what JobManager.ping does,
        manager.py:1050-1099), subscribed before anything is sent.
        """
        replies = {self.keys.ping_reply(uuid.uuid4().hex): runner for runner in runners}
        wait = self.wait_s()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        answered: dict[str, float] = {}
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(*replies)
            await _confirmed(pubsub, len(replies), deadline, loop)
            sent: dict[str, float] = {}
            for reply, runner in replies.items():
                message = json.dumps({"command": "ping", "reply_channel": reply})
                if await self.redis.publish(self.keys.runner_control(runner), message):
                    sent[reply] = loop.time()
            while len(answered) < len(sent) and (left := deadline - loop.time()) > 0:
                got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if got is None or got.get("type") != "message" or _text(got.get("data")) != "pong":
                    continue
                reply = _text(got.get("channel"))
                if reply in sent and replies[reply] not in answered:
                    answered[replies[reply]] = loop.time() - sent[reply]
        missing = [r for r in runners if r not in answered]
        if not sent:
            raise CommandError(f"no engine listens on the control channel of {_who(runners)}: it is not running")
        if not answered:
            raise CommandError(f"{_who(runners)} did not answer a ping within {wait:g} s")
        listed = [{"src": r, "ok": True, "result": {"reply": "pong", "ms": round(answered[r] * 1000, 1)},
                   "error": None} for r in runners if r in answered]  # fmt: skip
        message = f"Pinged {_who(list(answered))}" + (f"; {len(missing)} did not answer" if missing else "")
        return Performed({"count": len(runners), "replies": listed, "missing": missing}, message, len(listed))

    async def _shutdown(self, runners: list[str], drain: bool) -> Performed:
        """`{"command":"shutdown"}` on each engine's ctl channel: it stops claiming, finishes its running jobs,
        removes its heartbeat and registry entries and exits 0 (job_engine.py:419-482,786-788).

        "*" too goes runner by runner to the ctl channels of the live ones: the broadcast channel ignores the key
        prefix (keys.py:182-191), so on a shared Redis it would reach other deployments' engines as well.
        """
        message = json.dumps({"command": "shutdown"})
        delivered, missing = [], []
        for runner in runners:
            # PUBLISH answers how many subscribers got it: 0 means no engine of that id listens.
            if await self.redis.publish(self.keys.runner_control(runner), message):
                delivered.append(runner)
            else:
                missing.append(runner)
        if not delivered:
            raise CommandError(f"no engine listens on the control channel of {_who(runners)}: it is not running")
        if drain:
            text = (f"Draining {_who(delivered)}: it takes no new job, finishes its running ones and exits. This is "
                    "one way: django-mojo cannot undrain, and only its supervisor starts it again")  # fmt: skip
        else:
            text = f"Shutting down {_who(delivered)}: it finishes its running jobs first, then exits"
        if missing:
            text += f"; {len(missing)} not listening ({', '.join(missing[:5])})"
        result = {"count": len(runners), "delivered": delivered, "replies": [], "missing": missing}
        return Performed(result, text, len(delivered))

    # -- publishing (the contract of docs/mojo.md section 6) ---------------------------------------------

    async def _run(self, args: actions.RunArgs) -> Performed:
        _check_channel(args.channel)
        _check_payload(args.payload)
        now = datetime.now(UTC)
        run_at = datetime.fromtimestamp(args.run_at, UTC) if args.run_at is not None else None
        job = _NewJob(
            func=args.fn, channel=args.channel, payload=args.payload, run_at=run_at,
            expires_at=_expires(now, run_at),
            max_retries=args.max_attempts if args.max_attempts is not None else MAX_RETRIES,
            # django-mojo has no correlation id: it rides in the row's metadata, which the engine keeps.
            metadata={"cid": args.cid} if args.cid else {},
        )  # fmt: skip
        async with self._transaction() as cur:
            await _insert_jobs(cur, [job], now)
        scheduled = await self._mirror([job])
        if scheduled:
            text = f"Scheduled {args.fn} on {args.channel} for {job.run_at:%Y-%m-%d %H:%M:%S} UTC ({job.id})"
        else:
            text = f"Published {args.fn} to {args.channel} ({job.id})"
        return Performed({"job": job.id, "channel": args.channel, "scheduled": bool(scheduled)}, text, 1)

    async def _batch(self, args: actions.BatchArgs, known: Known) -> Performed:
        # "*": every channel jobpulse knows that django-mojo could name.
        channels = [c for c in known.channels if CHANNEL_RE.match(c)] if args.channels == "*" else list(args.channels)
        if not channels:
            raise CommandError("no channel known yet to publish to")
        for channel in channels:
            _check_channel(channel)
        now = datetime.now(UTC)
        jobs = [_NewJob(func=args.fn, channel=c, payload={"n": i}, run_at=None, expires_at=_expires(now, None))
                for c in channels for i in range(args.count)]  # fmt: skip
        # One transaction for every row: the batch is published whole or not at all.
        async with self._transaction() as cur:
            await _insert_jobs(cur, jobs, now)
        await self._mirror(jobs)
        return Performed({"queued": len(jobs), "channels": channels, "jobs": [j.id for j in jobs][:SAMPLE]},
                         f"Published {len(jobs)} {args.fn} jobs to {_plural(len(channels), 'channel')}",
                         len(jobs))  # fmt: skip

    async def _mirror(self, jobs: list[_NewJob]) -> list[str]:
        """After the rows committed: make the ids claimable, then their queued/scheduled events and the publish
        metrics (_mirror_job_to_redis, __init__.py:567-652). Returns the ids that went to a sched zset.

        Raises CommandError when Redis did not confirm a write: those rows stay pending, marked as django-mojo
        marks them (last_error and a job log), since the write may have landed and the job may still run.
        """
        now = datetime.now(UTC)  # due or delayed is decided again after the commit, as django-mojo does
        queued: dict[str, list[_NewJob]] = {}
        delayed: dict[str, list[_NewJob]] = {}
        for job in jobs:
            target = delayed if job.run_at is not None and job.run_at > now else queued
            target.setdefault(job.channel, []).append(job)
        confirmed: list[tuple[_NewJob, bool]] = []
        unconfirmed: list[_NewJob] = []
        errors: list[str] = []
        for channel, group in queued.items():
            try:
                await self.redis.rpush(self.keys.queue(channel), *(j.id for j in group))
                confirmed += [(j, False) for j in group]
            except (aredis.RedisError, OSError) as exc:
                unconfirmed += group
                errors.append(f"{type(exc).__name__}: {exc}")
        for channel, group in delayed.items():
            try:
                pipe = self.redis.pipeline(transaction=False)
                # score = run_at in epoch ms; the channel is registered for the scheduler (__init__.py:589-597)
                pipe.zadd(self.keys.sched(channel), {j.id: j.run_at.timestamp() * 1000 for j in group if j.run_at})
                pipe.sadd(self.keys.sched_registry, channel)
                await pipe.execute()
                confirmed += [(j, True) for j in group]
            except (aredis.RedisError, OSError) as exc:
                unconfirmed += group
                errors.append(f"{type(exc).__name__}: {exc}")
        if confirmed:
            rows = []
            for job, is_delayed in confirmed:
                if is_delayed and job.run_at is not None:
                    rows.append(_event(job.id, job.channel, "scheduled", now, {"run_at": job.run_at.isoformat()}))
                else:
                    rows.append(_event(job.id, job.channel, "queued", now, {"queue": self.keys.queue(job.channel)}))
            try:
                async with self._statements() as cur:
                    await cur.executemany(INSERT_EVENT, rows)
            except CommandError as exc:  # as django-mojo: a lost event does not unpublish a queued job
                log.warning("published %d jobs but could not record their queued events: %s", len(rows), exc)
            counts: dict[str, int] = {}
            for job, _ in confirmed:
                counts[job.channel] = counts.get(job.channel, 0) + 1
            await self._count_published(counts, now)
        if unconfirmed:
            await self._mark_unconfirmed(unconfirmed, now)
            ids = ", ".join(j.id for j in unconfirmed[:5])
            raise CommandError(
                f"Redis did not confirm queueing {_plural(len(unconfirmed), 'job')} ({ids}): {errors[0]}. "
                f"Their rows stay pending with last_error '{UNCONFIRMED}' and may still run; "
                f"{len(confirmed)} others were queued"
            )
        return [job.id for job, is_delayed in confirmed if is_delayed]

    async def _count_published(self, counts: dict[str, int], now: datetime) -> None:
        """`jobs.published` and `jobs.published.<ch>`, category jobs, bucketed by the UTC time publish passes."""
        totals = {"jobs.published": sum(counts.values())}
        totals.update({f"jobs.published.{channel}": n for channel, n in counts.items()})
        epoch = time.time()
        try:
            pipe = self.redis.pipeline(transaction=False)
            for slug, n in totals.items():
                pipe.sadd(f"mets:global:c:{METRIC_CATEGORY}", slug)
                pipe.sadd(METRIC_CATEGORIES, METRIC_CATEGORY)
                pipe.sadd(METRIC_ACCOUNTS, "global")
                pipe.sadd(METRIC_SLUGS, slug)
                for prefix, fmt, days in METRIC_BUCKETS:
                    key = self.keys.metric(slug, f"{prefix}:{now.strftime(fmt)}")
                    pipe.incrby(key, n)
                    if days is not None:
                        pipe.expireat(key, int(epoch + days * 86_400))
            await pipe.execute()
        except (aredis.RedisError, OSError) as exc:  # as django-mojo: the jobs are published, only a count is lost
            log.warning("could not count %d published jobs in django-mojo's metrics: %s", sum(counts.values()), exc)

    async def _mark_unconfirmed(self, jobs: list[_NewJob], now: datetime) -> None:
        """What _record_uncertain_publication writes (__init__.py:485-547), its incident aside."""
        try:
            async with self._statements() as cur:
                await cur.execute(
                    "UPDATE jobs_job SET last_error = %s, modified = %s WHERE id = ANY(%s) AND status = 'pending' "
                    "AND attempt = 0",
                    (UNCONFIRMED, now, [j.id for j in jobs]),
                )
                await cur.executemany(
                    "INSERT INTO jobs_joblog (job_id, channel, kind, message, meta, created, modified) "
                    "VALUES (%s, %s, 'error', %s, %s::jsonb, %s, %s)",
                    [(j.id, j.channel, UNCONFIRMED, _unconfirmed_meta(j, now), now, now) for j in jobs],
                )
        except CommandError as exc:
            log.warning("could not mark %d unconfirmed publishes: %s", len(jobs), exc)

    # -- one job (services/job_actions.py) ----------------------------------------------------------------

    async def _cancel(self, job_id: str) -> Performed:
        """As JobActionsService.cancel_job (job_actions.py:18-122), never as jobs.cancel (which only flags)."""
        now = datetime.now(UTC)
        async with self._transaction() as cur:
            await cur.execute("SELECT status, runner_id, channel FROM jobs_job WHERE id = %s FOR UPDATE", (job_id,))
            row = await cur.fetchone()
            if row is None:
                raise CommandError(f"no job {job_id} in django-mojo's database")
            status, runner, channel = row
            if status in TERMINAL:
                raise CommandError(f"cannot cancel job {job_id}: it is already {status}")
            alive = bool(status == "running" and runner and await self.redis.exists(self.keys.runner_hb(runner)))
            forced = status == "running" and not alive
            if alive:
                # Cooperative: the engine does not stop the job; its code may check job.check_cancel_requested().
                await cur.execute("UPDATE jobs_job SET cancel_requested = true, modified = %s WHERE id = %s",
                                  (now, job_id))  # fmt: skip
            else:
                await cur.execute(
                    "UPDATE jobs_job SET status = 'canceled', finished_at = %s, cancel_requested = true, "
                    "runner_id = NULL, modified = %s WHERE id = %s",
                    (now, now, job_id),
                )
            details = {"requested_at": now.isoformat(), "forced": forced, "previous_status": status}
            await cur.execute(INSERT_EVENT, _event(job_id, channel, "canceled", now, details))
        if status != "running":
            # After the commit, as django-mojo (best effort): a delayed job leaves its sched zset; an id already on
            # the queue stays, and the engine drops it (its claim takes pending rows only, job_engine.py:1106).
            try:
                await self.redis.zrem(self.keys.sched(channel), job_id)
                await self.redis.zrem(self.keys.sched_broadcast(channel), job_id)
            except (aredis.RedisError, OSError) as exc:
                log.warning("canceled %s but could not take it out of the sched sets: %s", job_id, exc)
        result = {"job": job_id, "was": status, "forced": forced, "canceled": not alive, "cancel_requested": True}
        if alive:
            text = (f"Asked for job {job_id} to be canceled: it runs on {runner}, which is alive, and "
                    "django-mojo's cancel of a running job is cooperative (cancel_requested): it stops only if its "
                    "code checks")  # fmt: skip
        elif forced:
            text = f"Canceled job {job_id}: its runner {runner or '(none)'} has no heartbeat, so nothing runs it"
        else:
            text = f"Canceled job {job_id} (it was {status})"
        return Performed(result, text, 1)

    async def _run_now(self, job_id: str) -> Performed:
        """A delayed job due now: its row's run_at, then its score in the sched set (epoch ms), moved to now, so
        django-mojo's scheduler queues it at its next pass as it queues every job that comes due (its `queued` event
        and the engine's run follow as for any other)."""
        now = datetime.now(UTC)
        async with self._transaction() as cur:
            await cur.execute("SELECT status, run_at, channel, broadcast FROM jobs_job WHERE id = %s FOR UPDATE",
                              (job_id,))  # fmt: skip
            row = await cur.fetchone()
            if row is None:
                raise CommandError(f"no job {job_id} in django-mojo's database")
            status, run_at, channel, broadcast = row
            if status != "pending" or run_at is None or run_at <= now:
                what = status if status != "pending" else "pending and already due"
                raise CommandError(f"cannot run job {job_id} now: it is {what}; only a scheduled job can be")
            await cur.execute("UPDATE jobs_job SET run_at = %s, modified = %s WHERE id = %s", (now, now, job_id))
        sched = self.keys.sched_broadcast(channel) if broadcast else self.keys.sched(channel)
        await self.redis.zadd(sched, {job_id: now.timestamp() * 1000}, xx=True)
        return Performed({"job": job_id, "was": "scheduled"},
                         f"{job_id} is due now: django-mojo's scheduler queues it at its next pass", 1)  # fmt: skip

    async def _retry(self, job_id: str) -> Performed:
        """As JobActionsService.retry_job (job_actions.py:124-243): a replacement job, linked both ways."""
        now = datetime.now(UTC)
        async with self._transaction() as cur:
            await cur.execute(
                "SELECT status, func, payload, channel, broadcast, max_retries, backoff_base, backoff_max_sec, "
                "max_exec_seconds, expires_at, created, metadata FROM jobs_job WHERE id = %s FOR UPDATE",
                (job_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise CommandError(f"no job {job_id} in django-mojo's database")
            (status, func, payload, channel, broadcast, max_retries, backoff_base, backoff_max, max_exec,
             expires_at, created, metadata) = row  # fmt: skip
            if status not in RETRYABLE:
                raise CommandError(f"cannot retry job {job_id} while it is {status}: only failed, canceled or "
                                   "expired jobs are retried")  # fmt: skip
            metadata = metadata if isinstance(metadata, dict) else {}
            prior = metadata.get("retried_as")
            if prior:
                # Once only while the replacement lives (the row lock above makes a double click wait for this).
                await cur.execute("SELECT count(*) FROM jobs_job WHERE id = ANY(%s) AND status <> ALL(%s)",
                                  (prior if isinstance(prior, list) else [prior], list(RETRYABLE)))  # fmt: skip
                live = await cur.fetchone()
                if live is not None and live[0]:
                    raise CommandError(f"job {job_id} was already retried as {prior}: retry that job instead")
            if broadcast:
                raise CommandError(f"job {job_id} is a broadcast job: retry it from django-mojo, whose fan-out "
                                   "needs its live runner roster")  # fmt: skip
            # A fresh lifetime, at least the one the original was published with (job_actions.py:183-199).
            lifetime = EXPIRES_S
            if expires_at is not None and created is not None:
                lifetime = max(lifetime, int((expires_at - created).total_seconds()))
            # retried_from goes in with the row: django-mojo sets it right after publishing, when the metadata is
            # still empty; here no engine can have claimed the row yet.
            new = _NewJob(func=func, channel=channel, payload=payload if isinstance(payload, dict) else {},
                          run_at=None, expires_at=now + timedelta(seconds=lifetime), max_retries=max_retries,
                          backoff_base=backoff_base, backoff_max=backoff_max, max_exec_seconds=max_exec,
                          metadata={"retried_from": job_id})  # fmt: skip
            await _insert_jobs(cur, [new], now)
            await cur.execute("UPDATE jobs_job SET metadata = metadata || %s::jsonb, modified = %s WHERE id = %s",
                              (json.dumps({"retried_as": new.id}), now, job_id))  # fmt: skip
            details = {"retry_requested": True, "new_job_id": new.id, "delay": None, "previous_status": status}
            await cur.execute(INSERT_EVENT, _event(job_id, channel, "retry", now, details))
        await self._mirror([new])
        text = f"Retried {func} as {new.id} (a new job on {channel}; {job_id} stays {status})"
        return Performed({"job": new.id, "of": job_id, "attempt": 1}, text, 1)

    # -- channels ---------------------------------------------------------------------------------------

    async def _purge(self, channel: str) -> Performed:
        """Empty a channel of its waiting work: its queue and sched sets go, its pending rows become canceled with
        a canceled event each (django-mojo's own clear-queue writes none and also drops the running jobs' leases,
        manager.py:1394-1459)."""
        _check_channel(channel)
        now = datetime.now(UTC)
        keys = [self.keys.queue(channel), self.keys.sched(channel), self.keys.sched_broadcast(channel)]
        details = json.dumps({"requested_at": now.isoformat(), "forced": False, "previous_status": "pending",
                              "reason": "channel_purged"})  # fmt: skip
        removed: list[int] = []
        async with self._transaction() as cur:
            await cur.execute("SELECT 1")  # the connection answers before anything is deleted
            # Redis first, then the UPDATE: any id published before the DEL has a row committed before the UPDATE
            # reads, so it is canceled; one published after keeps its row pending and its queue entry.
            pipe = self.redis.pipeline(transaction=True)
            pipe.llen(keys[0])
            pipe.zcard(keys[1])
            pipe.zcard(keys[2])
            pipe.delete(*keys)
            try:
                found = await pipe.execute()
            except (aredis.RedisError, OSError) as exc:
                raise CommandError(f"could not empty {channel}'s queue in Redis: {exc}; nothing was changed") from None
            removed = [int(n) for n in found[:3]]
            try:
                await cur.execute(
                    f"""WITH canceled AS (
                        UPDATE jobs_job SET status = 'canceled', finished_at = %s, modified = %s
                        WHERE channel = %s AND status = 'pending' RETURNING id, channel, attempt)
                    INSERT INTO jobs_jobevent ({EVENT_COLUMNS})
                    SELECT id, channel, 'canceled', %s, NULL, attempt, %s::jsonb, %s, %s FROM canceled""",
                    (now, now, channel, now, details, now, now),
                )
            except Exception as exc:
                why = self._db_error(exc)
                raise CommandError(f"removed {sum(removed)} ids of {channel} from Redis, but its pending rows were "
                                   f"not canceled ({why}): purge again to cancel them") from None  # fmt: skip
            canceled = cur.rowcount
        text = (f"Purged {channel}: canceled {_plural(canceled, 'pending job')} "
                f"({removed[0]} queued and {removed[1] + removed[2]} delayed ids removed from Redis)")  # fmt: skip
        result = {"channel": channel, "canceled": canceled, "queued": removed[0], "scheduled": removed[1] + removed[2]}
        return Performed(result, text, canceled)

    async def _clear_stuck(self, channel: str | None, older_than: float, known: Known) -> Performed:
        """Hand abandoned in-flight entries to django-mojo's reaper (job_engine.py:1258-1386) by scoring them 0.

        Each engine's reaper takes, every 5 s, the channel's processing entries older than its lease, and decides
        by its own rules: a retryable running job goes back to pending and its queue, the others fail (or expire).
        Live engines re-score their jobs every heartbeat, so only abandoned entries are older than `older_than`.
        """
        if channel is not None:
            _check_channel(channel)
            channels = [channel]
        else:
            channels = [c for c in known.channels if CHANNEL_RE.match(c)]
            if not channels:
                raise CommandError("jobpulse knows no channel of this deployment yet: name one")
        cutoff_ms = int((time.time() - older_than) * 1000)
        handed: dict[str, list[str]] = {}
        for name in channels:
            try:
                found = await self.redis.eval(_HAND_OVER, 1, self.keys.processing(name), cutoff_ms)
            except (aredis.RedisError, OSError) as exc:
                raise CommandError(f"could not read {name}'s in-flight jobs in Redis: {exc}") from None
            ids = [_text(i) for i in found or []]
            if ids:
                handed[name] = ids
        orphans = await self._orphans(channels) if self.write_url else {}
        for name, ids in orphans.items():
            # Running rows with no in-flight entry at all (django-mojo's own clear-stuck leaves these behind, and
            # nothing would ever reap them): NX, so an entry that appeared meanwhile keeps its score.
            await self.redis.zadd(self.keys.processing(name), dict.fromkeys(ids, 0), nx=True)
            handed.setdefault(name, []).extend(ids)
        count = sum(len(ids) for ids in handed.values())
        unwatched = [name for name in handed if not await self._watched(name)]
        where = channel or _plural(len(channels), "channel")
        text = (f"Handed {_plural(count, 'stuck job')} of {where} to django-mojo's reaper: within ~{REAPER_PASS_S} s "
                "an engine consuming the channel requeues those with attempts left and fails the others")  # fmt: skip
        if unwatched:
            text += f". No live engine consumes {', '.join(unwatched)}: nothing happens there until one does"
        if not self.write_url:
            text += " (running jobs with no in-flight entry need JOBPULSE_MOJO_WRITE_DATABASE_URL to be found)"
        jobs = [i for ids in handed.values() for i in ids]
        result = {"handed": count, "jobs": jobs[:SAMPLE], "channels": sorted(handed), "unwatched": unwatched,
                  "orphans": sum(len(ids) for ids in orphans.values())}  # fmt: skip
        return Performed(result, text, count)

    async def _orphans(self, channels: list[str]) -> dict[str, list[str]]:
        """Running rows of these channels whose runner has no heartbeat and that have no in-flight entry."""
        async with self._statements() as cur:
            await cur.execute("SELECT id, channel, runner_id FROM jobs_job WHERE status = 'running' "
                              "AND channel = ANY(%s)", (channels,))  # fmt: skip
            rows = await cur.fetchall()
        if not rows:
            return {}
        runners = sorted({runner for _, _, runner in rows if runner})
        pipe = self.redis.pipeline(transaction=False)
        for runner in runners:
            pipe.exists(self.keys.runner_hb(runner))
        for job_id, channel, _ in rows:
            pipe.zscore(self.keys.processing(channel), job_id)
        found = await pipe.execute()
        alive = {runner for runner, n in zip(runners, found, strict=False) if n}
        out: dict[str, list[str]] = {}
        for (job_id, channel, runner), score in zip(rows, found[len(runners) :], strict=True):
            if runner not in alive and score is None:
                out.setdefault(channel, []).append(job_id)
        return out

    async def _watched(self, channel: str) -> bool:
        """Does a live engine consume `channel` (its registry lists one whose heartbeat key exists)?"""
        members = await self.redis.zrange(self.keys.runner_registry(channel), 0, -1)
        if not members:
            return False
        alive = await self.redis.exists(*(self.keys.runner_hb(_text(m)) for m in members))
        return bool(alive)

    # -- jobpulse's own state -------------------------------------------------------------------------

    def _cleanup(self, known: Known) -> Performed:
        """django-mojo's registries expire by themselves: forgetting dead engines is jobpulse's own state."""
        n = actions.forget_dead(known.dead, known.now, "jobpulse-mojo", self._seqs, self.feed)
        return Performed({"removed": n, "requeued": 0}, f"Forgot {_plural(n, 'dead engine')}", n)

    # -- Postgres -------------------------------------------------------------------------------------

    async def _connection(self) -> AsyncConnection[Any]:
        """The write connection, opened on first use and again after it broke (call with the lock held)."""
        if not self.write_url:
            raise CommandError(f"this action {NO_WRITE_URL}")
        try:
            import psycopg
        except ImportError:
            raise CommandError("writing django-mojo's rows needs psycopg: pip install 'jobpulse[mojo]'") from None
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            await self.close()
            conn = None
        if conn is not None and time.monotonic() - self._used > DB_IDLE_CHECK_S:
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error:  # dropped while idle (a server restart): open a new one
                await self.close()
                conn = None
        if conn is None:
            try:
                conninfo = self.write_url
                if "application_name" not in conninfo:  # named for pg_stat_activity unless the URL names it
                    conninfo = psycopg.conninfo.make_conninfo(conninfo, application_name=APPLICATION_NAME)
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise CommandError(f"cannot connect to django-mojo's Postgres (JOBPULSE_MOJO_WRITE_DATABASE_URL): "
                                   f"{_first_line(exc)}") from None  # fmt: skip
            self._conn = conn
        self._used = time.monotonic()
        return conn

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncCursor[Any]]:
        """A cursor inside one transaction: committed when the block ends, rolled back when it raises."""
        async with self._db_lock:
            conn = await self._connection()
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except Exception as exc:
                raise self._db_error(exc) from None

    @contextlib.asynccontextmanager
    async def _statements(self) -> AsyncIterator[AsyncCursor[Any]]:
        """A cursor whose statements each commit on their own (as django-mojo's event inserts do)."""
        async with self._db_lock:
            conn = await self._connection()
            try:
                async with conn.cursor() as cur:
                    yield cur
            except Exception as exc:
                raise self._db_error(exc) from None

    def _db_error(self, exc: Exception) -> Exception:
        """A CommandError for a Postgres failure (other errors pass as they are)."""
        import psycopg

        if isinstance(exc, CommandError) or not isinstance(exc, psycopg.Error):
            return exc
        if isinstance(exc, psycopg.OperationalError):  # a broken connection is reopened at the next action
            return CommandError(f"lost the connection to django-mojo's Postgres: {_first_line(exc)}; its rows "
                                "were not changed")  # fmt: skip
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return CommandError("the JOBPULSE_MOJO_WRITE_DATABASE_URL role may not write django-mojo's tables: "
                                f"{_first_line(exc)}")  # fmt: skip
        return CommandError(f"django-mojo's Postgres refused it: {_first_line(exc)}; nothing was committed")


# Scores 0 every in-flight entry at or older than ARGV[1] (epoch ms), in one step, so an entry a live engine
# re-scores meanwhile is never handed over (XX: only members still there). Returns the ids handed over.
_HAND_OVER = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', 0, id) end
return ids
"""


async def _confirmed(pubsub: Any, count: int, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
    """Wait until Redis confirmed `count` subscriptions: a reply published before that would be lost."""
    seen = 0
    while seen < count:
        left = deadline - loop.time()
        if left <= 0:
            raise CommandError("Redis did not confirm the reply subscription in time")
        message = await pubsub.get_message(timeout=left)
        if message is not None and message.get("type") == "subscribe":
            seen += 1


async def _insert_jobs(cur: AsyncCursor[Any], jobs: list[_NewJob], now: datetime) -> None:
    """The rows and their `created` events (__init__.py:913-937): in the caller's transaction."""
    await cur.executemany(INSERT_JOB, [
        (j.id, j.channel, j.func, json.dumps(j.payload), j.run_at, j.expires_at, j.max_retries, j.backoff_base,
         j.backoff_max, False, j.max_exec_seconds, json.dumps(j.metadata), now, now) for j in jobs
    ])  # fmt: skip
    await cur.executemany(INSERT_EVENT, [
        _event(j.id, j.channel, "created", now, {"func": j.func, "channel": j.channel}) for j in jobs
    ])  # fmt: skip


def _unconfirmed_meta(job: _NewJob, now: datetime) -> str:
    operation = "zadd" if job.run_at is not None and job.run_at > now else "rpush"
    return json.dumps({"phase": "redis_mirror", "delivery_state": "unknown", "deferred": False,
                       "operation": operation})  # fmt: skip


def _event(job_id: str, channel: str, event: str, at: datetime, details: dict[str, Any]) -> tuple[Any, ...]:
    """One jobs_jobevent row as django-mojo's publisher-side code writes it: no runner, attempt 0 (the defaults)."""
    return (job_id, channel, event, at, None, 0, json.dumps(details), at, at)


def _expires(now: datetime, run_at: datetime | None) -> datetime:
    """publish's default lifetime (now + 900 s), counted from run_at for a delayed job.

    django-mojo counts from the publish, so a job delayed past 900 s expires before it runs; its own retry_job
    extends the window by the delay for that reason (job_actions.py:196-199), and so does jobpulse.
    """
    start = run_at if run_at is not None and run_at > now else now
    return start + timedelta(seconds=EXPIRES_S)


def _check_channel(channel: str) -> None:
    if not CHANNEL_RE.match(channel):
        raise CommandError(f"channel {channel!r}: django-mojo channels are 1 to 100 letters, digits, '_', '.' or '-' "
                           "(no ':', which its engine splits queue keys on)")  # fmt: skip


def _check_payload(payload: dict[str, Any]) -> None:
    size = len(json.dumps(payload).encode())  # measured as django-mojo measures it (__init__.py:795-798)
    if size > PAYLOAD_MAX_BYTES:
        raise CommandError(f"payload: {size} bytes of JSON, over django-mojo's {PAYLOAD_MAX_BYTES}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _who(runners: list[str]) -> str:
    return runners[0] if len(runners) == 1 else f"{len(runners)} engines"
