"""The notifier of one jobpulse process: proposes alert transitions from the live hot issues, sends the outbox.

Two tasks beside the aggregator's, never on its path: `plan` (once a second:
the hot issues of the fold -> proposals -> the shared records and the outbox,
server/notify/outbox.py) and `deliver` (reads the outbox as one of the
`senders`, takes over entries of processes that died, moves retries that are
due, sends each entry with a time limit; a receiver that is down costs its own
entries their backoff and nothing else). Counted by target and outcome for
/metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import redis.asyncio as aredis
from redis.exceptions import RedisError

from server.actions import AlertArgs, Args, Performed, SilenceArgs
from server.clock import wall
from server.commander import LocalAction
from server.notify.lifecycle import Issue, Notice, Policy, Record, proposals
from server.notify.outbox import Entry, Outbox, Taken
from server.notify.routes import Addressee, parse as parse_routes, targets_for
from server.notify.targets import (
    REFRESH_S,
    USER_AGENT,
    Alertmanager,
    DeliveryError,
    Target,
    alertmanager_alert,
    configured,
)
from server.roles import Principal
from server.settings import Settings
from server.streams.connector import CommandError
from server.streams.core.events import NotifyStatus
from server.streams.core.rules import RULES
from server.streams.core.state import State

log = logging.getLogger("jobpulse.notify")

T = TypeVar("T")
PLAN_EVERY_S = 1.0
STATUS_EVERY_S = 3.0  # other processes' deliveries reach this one's pages within this
STATUS_LINES = 50  # delivery log lines the pages get
STATUS_DEAD = 20  # dead letters the pages get
IN_FLIGHT = 16  # deliveries under way at once in this process


def backoff(attempt: int, base: float, cap: float, rand: float) -> float:
    """Seconds to wait after the `attempt`-th failure: base x 2^(attempt-1), at most `cap`, the upper half
    jittered (`rand` in [0, 1)) so that many failures at once do not come back at once."""
    delay = min(cap, base * 2.0 ** min(attempt - 1, 30))
    return delay / 2 + rand * delay / 2


class Notifier:
    """Plans and delivers this process's share of the alert notifications."""

    def __init__(
        self,
        settings: Settings,
        client: aredis.Redis,
        state: State,
        ready: Callable[[], bool],
        targets: list[Target] | None = None,
        sink: Callable[[NotifyStatus], None] | None = None,
        clock: Callable[[], float] = wall,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.state = state
        self.ready = ready
        self.clock = clock
        self.rand = rand
        listed = (
            configured(
                settings.alert_webhooks,
                settings.alert_webhook_secret,
                settings.alertmanager_url,
                settings.alert_apprise,
            )
            if targets is None
            else targets
        )
        self.targets: dict[str, Target] = {t.name: t for t in listed}
        self.routes = parse_routes(settings.alert_routes, RULES)
        self.sources = tuple(spec.label for spec in settings.source_specs())
        self._addressees = [Addressee(t.name, t.kind, t.host) for t in listed]
        self.policy = Policy(
            min_open=settings.alert_min_open_s,
            min_open_by_rule=settings.alert_min_open_map(),
            remind=settings.alert_remind_s,
            settle=max(1.0, 3 * settings.clock_ms / 1000),  # a few of the fold's clock ticks
        )
        self.outbox = Outbox(
            client, settings.prefix, settings.alert_outbox_cap, settings.alert_log_cap, settings.alert_dead_cap
        )
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.counts: Counter[tuple[str, str]] = Counter()  # (target, outcome) -> notifications
        self.errors = 0  # plan or delivery rounds that failed on Redis (retried)
        # The shared outbox and records as the status loop last read them (for /metrics and the refresh).
        self.backlog: tuple[int, int, int] = (0, 0, 0)  # waiting, retrying, dead
        self.firing = 0
        self.sink = sink  # where the pages' view of the outbox goes (the aggregator's fold)
        self._changed = asyncio.Event()  # something the pages show moved: read the outbox again now
        self._warm_at: float | None = None
        self._refreshed = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def start(self) -> None:
        if not self.enabled:
            return
        self._http = httpx.AsyncClient(
            timeout=self.settings.alert_timeout_s, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )
        self._tasks = [
            asyncio.create_task(self._loop("plan", self.plan), name="notify-plan"),
            asyncio.create_task(self._loop("deliver", self.deliver), name="notify-deliver"),
            asyncio.create_task(self._loop("status", self.status), name="notify-status"),
        ]

    async def stop(self) -> None:
        if self._refresh is not None:
            self._tasks.append(self._refresh)
        for task in [*self._tasks, *self._in_flight.values()]:
            task.cancel()
        for task in [*self._tasks, *self._in_flight.values()]:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()

    async def _loop(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body` for ever; Redis trouble waits a moment and tries again (the outbox keeps everything)."""
        delay = 0.5
        while True:
            try:
                await body()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.errors += 1
                log.warning("alerts: %s: Redis: %s", name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception:
                self.errors += 1
                log.exception("alerts: %s crashed; restarting", name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # -- operators' actions (server/actions.py: alert.*, notify.test; audited by the commander) --------

    def actions(self) -> dict[str, LocalAction]:
        """The alert actions this process can do: none without a target (the welcome says why)."""
        if not self.enabled:
            return {}
        return {"alert.ack": self._ack, "alert.silence": self._silence, "alert.unsilence": self._unsilence,
                "notify.test": self._test}  # fmt: skip

    async def _ack(self, args: Args, principal: Principal, now: float) -> Performed:
        assert isinstance(args, AlertArgs)
        record = await _store(self.outbox.acknowledge(args.alert, principal.name, now))
        if record is None:
            raise CommandError(f"alert {args.alert} is not firing", "not_found")
        self._changed.set()
        return Performed(
            {"alert": record.id, "episode": record.episode, "acked_by": principal.name},
            f"Acknowledged {record.title}: no reminders for this episode", 1,
        )  # fmt: skip

    async def _silence(self, args: Args, principal: Principal, now: float) -> Performed:
        assert isinstance(args, SilenceArgs)
        if _rule_of(args.alert) not in RULES:
            raise CommandError(f"{args.alert!r} names no rule ({', '.join(RULES)}) nor an alert of one", "not_found")
        until = now + args.minutes * 60
        await _store(self.outbox.silence(args.alert, until, principal.name, args.reason))
        self._changed.set()
        return Performed(
            {"alert": args.alert, "until": until, "by": principal.name},
            f"Silenced {args.alert} for {args.minutes} min: it does not fire or remind until then", 1,
        )  # fmt: skip

    async def _unsilence(self, args: Args, principal: Principal, now: float) -> Performed:
        assert isinstance(args, AlertArgs)
        if not await _store(self.outbox.unsilence(args.alert)):
            raise CommandError(f"{args.alert} is not silenced", "not_found")
        self._changed.set()
        return Performed({"alert": args.alert}, f"{args.alert} is no longer silenced", 1)

    async def _test(self, args: Args, principal: Principal, now: float) -> Performed:
        record = Record(
            id="test", rule="test", key=principal.name, state="firing", severity="warning",
            title="Test notification from jobpulse", detail=f"sent by {principal.name} to check the alert targets",
            since=now, fired_at=now, sent_at=now, episode=f"test@{now:.3f}",
        )  # fmt: skip
        notice = Notice(id=f"{record.episode}#1", kind="test", record=record, at=now)
        queued = await _store(self.outbox.enqueue(notice, list(self.targets), now))
        self._changed.set()
        return Performed(
            {"id": notice.id, "targets": queued},
            f"Test notification queued for {queued} target{'s' if queued != 1 else ''}: see the delivery log", queued,
        )  # fmt: skip

    # -- what the pages show ------------------------------------------------------------------------------

    async def status(self) -> None:
        """Read the shared outbox for the pages every STATUS_EVERY_S, and at once after a change here."""
        while True:
            self._changed.clear()
            await self.status_once()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_EVERY_S):
                    await self._changed.wait()
            await asyncio.sleep(0.2)  # a burst of changes is one read

    async def status_once(self) -> NotifyStatus:
        listed = [(t.name, t.kind, t.shown) for t in self.targets.values()]
        view = await self.outbox.view(listed, self.clock(), STATUS_LINES, STATUS_DEAD)
        self.backlog = (view.waiting, view.retrying, view.dead)
        self.firing = len(view.firing)
        if self.sink is not None:
            self.sink(view)
        return view

    # -- plan -------------------------------------------------------------------------------------

    async def plan(self) -> None:
        await self.outbox.ensure_group()
        while True:
            await self.plan_once()
            await asyncio.sleep(PLAN_EVERY_S)

    async def plan_once(self) -> int:
        """One round: propose what the hot issues say now; returns the notices enqueued."""
        now = self.clock()
        if not self.ready():
            self._warm_at = None  # not following the sources: it sees no issue, so it must not resolve any
            return 0
        if self._warm_at is None:
            self._warm_at = now
        issues = [
            Issue(a.id, a.rule, a.key, a.severity, a.title, a.detail, a.since) for a in list(self.state.alerts.values())
        ]
        # Until this process has watched a while, it may not see an issue yet that is open: it resolves nothing.
        warm = now - self._warm_at >= self.policy.settle
        records = await self.outbox.records() if warm else {}
        silenced = await self.outbox.silences(now)
        wanted = list(proposals(issues, records.values(), now, self.policy, silenced))
        notices = await self.outbox.apply(wanted, now, self.policy, self.route)
        if warm and now - self._refreshed >= REFRESH_S and (self._refresh is None or self._refresh.done()):
            self._refreshed = now
            if self.firing and any(isinstance(t, Alertmanager) for t in self.targets.values()):
                self._refresh = asyncio.create_task(self._hold(), name="notify-alertmanager-refresh")
        if notices:
            self._changed.set()
        for notice in notices:
            log.info("alert %s %s (%s): %s", notice.record.id, notice.kind, notice.record.severity, notice.record.title)
        return len(notices)

    async def _hold(self) -> None:
        """Post the alerts still firing to every Alertmanager again, pushing their `endsAt` on (targets.HOLD_S):
        Alertmanager resolves an alert nobody refreshes. A miss is retried at the next refresh; the transitions
        themselves go through the outbox. The records are read afresh here, after this round's decisions: a
        refresh built from the round's first read would post an alert just resolved as firing again."""
        assert self._http is not None
        now = self.clock()
        firing = [r for r in (await self.outbox.records()).values() if r.state == "firing"]
        if not firing:
            return
        alerts = [alertmanager_alert(r, "firing", now) for r in firing]
        for target in self.targets.values():
            if isinstance(target, Alertmanager):
                try:
                    async with asyncio.timeout(self.settings.alert_timeout_s):
                        await target.post(self._http, alerts)
                except (DeliveryError, TimeoutError) as exc:
                    log.info("alerts: refreshing %d alerts at %s failed: %s", len(alerts), target.shown, exc)

    def route(self, record: Record) -> list[str]:
        """The targets an alert goes to (JOBPULSE_ALERT_ROUTES; every target when no route names it)."""
        return targets_for(record.rule, record.key, record.severity, self._addressees, self.routes, self.sources)

    # -- deliver ----------------------------------------------------------------------------------

    async def deliver(self) -> None:
        await self.outbox.ensure_group()
        lease = self.settings.alert_lease_s
        housekeeping = 0.0
        while True:
            now = time.monotonic()
            if now >= housekeeping:
                housekeeping = now + min(lease / 4, 5.0)
                await self.outbox.move_due(self.clock())
                for taken in await self.outbox.take_over(self.consumer, lease, IN_FLIGHT):
                    self._start(taken)
                # Renew the hold on deliveries still under way (a slow one must not look like a dead process's).
                await self.outbox.keep(self.consumer, list(self._in_flight))
                await self.outbox.forget_consumers(idle_s=max(3600.0, 10 * lease))
            room = IN_FLIGHT - len(self._in_flight)
            if room <= 0:
                await asyncio.wait(list(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED)
                continue
            block = int(min(1000, max(50, (housekeeping - time.monotonic()) * 1000)))
            for taken in await self.outbox.take(self.consumer, room, block):
                self._start(taken)

    def _start(self, taken: Taken) -> None:
        if taken.id in self._in_flight:
            return
        task = asyncio.create_task(self._send_safely(taken), name=f"notify-send-{taken.id}")
        self._in_flight[taken.id] = task
        task.add_done_callback(lambda _: self._in_flight.pop(taken.id, None))

    async def _send_safely(self, taken: Taken) -> None:
        """`_send`, with the store failing underneath: the entry stays pending under this process's name, and is
        taken over (by this process or another) once its lease runs out, so nothing is lost; a copy may go out."""
        try:
            await self._send(taken)
        except (RedisError, OSError) as exc:
            self.errors += 1
            log.warning(
                "alerts: the outcome of %s could not be recorded (Redis: %s); it is sent again later", taken.id, exc
            )

    async def _send(self, taken: Taken) -> None:
        entry = taken.entry
        if entry is None:
            await self.outbox.drop(taken.id)
            return
        target = self.targets.get(entry.t)
        if target is None:
            # Configured no more (or another process's configuration): a dead letter that says so.
            await self._failed(taken.id, entry, f"no target {entry.t!r} in this process's settings", 0, 0.0, False)
            return
        assert self._http is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.alert_timeout_s):
                status = await target.send(self._http, entry.n)
        except DeliveryError as exc:
            await self._failed(taken.id, entry, str(exc), exc.status, _ms(started), exc.retry)
            return
        except TimeoutError:
            await self._failed(taken.id, entry, "timed out", 0, _ms(started), True)
            return
        await self.outbox.sent(taken.id, entry, self.clock(), status, _ms(started))
        self.counts[(entry.t, "sent")] += 1
        self._changed.set()

    async def _failed(self, entry_id: str, entry: Entry, error: str, status: int, ms: float, retry: bool) -> None:
        attempt = entry.a + 1
        now = self.clock()
        due = None
        if retry and attempt < self.settings.alert_attempts:
            due = now + backoff(attempt, self.settings.alert_retry_s, self.settings.alert_retry_max_s, self.rand())
        log.warning(
            "alert %s to %s: attempt %d failed: %s%s", entry.n.id, entry.t, attempt, error,
            f"; next in {due - now:.1f} s" if due is not None else "; given up (dead letter)",
        )  # fmt: skip
        await self.outbox.failed(entry_id, entry, now, error, status, ms, due)
        self.counts[(entry.t, "retry" if due is not None else "dead")] += 1
        self._changed.set()


async def _store(call: Awaitable[T]) -> T:
    """An outbox call for an operator's action: the store down is `unavailable`, never an internal error."""
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise CommandError(f"jobpulse's store is not reachable: {exc}", "unavailable") from None


def _rule_of(alert: str) -> str:
    return alert.partition(":")[0]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
