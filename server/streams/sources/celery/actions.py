"""Operator actions on a Celery cluster: remote control, the broker's queue lists, and `send_task`.

Shell layer. Each action of docs/protocol.md 4.4 that Celery can do is mapped
here (section 6 lists them); the others are named in `UNSUPPORTED` with the
reason, so the pages show them as unavailable. Celery's control calls block,
so they run in a thread; replies are gathered for `JOBPULSE_COMMAND_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aredis

from server import actions
from server.actions import Args, Performed
from server.routing import Known
from server.streams.connector import CommandError

log = logging.getLogger("jobpulse.celery")

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # kombu's default priority_steps besides 0 (which is the plain list)


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold a queue's waiting messages: the queue itself and one per priority step."""
    return [queue, *(f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS)]


UNSUPPORTED = {
    "runner.logs": "Celery workers keep no log that remote control can read",
    "broadcast": "Celery has no broadcast message or generic config change (rate and time limits are per task)",
    "channel.clear_stuck": "Celery cannot take a running task back to its queue; cancel it (revoke) instead",
    "job.run_now": "Celery cannot move a task's ETA: a worker holds an ETA task until it is due (revoke it and send "
    "it again instead)",
}
DRAIN_POLL_S = 2.0


class CeleryActions:
    """Does actions on the cluster; `control` is the connector's `Control` (Celery's app.control)."""

    def __init__(
        self,
        control: Any,
        broker: aredis.Redis,
        feed: Callable[[Any], None],
        wait_s: Callable[[], float],
    ) -> None:
        self.control = control
        self.broker = broker
        self.feed = feed
        self.wait_s = wait_s
        self._drains: set[asyncio.Task[None]] = set()
        self._seqs = itertools.count(1)  # of the runner.removed events jobpulse itself makes (src "jobpulse-celery")

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        app_control = self.control.app.control
        return await asyncio.to_thread(getattr(app_control, method), *args, **kwargs)

    async def _replies(self, method: str, hosts: list[str] | None, **kwargs: Any) -> dict[str, Any]:
        """{host: reply} of a broadcast with replies, from the hosts that answered in time."""
        found = await self._call(method, destination=hosts, reply=True, timeout=self.wait_s(), **kwargs)
        out: dict[str, Any] = {}
        for item in found or []:
            if isinstance(item, dict):
                out.update(item)
        return out

    async def perform(self, action: str, args: Args, known: Known) -> Performed:
        if action in UNSUPPORTED:  # the commander refuses these first; never let one fall into a neighbour's branch
            raise CommandError(f"{action}: {UNSUPPORTED[action]}", "unavailable")
        if isinstance(args, actions.RunnersArgs | actions.RestartArgs):
            hosts = actions.addressed(known.live, args)
            if not hosts:
                raise CommandError("no live worker to address", "no_reply")
            return await self._workers(action, hosts, known)
        if isinstance(args, actions.RunArgs):
            task = await self._send(args.fn, args.channel, args.payload, args.run_at, args.cid)
            return Performed({"job": task}, f"Sent {args.fn} to {args.channel} ({task})", 1)
        if isinstance(args, actions.BatchArgs):
            channels = list(known.channels) if args.channels == "*" else list(args.channels)
            sent = [await self._send(args.fn, c, {"n": i}, None, None) for c in channels for i in range(args.count)]
            return Performed(
                {"queued": len(sent), "channels": channels}, f"Sent {len(sent)} {args.fn} tasks", len(sent)
            )
        if isinstance(args, actions.JobArgs):
            return await self._job(action, args.job, known)
        if isinstance(args, actions.ChannelArgs):
            return await self._channel(action, args.channel, known)
        if isinstance(args, actions.CleanupArgs):
            return self._cleanup(known)
        if isinstance(args, actions.RateLimitArgs):
            hosts = list(known.live)
            if not hosts:
                raise CommandError("no live worker to tell", "no_reply")
            arguments = {"task_name": args.fn, "rate_limit": None if args.rate == "0" else args.rate}
            replies = await self._replies("broadcast", hosts, command="rate_limit", arguments=arguments)
            refused = [r for r in replies.values() if isinstance(r, dict) and r.get("error")]
            if refused and len(refused) == len(replies):
                raise CommandError(f"rate limit refused: {refused[0]['error']}")
            return self._answered(hosts, replies, f"Set the rate limit of {args.fn} to {args.rate} on")
        raise CommandError(f"{action}: not available on Celery")

    # -- workers ----------------------------------------------------------------------------------------

    async def _workers(self, action: str, hosts: list[str], known: Known) -> Performed:
        verb = action.split(".", 1)[1]
        if verb == "ping":
            replies = await self._replies("broadcast", hosts, command="ping")
            return self._answered(hosts, replies, "Pinged")
        if verb == "shutdown":
            await self._call("broadcast", "shutdown", destination=hosts)
            return Performed({"count": len(hosts), "replies": [], "missing": []}, f"Shutting down {_who(hosts)}",
                             len(hosts))  # fmt: skip
        if verb == "restart":
            replies = await self._replies("broadcast", hosts, command="pool_restart", arguments={"reload": False})
            refused = {h: r for h, r in replies.items() if isinstance(r, dict) and r.get("error")}
            if refused and len(refused) == len(replies):
                raise CommandError(f"pool restart refused: {next(iter(refused.values()))['error']} "
                                   "(the workers need worker_pool_restarts = True)")  # fmt: skip
            return self._answered(hosts, replies, "Restarted the pool of")
        queues = await self._queues_of(hosts)
        if verb == "drain":
            for host in hosts:
                for queue in queues.get(host, []):
                    await self._call("broadcast", "cancel_consumer", destination=[host], arguments={"queue": queue})
            for host in hosts:
                task = asyncio.create_task(self._finish_drain(host))
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)
            return Performed(
                {"count": len(hosts), "queues": queues},
                f"Draining {_who(hosts)}: stopped consuming; it shuts down once idle",
                len(hosts),
            )
        if verb == "undrain":
            for task in list(self._drains):
                task.cancel()  # a drain still waiting must not shut the worker down after all
            for host in hosts:
                for queue in known.consumes.get(host, []):
                    await self._call("broadcast", "add_consumer", destination=[host], arguments={"queue": queue})
            return Performed({"count": len(hosts)}, f"{_who(hosts)} consuming again", len(hosts))
        raise CommandError(f"runner.{verb}: not available on Celery")

    async def _queues_of(self, hosts: list[str]) -> dict[str, list[str]]:
        replies = await self._replies("broadcast", hosts, command="active_queues")
        return {h: [q["name"] for q in r if isinstance(q, dict) and q.get("name")] for h, r in replies.items()
                if isinstance(r, list)}  # fmt: skip

    async def _finish_drain(self, host: str) -> None:
        """Celery has no drain: wait until the worker runs nothing, then shut it down."""
        try:
            while True:
                await asyncio.sleep(DRAIN_POLL_S)
                active = await self._replies("broadcast", [host], command="active")
                if host in active and not active[host]:
                    await self._call("broadcast", "shutdown", destination=[host])
                    log.warning("drained %s: it was idle, so it was shut down", host)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("drain of %s stopped: %s: %s", host, type(exc).__name__, exc)

    def _answered(self, hosts: list[str], replies: dict[str, Any], verb: str) -> Performed:
        listed = [{"src": h, "ok": True, "result": r if isinstance(r, dict) else {"reply": r}, "error": None}
                  for h, r in replies.items()]  # fmt: skip
        missing = [h for h in hosts if h not in replies]
        if not listed:
            raise CommandError(f"{_who(hosts)} did not answer")
        answered = [h for h in hosts if h in replies]
        message = f"{verb} {_who(answered)}" + (f"; {len(missing)} did not answer" if missing else "")
        return Performed({"count": len(hosts), "replies": listed, "missing": missing}, message, len(listed))

    # -- jobs -------------------------------------------------------------------------------------------

    async def _send(self, fn: str, queue: str, payload: dict[str, Any], run_at: float | None, cid: str | None) -> str:
        args = payload.get("args", []) if isinstance(payload.get("args"), list) else []
        kwargs = payload.get("kwargs") if isinstance(payload.get("kwargs"), dict) else None
        if kwargs is None:
            kwargs = {k: v for k, v in payload.items() if k != "args"}
        task_id = str(uuid.uuid4())
        options: dict[str, Any] = {"queue": queue, "task_id": task_id}
        if run_at is not None:
            from datetime import UTC, datetime

            options["eta"] = datetime.fromtimestamp(run_at, UTC)
        if cid:
            options["headers"] = {"jobpulse_cid": cid}
        await asyncio.to_thread(self.control.app.send_task, fn, args, kwargs, **options)
        return task_id

    async def _job(self, action: str, job_id: str, known: Known) -> Performed:
        job = known.jobs.get(job_id)
        if action == "job.cancel":
            running = job is not None and job.status == "running"
            await self._call("revoke", job_id, terminate=running)
            was = job.status if job is not None else "unknown to jobpulse"
            return Performed({"job": job_id, "was": was}, f"Revoked {job_id}" + (" (terminated)" if running else ""), 1)
        # job.retry: Celery's events carry only repr strings of the arguments; an extended result backend
        # (result_extended = True) keeps the real ones beside the result.
        raw = await self.broker.get(f"celery-task-meta-{job_id}")
        meta = json.loads(raw) if raw else {}
        if not isinstance(meta, dict) or "args" not in meta or not meta.get("name"):
            raise CommandError(
                "retry needs the task's original arguments: enable result_extended = True on the workers "
                "(Celery's events carry only their repr)"
            )
        queue = job.channel if job is not None else (meta.get("queue") or "celery")
        args = meta.get("args") or []
        kwargs = meta.get("kwargs") or {}
        task = await self._send(str(meta["name"]), queue, {"args": args, "kwargs": kwargs}, None, None)
        return Performed({"job": task, "attempt": 1, "of": job_id}, f"Re-sent {meta['name']} as {task}", 1)

    # -- channels ---------------------------------------------------------------------------------------

    async def _channel(self, action: str, channel: str, known: Known) -> Performed:
        if action == "channel.purge":
            keys = queue_keys(channel)
            pipe = self.broker.pipeline(transaction=True)
            for key in keys:
                pipe.llen(key)
            pipe.delete(*keys)
            found = await pipe.execute()
            purged = sum(int(n) for n in found[: len(keys)])
            return Performed({"purged": purged}, f"Purged {purged} queued tasks of {channel}", purged)
        hosts = list(known.live)
        if not hosts:
            raise CommandError("no live worker to tell", "no_reply")
        command = "cancel_consumer" if action == "channel.pause" else "add_consumer"
        replies = await self._replies("broadcast", hosts, command=command, arguments={"queue": channel})
        paused = action == "channel.pause"
        return Performed(
            {"channel": channel, "paused": paused, "workers": len(replies)},
            f"{channel}: {len(replies)} workers {'stopped' if paused else 'started'} consuming it",
            len(replies),
        )

    def _cleanup(self, known: Known) -> Performed:
        """Celery keeps no registry of workers: forgetting dead ones is jobpulse's own state."""
        n = actions.forget_dead(known.dead, known.now, "jobpulse-celery", self._seqs, self.feed)
        return Performed({"removed": n, "requeued": 0}, f"Forgot {n} dead workers", n)


def _who(hosts: list[str]) -> str:
    return hosts[0] if len(hosts) == 1 else f"{len(hosts)} workers"
