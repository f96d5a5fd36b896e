"""Runs operator commands from the websocket: checks, two phases, once-only ids, the job system, the audit log.

Shell layer. For each `cmd` frame (docs/protocol.md section 4): rate limit,
once-only by id, strict arguments (`server.actions`), role and source checks,
then either a preview counted from the fold's state with a confirm token, or
the section-2 commands sent through the connector and their replies gathered.
Every outcome becomes one `ack` and one audit entry, and the audit entry is
folded into the live `activity` widget.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aredis

from server import actions
from server.actions import Args, BadArgs, Spec
from server.audit import AuditLog
from server.auth import Principal, sign, unsign
from server.protocol import Cmd
from server.settings import Settings
from server.streams.connector import CommandError, Connector, WireCommand
from server.streams.core.events import AuditNoted
from server.streams.core.state import State

log = logging.getLogger("jobpulse.commands")

RATE_WINDOW_S = 60.0
MAX_RATE_USERS = 10_000  # users tracked by the rate limiter (proxy mode can bring many names)
MAX_BATCH_JOBS = 1_000


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
        connector: Connector,
        store: aredis.Redis,
        audit: AuditLog,
        secret: bytes,
        feed: Callable[[AuditNoted], Awaitable[None]],
        session_alive: Callable[[str], Awaitable[bool | None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.state = state
        self.connector = connector
        self.store = store
        self.audit = audit
        self.secret = secret
        self.feed = feed
        self.session_alive = session_alive  # Sessions.alive: None when the store cannot say
        self.clock = clock
        self._ids = f"{settings.prefix}:jp:cmd:"
        self._used = f"{settings.prefix}:jp:confirm-used:"
        self._rates: OrderedDict[str, deque[float]] = OrderedDict()
        self._rate_audited: dict[str, float] = {}
        self.counters: dict[tuple[str, str], int] = {}  # (action, outcome) -> commands
        self._offers: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, dict[str, Any]]] = {}

    # -- what a user may do (the welcome frame) ---------------------------------------------------

    def actions_for(self, principal: Principal) -> dict[str, dict[str, Any]]:
        """What the welcome frame offers `principal`: the same for everyone of one role, so worked out once per role
        (every page connect asks; a reconnect storm asks a thousand times at once)."""
        key = (principal.role, tuple(sorted(self.connector.unsupported.items())))
        cached = self._offers.get(key)
        if cached is None:
            cached = self._offers[key] = self._actions_for(principal)
        return cached

    def _actions_for(self, principal: Principal) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in actions.SPECS:
            decision = actions.decide(principal, name)
            missing = self.connector.unsupported.get(name)
            if missing:
                out[name] = {"ok": False, "reason": f"the {self.connector.name} source cannot do this: {missing}"}
            elif not decision.allowed:
                out[name] = {"ok": False, "reason": decision.reason, "two_phase": decision.two_phase}
            else:
                out[name] = {"ok": True, "two_phase": decision.two_phase}
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
        try:
            spec, args, two_phase = self._check(principal, cmd)
            outcome = await self._run(principal, cmd, spec, args, two_phase, now)
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
        ack["audit"] = await self._audit(principal, cmd, args, ack, count, started, address)
        ack["ms"] = round((time.perf_counter() - started) * 1000, 1)
        try:
            await self.store.set(memory_key, json.dumps(ack), ex=int(self.settings.command_memory_s))
        except (aredis.RedisError, OSError) as exc:
            log.warning("could not remember command %s: %s", cmd.id, exc)
        return ack

    def _check(self, principal: Principal, cmd: Cmd) -> tuple[Spec, Args, bool]:
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
        missing = self.connector.unsupported.get(cmd.action)
        if missing:
            raise Refused("unavailable", f"the {self.connector.name} source cannot do {cmd.action}: {missing}")
        if isinstance(args, actions.BatchArgs):
            channels = len(self.state.channels) if args.channels == "*" else len(args.channels)
            if channels * args.count > MAX_BATCH_JOBS:
                raise Refused("bad_args", f"count: at most {MAX_BATCH_JOBS} jobs a batch ({channels} channels)")
        return spec, args, decision.two_phase

    async def _run(
        self, principal: Principal, cmd: Cmd, spec: Spec, args: Args, two_phase: bool, now: float
    ) -> Outcome:
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
        return await self._execute(cmd, spec, args)

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

    async def _execute(self, cmd: Cmd, spec: Spec, args: Args) -> Outcome:
        perform = getattr(self.connector, "perform", None)
        if perform is not None:
            # A source whose actions are not section-2 commands (Celery) does them itself.
            try:
                done = await perform(cmd.action, args)
            except CommandError as exc:
                raise Refused("failed", str(exc)) from None
            return Outcome("done", done.result, done.message, done.count)
        base = f"jp-{secrets.token_hex(6)}"
        wire_args = actions.wire_args(args)
        wait_s = self.settings.command_timeout_s
        if isinstance(args, actions.RunnersArgs | actions.RestartArgs):
            return await self._to_runners(cmd.action, spec, args, base, wire_args, wait_s)
        if isinstance(args, actions.LogsArgs):
            replies = await self._send([WireCommand(base, "logs", f"runner:{args.runner}", wire_args)], wait_s)
            reply = self._one(replies[0], f"runner {args.runner}")
            lines = (reply.get("result") or {}).get("lines", [])
            return Outcome("done", {"runner": args.runner, "lines": lines}, f"{len(lines)} log lines of {args.runner}",
                           len(lines))  # fmt: skip
        if isinstance(args, actions.BroadcastArgs):
            live = actions.live_runners(self.state)
            if not live:
                raise Refused("no_reply", "no live runner to broadcast to")
            heard = (await self._send([WireCommand(base, "broadcast", "*", wire_args, expect=len(live))], wait_s))[0]
            ok = [r for r in heard if r["ok"]]
            if not ok:
                raise Refused("no_reply" if not heard else "failed", _no_answer(heard, "no runner"))
            return Outcome(
                "done",
                {"count": len(live), "replies": heard, "missing": sorted(set(live) - {r["src"] for r in heard})},
                f"Broadcast reached {len(ok)} of {len(live)} live runners",
                len(ok),
            )
        if isinstance(args, actions.BatchArgs):
            return await self._batch(args, base, wait_s)
        if isinstance(args, actions.CleanupArgs):
            dead = actions.dead_runners(self.state, args.older_than, self.clock())
            if not dead:
                return Outcome("done", {"removed": 0, "requeued": 0}, "No dead runners to clean up", 0)
            wire_args = {"runners": dead[:1000], "older_than": args.older_than}
        replies = await self._send([WireCommand(base, spec.wire, "system", wire_args)], wait_s)
        reply = self._one(replies[0], "the job system")
        result = reply.get("result") or {}
        count = _count_of(result)
        return Outcome("done", result, _done_message(cmd.action, args, result), count)

    async def _to_runners(
        self, action: str, spec: Spec, args: actions.RunnersArgs | actions.RestartArgs, base: str,
        wire_args: dict[str, Any], wait_s: float,
    ) -> Outcome:  # fmt: skip
        ids = actions.addressed(self.state, args)
        if not ids:
            raise Refused("no_reply", "no live runner to address")
        if args.runners == "*":
            replies = (await self._send([WireCommand(base, spec.wire, "*", wire_args, expect=len(ids))], wait_s))[0]
        else:
            commands = [WireCommand(f"{base}.{i}", spec.wire, f"runner:{rid}", wire_args) for i, rid in enumerate(ids)]
            replies = [r for rs in await self._send(commands, wait_s) for r in rs]
        answered = {r["src"] for r in replies}
        missing = [rid for rid in ids if rid not in answered]
        ok = [r for r in replies if r["ok"]]
        if not ok:
            raise Refused("no_reply" if not replies else "failed", _no_answer(replies, ", ".join(ids[:5])))
        verb = action.split(".", 1)[1]
        if len(ids) == 1:
            result = ok[0].get("result") or {}
            extra = f" ({result['active']} jobs to finish)" if verb == "drain" and result.get("active") else ""
            message = f"{_VERBS.get(verb, verb)} {ids[0]}{extra}"
        else:
            message = f"{_VERBS.get(verb, verb)} {len(ok)} of {len(ids)} runners"
            if missing:
                message += f"; {len(missing)} did not answer"
        return Outcome("done", {"count": len(ids), "replies": replies, "missing": missing}, message, len(ok))

    async def _batch(self, args: actions.BatchArgs, base: str, wait_s: float) -> Outcome:
        channels = sorted(self.state.channels) if args.channels == "*" else list(args.channels)
        if not channels:
            raise Refused("not_found", "no channels known yet")
        commands = [
            WireCommand(f"{base}.{c}.{i}", "run", "system",
                        {"fn": args.fn, "channel": channel, "payload": {"test_batch": base, "n": i}, "cid": base})
            for c, channel in enumerate(channels)
            for i in range(args.count)
        ]  # fmt: skip
        replies = [r for rs in await self._send(commands, wait_s) for r in rs]
        ok = sum(1 for r in replies if r["ok"])
        if not ok:
            raise Refused("no_reply" if not replies else "failed", _no_answer(replies, "the job system"))
        return Outcome(
            "done",
            {"queued": ok, "asked": len(commands), "cid": base, "channels": channels},
            f"Queued {ok} of {len(commands)} test jobs on {len(channels)} channels (correlation id {base})",
            ok,
        )

    async def _send(self, commands: list[WireCommand], wait_s: float) -> list[list[dict[str, Any]]]:
        try:
            return await self.connector.send(commands, wait_s)
        except CommandError as exc:
            raise Refused("unavailable", str(exc)) from None

    @staticmethod
    def _one(replies: list[dict[str, Any]], who: str) -> dict[str, Any]:
        if not replies:
            raise Refused("no_reply", f"{who} did not answer")
        reply = replies[0]
        if not reply["ok"]:
            error = str(reply.get("error") or "failed")
            raise Refused("not_found" if "not found" in error or "unknown" in error else "failed", error)
        return reply

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
            )
        )  # fmt: skip
        return entry_id


_VERBS = {
    "ping": "Pinged",
    "drain": "Draining",
    "undrain": "Taking jobs again:",
    "restart": "Restarting",
    "shutdown": "Shutting down",
}


def _count_of(result: dict[str, Any]) -> int | None:
    for key in ("purged", "cleared", "removed", "queued", "count"):
        value = result.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _done_message(action: str, args: Args, result: dict[str, Any]) -> str:
    if isinstance(args, actions.ChannelArgs):
        if action == "channel.purge":
            return f"Purged {result.get('purged', 0)} queued jobs of {args.channel}"
        return f"{args.channel} is {'paused' if result.get('paused') else 'taking jobs again'}"
    if isinstance(args, actions.ClearStuckArgs):
        where = args.channel or "every channel"
        return (f"Cleared {result.get('cleared', 0)} stuck jobs of {where}: {result.get('requeued', 0)} requeued, "
                f"{result.get('expired', 0)} expired")  # fmt: skip
    if isinstance(args, actions.CleanupArgs):
        return f"Removed {result.get('removed', 0)} dead runners; {result.get('requeued', 0)} of their jobs requeued"
    if isinstance(args, actions.RunArgs):
        return f"Queued {result.get('job', 'a job')} ({args.fn} on {args.channel})"
    if isinstance(args, actions.JobArgs):
        if action == "job.retry":
            return f"Retrying {args.job} (attempt {result.get('attempt', '?')})"
        if action == "job.run_now":
            return f"{args.job} queued now instead of at its scheduled time"
        return f"Canceled {args.job} (it was {result.get('was', '?')})"
    return f"{action}: done"


def _no_answer(replies: list[dict[str, Any]], who: str) -> str:
    if not replies:
        return f"{who} did not answer"
    errors = sorted({str(r.get("error")) for r in replies if not r["ok"]})
    return "; ".join(errors)[:300]


def _raw_args(args: dict[str, Any]) -> str:
    try:
        text = msgspec.json.encode(args).decode()
    except (TypeError, msgspec.EncodeError):
        text = "(unencodable)"
    return text[:500]
