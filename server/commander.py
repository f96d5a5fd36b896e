"""Runs operator commands from the websocket: checks, two phases, once-only ids, the job system, the audit log.

Shell layer. For each `cmd` frame (docs/protocol.md section 4): rate limit,
once-only by id, strict arguments (`server.actions`), role and source checks,
then either a preview counted from the fold's state with a confirm token, or
the section-2 commands sent through the connector and their replies gathered.
Every outcome becomes one `ack` and one audit entry, and the audit entry is
folded into the live `activity` widget.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aredis

from server import actions, routing
from server.actions import Args, BadArgs, Performed, Spec
from server.audit import AuditLog
from server.auth import Principal, sign, unsign
from server.protocol import Cmd
from server.settings import Settings
from server.streams.connector import CommandError, Connector
from server.streams.core.events import AuditNoted
from server.streams.core.state import State

# One of jobpulse's own actions: (its arguments, who asks, now) -> what it did; raises CommandError.
LocalAction = Callable[[Args, Principal, float], Awaitable[Performed]]

log = logging.getLogger("jobpulse.commands")

RATE_WINDOW_S = 60.0
MAX_RATE_USERS = 10_000  # users tracked by the rate limiter (proxy mode can bring many names)
MAX_BATCH_JOBS = 1_000
MAX_GROUP_RETRY = 1_000  # jobs one `group.retry` retries at most (the oldest first; run it again for more)
GROUP_RETRY_CONCURRENCY = 16  # job.retry calls in flight at once for a group retry


UNKNOWN_ACTION = "(unknown action)"  # what the audit log says of an action jobpulse does not have
SESSION_ENDED = "this session has ended (signed out or revoked): sign in again"
SESSION_UNKNOWN = "the session store cannot be reached, so this session cannot be checked: no commands until it can"


class Refused(Exception):
    """A command refused before or while it ran; `code` is a docs/protocol.md 4.3 code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Outcome:
    phase: str
    result: dict[str, Any]
    message: str
    count: int | None


class Commander:
    def __init__(
        self,
        settings: Settings,
        state: State,
        connectors: dict[str, Connector],
        store: aredis.Redis,
        audit: AuditLog,
        secret: bytes,
        feed: Callable[[AuditNoted], Awaitable[None]],
        session_alive: Callable[[str], Awaitable[bool | None]],
        clock: Callable[[], float] = time.time,
        local: Mapping[str, LocalAction] | None = None,
        local_unavailable: str = "",
    ) -> None:
        self.settings = settings
        self.state = state
        self.connectors = connectors  # label -> connector, in the configured order
        self.store = store
        self.audit = audit
        self.secret = secret
        self.feed = feed
        self.session_alive = session_alive  # Sessions.alive: None when the store cannot say
        self.clock = clock
        # jobpulse's own actions (alerts): name -> what does it; without one, offered to nobody, saying why.
        self.local = dict(local or {})
        self.local_unavailable = local_unavailable or "not available in this process"
        self._ids = f"{settings.prefix}:jp:cmd:"
        self._used = f"{settings.prefix}:jp:confirm-used:"
        self._rates: OrderedDict[str, deque[float]] = OrderedDict()
        self._rate_audited: dict[str, float] = {}
        self.counters: dict[tuple[str, str], int] = {}  # (action, outcome) -> commands
        self._offers: dict[tuple[str, tuple[tuple[str, str, str], ...]], dict[str, dict[str, Any]]] = {}

    # -- what a user may do (the welcome frame) ---------------------------------------------------

    def actions_for(self, principal: Principal) -> dict[str, dict[str, Any]]:
        """What the welcome frame offers `principal`: the same for everyone of one role, so worked out once per role
        (every page connect asks; a reconnect storm asks a thousand times at once)."""
        key = (principal.role, tuple(sorted((label, a, why) for label, c in self.connectors.items()
                                             for a, why in c.unsupported.items())))  # fmt: skip
        cached = self._offers.get(key)
        if cached is None:
            cached = self._offers[key] = self._actions_for(principal)
        return cached

    def _actions_for(self, principal: Principal) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, spec in actions.SPECS.items():
            decision = actions.decide(principal, name)
            if spec.local and name not in self.local:
                out[name] = {"ok": False, "reason": self.local_unavailable}
                continue
            missing = self._unable(name, list(self.connectors)) if not spec.local else {}
            if len(missing) == len(self.connectors):  # with several sources, on offer while one of them can
                out[name] = {"ok": False, "reason": "; ".join(missing.values())}
            elif not decision.allowed:
                out[name] = {"ok": False, "reason": decision.reason, "two_phase": decision.two_phase}
            else:
                out[name] = {"ok": True, "two_phase": decision.two_phase}
                if missing:  # several sources, some of which cannot: a page disables it on their rows
                    out[name]["unavailable"] = missing
        return out

    # -- one command ------------------------------------------------------------------------------

    async def handle(self, principal: Principal, cmd: Cmd, address: str) -> dict[str, Any]:
        """The `ack` for `cmd` (without its "type"); never raises for anything the client sent."""
        started = time.perf_counter()
        now = self.clock()
        ack: dict[str, Any]
        if not self._within_rate(principal.name, now):
            ack = self._refusal(cmd, "rate", f"more than {self.settings.command_rate} commands a minute; slow down")
            # Audit the first refusal of a burst, not every one: a flood must not flood the log too.
            if now - self._rate_audited.get(principal.name, 0.0) >= RATE_WINDOW_S:
                self._rate_audited[principal.name] = now
                await self._audit(principal, cmd, None, ack, None, started, address)
            self._count(cmd.action, "rate")
            return ack
        if principal.session is not None and (alive := await self.session_alive(principal.session)) is not True:
            # Fail closed: a session signed out or revoked in another process, or one this process only recalls
            # while the store is down, may watch the pages but act on nothing until the store can vouch for it.
            ack = self._refusal(cmd, "session", SESSION_ENDED if alive is False else SESSION_UNKNOWN)
            await self._audit(principal, cmd, None, ack, None, started, address)
            self._count(cmd.action, "session")
            return ack
        memory_key = f"{self._ids}{principal.name}:{cmd.id}"
        try:
            claimed = await self.store.set(memory_key, "running", nx=True, ex=int(self.settings.command_memory_s))
            if not claimed:
                earlier = await self.store.get(memory_key)
                if earlier is None or earlier == b"running":
                    return self._refusal(cmd, "busy", f"command {cmd.id} is still running")
                self._count(cmd.action, "repeated")
                repeated: dict[str, Any] = json.loads(earlier)
                return repeated
        except (aredis.RedisError, OSError) as exc:
            return self._refusal(cmd, "unavailable", f"jobpulse's store is not reachable: {exc}")
        args: Args | None = None
        count: int | None = None
        routes: dict[str, Args] = {}
        try:
            spec, args, two_phase, routes = self._check(principal, cmd)
            outcome = await self._run(principal, cmd, spec, args, two_phase, now, routes)
            count = outcome.count
            ack = {
                "id": cmd.id, "ok": True, "phase": outcome.phase, "action": cmd.action,
                "result": outcome.result, "message": outcome.message,
            }  # fmt: skip
            self._count(cmd.action, "done" if outcome.phase == "done" else "previewed")
        except Refused as exc:
            ack = self._refusal(cmd, exc.code, exc.message)
            self._count(cmd.action, exc.code)
        except Exception as exc:  # a bug must not cost the socket; the operator sees it failed
            log.exception("command %s (%s) failed", cmd.id, cmd.action)
            ack = self._refusal(cmd, "failed", f"internal error: {type(exc).__name__}")
            self._count(cmd.action, "error")
        ack["audit"] = await self._audit(principal, cmd, args, ack, count, started, address, ",".join(routes))
        ack["ms"] = round((time.perf_counter() - started) * 1000, 1)
        try:
            await self.store.set(memory_key, json.dumps(ack), ex=int(self.settings.command_memory_s))
        except (aredis.RedisError, OSError) as exc:
            log.warning("could not remember command %s: %s", cmd.id, exc)
        return ack

    def _check(self, principal: Principal, cmd: Cmd) -> tuple[Spec, Args, bool, dict[str, Args]]:
        spec = actions.SPECS.get(cmd.action)
        if spec is None:
            raise Refused("unknown_action", f"unknown action {cmd.action[:64]!r}")
        try:
            args = actions.parse_args(cmd.action, cmd.args, self.settings.run_payload_max)
        except BadArgs as exc:
            raise Refused("bad_args", str(exc)) from None
        decision = actions.decide(principal, cmd.action, args)
        if not decision.allowed:
            raise Refused("forbidden", f"{cmd.action}: {decision.reason}")
        if spec.local:
            if cmd.action not in self.local:
                raise Refused("unavailable", f"{cmd.action}: {self.local_unavailable}")
            return spec, args, decision.two_phase, {}
        if isinstance(args, actions.GroupArgs):
            return spec, args, decision.two_phase, {}  # each job goes to its own source (_retry_group)
        routes = self._route(cmd.action, args)
        if isinstance(args, actions.BatchArgs):
            channels = len(self.state.channels) if args.channels == "*" else len(args.channels)
            if channels * args.count > MAX_BATCH_JOBS:
                raise Refused("bad_args", f"count: at most {MAX_BATCH_JOBS} jobs a batch ({channels} channels)")
        return spec, args, decision.two_phase, routes

    def _route(self, action: str, args: Args) -> dict[str, Args]:
        """The sources `action` goes to (label -> the arguments in its own ids), those that cannot do it left out.

        Raises:
            Refused: `not_found` for a target no source owns; `unavailable` when no owner can do the action.
        """
        try:
            routes = routing.route(args, self.connectors, self.state.limits.several)
        except routing.NoOwner as exc:
            raise Refused("not_found", str(exc)) from None
        missing = self._unable(action, list(routes))
        if missing and len(missing) == len(routes):
            raise Refused("unavailable", "; ".join(missing.values()))
        return {label: own for label, own in routes.items() if label not in missing}

    def _unable(self, action: str, labels: list[str]) -> dict[str, str]:
        """Of the sources `labels`, those that cannot do `action`, each with why."""
        out = {}
        for label in labels:
            connector = self.connectors[label]
            why = connector.unsupported.get(action)
            if why:
                name = connector.name if len(self.connectors) < 2 else f"{label} ({connector.name})"
                out[label] = f"the {name} source cannot do {action}: {why}"
        return out

    async def _run(
        self, principal: Principal, cmd: Cmd, spec: Spec, args: Args, two_phase: bool, now: float,
        routes: dict[str, Args],
    ) -> Outcome:  # fmt: skip
        canonical = actions.canonical(args)
        if cmd.phase == "preview":
            found = actions.preview(self.state, cmd.action, args, now)
            expires = now + self.settings.confirm_ttl_s
            token = self._confirm_token(principal, cmd.action, canonical, expires)
            return Outcome(
                "preview",
                {"count": found.count, "sample": found.sample, "confirm": token, "expires": expires},
                found.message,
                found.count,
            )
        if two_phase:
            if not cmd.confirm:
                raise Refused("confirm_required", f"{cmd.action} is two-phase: send phase 'preview' first")
            await self._consume_confirm(principal, cmd.action, canonical, cmd.confirm, now)
        if isinstance(args, actions.GroupArgs) and cmd.action == "group.retry":
            return await self._retry_group(args.group)
        if spec.local:
            try:
                done = await self.local[cmd.action](args, principal, now)
            except CommandError as exc:
                raise Refused(exc.code, str(exc)) from None
            return Outcome("done", done.result, done.message, done.count)
        return await self._execute(cmd.action, routes)

    # -- confirm tokens ---------------------------------------------------------------------------

    def _confirm_token(self, principal: Principal, action: str, canonical: str, expires: float) -> str:
        body = {
            "u": principal.name,
            "a": action,
            "h": hashlib.sha256(canonical.encode()).hexdigest()[:32],
            "e": round(expires, 3),
            "n": secrets.token_hex(8),
        }
        raw = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")
        return sign(self.secret, raw)

    async def _consume_confirm(self, principal: Principal, action: str, canonical: str, token: str, now: float) -> None:
        raw = unsign(self.secret, token)
        if raw is None:
            raise Refused("confirm_invalid", "confirm token: not one this server issued")
        try:
            body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            user, act, digest, expires, nonce = body["u"], body["a"], body["h"], float(body["e"]), str(body["n"])
        except (ValueError, KeyError, TypeError):
            raise Refused("confirm_invalid", "confirm token: unreadable") from None
        if user != principal.name or act != action:
            raise Refused("confirm_invalid", "confirm token: issued for another user or action")
        if digest != hashlib.sha256(canonical.encode()).hexdigest()[:32]:
            raise Refused("confirm_invalid", "confirm token: issued for other arguments; preview again")
        if now > expires:
            raise Refused("confirm_invalid", "confirm token: expired; preview again")
        try:
            fresh = await self.store.set(self._used + nonce, 1, nx=True, ex=int(self.settings.confirm_ttl_s) + 60)
        except (aredis.RedisError, OSError) as exc:
            raise Refused("unavailable", f"jobpulse's store is not reachable: {exc}") from None
        if not fresh:
            raise Refused("confirm_invalid", "confirm token: already used; preview again")

    # -- doing it ---------------------------------------------------------------------------------

    async def _execute(self, action: str, routes: dict[str, Args]) -> Outcome:
        """Have each owning source do its part; one source's answer is the outcome, several are put together."""
        several = self.state.limits.several
        labels = list(routes)
        done = await asyncio.gather(*(self._perform(action, label, routes[label]) for label in labels))
        if len(labels) == 1:
            result = done[0]
            if isinstance(result, Refused):
                raise result
            body = routing.label_result(result.result, labels[0]) if several else result.result
            return Outcome("done", body, result.message, result.count)
        parts: dict[str, Any] = {}
        messages, errors, counts = [], [], []
        for label, result in zip(labels, done, strict=True):
            if isinstance(result, Refused):
                parts[label] = {"ok": False, "error": {"code": result.code, "message": result.message}}
                errors.append(f"{label}: {result.message}")
                continue
            parts[label] = {"ok": True, "result": routing.label_result(result.result, label) if several else
                            result.result, "message": result.message}  # fmt: skip
            messages.append(f"{label}: {result.message}")
            if result.count is not None:
                counts.append(result.count)
        if not messages:
            codes = {r.code for r in done if isinstance(r, Refused)}
            raise Refused(codes.pop() if len(codes) == 1 else "failed", "; ".join(errors)[:500])
        count = sum(counts) if counts else None
        return Outcome("done", {"count": count, "sources": parts}, "; ".join(messages + errors), count)

    async def _retry_group(self, group: str) -> Outcome:
        """`group.retry`: `job.retry` for each failed job of the group jobpulse holds now, each at its own source.

        One job's refusal (its source cannot retry, it is no longer failed there) does not stop the others; the
        ack counts both and names the first refusals.
        """
        ids = actions.group_failed_jobs(self.state, group)[:MAX_GROUP_RETRY]
        if not ids:
            raise Refused("not_found", f"no failed job of group {group} is held (retried already, or evicted)")
        limit = asyncio.Semaphore(GROUP_RETRY_CONCURRENCY)

        async def one(job_id: str) -> Performed | Refused:
            async with limit:
                args = actions.JobArgs(job=job_id)
                try:
                    routes = self._route("job.retry", args)
                except Refused as exc:
                    return exc
                label, own = next(iter(routes.items()))
                return await self._perform("job.retry", label, own)

        done = await asyncio.gather(*(one(j) for j in ids))
        retried = [j for j, r in zip(ids, done, strict=True) if not isinstance(r, Refused)]
        refused = [(j, r) for j, r in zip(ids, done, strict=True) if isinstance(r, Refused)]
        if not retried:
            first = refused[0][1]
            raise Refused(first.code, f"none of {len(ids)} jobs could be retried: {first.message}"[:500])
        message = f"Retried {len(retried):,} failed job{'s' if len(retried) != 1 else ''} of the group"
        if refused:
            message += f"; {len(refused):,} could not be: {refused[0][1].message}"[:300]
        result = {
            "count": len(retried),
            "refused": len(refused),
            "jobs": retried[: actions.SAMPLE],
            "errors": [{"job": j, "code": r.code, "message": r.message[:200]} for j, r in refused[:5]],
        }
        return Outcome("done", result, message, len(retried))

    async def _perform(self, action: str, label: str, args: Args) -> Performed | Refused:
        """Source `label` does `action` with `args` (its own ids); a refusal is returned, not raised, so the
        other sources of the same command still answer."""
        try:
            return await self.connectors[label].perform(action, args, routing.known(self.state, args, label))
        except CommandError as exc:
            return Refused(exc.code, str(exc))

    # -- bookkeeping ------------------------------------------------------------------------------

    def _within_rate(self, user: str, now: float) -> bool:
        times = self._rates.get(user)
        if times is None:
            times = self._rates[user] = deque()
            while len(self._rates) > MAX_RATE_USERS:
                self._rates.popitem(last=False)
        else:
            self._rates.move_to_end(user)
        while times and times[0] <= now - RATE_WINDOW_S:
            times.popleft()
        if len(times) >= self.settings.command_rate:
            return False
        times.append(now)
        return True

    def _refusal(self, cmd: Cmd, code: str, message: str) -> dict[str, Any]:
        return {"id": cmd.id, "ok": False, "action": cmd.action, "error": {"code": code, "message": message}}

    def _count(self, action: str, what: str) -> None:
        # Labels in /metrics: only known actions, so hostile frames cannot grow the series without bound.
        key = (action if action in actions.SPECS else "unknown", what)
        self.counters[key] = self.counters.get(key, 0) + 1

    async def _audit(
        self,
        principal: Principal,
        cmd: Cmd,
        args: Args | None,
        ack: dict[str, Any],
        count: int | None,
        started: float,
        address: str,
        sources: str = "",
    ) -> str | None:
        ok = bool(ack.get("ok"))
        error = ack.get("error") or {}
        known = cmd.action in actions.SPECS
        if not known:
            # Its action and arguments are the sender's own text: every operator's activity widget shows audit
            # entries, so an unknown action is recorded under a fixed label, without what it said.
            error = {"code": error.get("code", "unknown_action"), "message": UNKNOWN_ACTION}
            ack = {**ack, "message": UNKNOWN_ACTION}
        entry = {
            "ts": self.clock(),
            "user": principal.name,
            "role": principal.role,
            "auth": principal.auth,
            "action": cmd.action[:64] if known else UNKNOWN_ACTION,
            "phase": cmd.phase,
            "target": actions.target(args) if args is not None else "",
            "args": actions.audit_args(args) if args is not None else _raw_args(cmd.args) if known else "",
            "ok": ok,
            "result": ack.get("phase", "") if ok else error.get("code", "failed"),
            "count": count,
            "error": error.get("message", ""),
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "cmd": cmd.id,
            "addr": address,
            "source": sources,
        }
        try:
            entry_id = await self.audit.append(entry)
        except (aredis.RedisError, OSError) as exc:
            # The command itself is done (or refused); say loudly that its audit entry is missing.
            log.error("AUDIT ENTRY LOST for command %s (%s by %s): %s", cmd.id, cmd.action, principal.name, exc)
            self._count(cmd.action, "audit_lost")
            return None
        await self.feed(
            AuditNoted(
                id=entry_id, at=entry["ts"], user=principal.name, role=principal.role, action=entry["action"],
                target=entry["target"], ok=ok, result=entry["result"], count=count if isinstance(count, int) else None,
                message=str(ack.get("message") or entry["error"])[:300], error=entry["error"][:300],
                source=sources,
            )
        )  # fmt: skip
        return entry_id


def _raw_args(args: dict[str, Any]) -> str:
    try:
        text = msgspec.json.encode(args).decode()
    except (TypeError, msgspec.EncodeError):
        text = "(unencodable)"
    return text[:500]
