"""The native source's actions: each operator action as section-2 commands on `P:control`, and its replies read.

Shell layer (it awaits the connector's `send`). The commander has checked the
command (arguments, role, confirm token) and routed it here with this
source's own ids; `known` is what the fold knows that the action needs (live
runners, channels, dead runners). Runner actions go to each runner
(`runner:<id>`) or to all (`*`); the rest go to the job system (`system`),
whose one reply is the result (docs/protocol.md section 2).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from server import actions
from server.actions import Args, Performed
from server.routing import Known
from server.streams.connector import CommandError, WireCommand

Send = Callable[[list[WireCommand], float], Awaitable[list[list[dict[str, Any]]]]]

VERBS = {
    "ping": "Pinged",
    "drain": "Draining",
    "undrain": "Taking jobs again:",
    "restart": "Restarting",
    "shutdown": "Shutting down",
}


class NativeActions:
    """Does operator actions by sending section-2 commands through `send` and waiting `wait_s()` for replies."""

    def __init__(self, send: Send, wait_s: Callable[[], float]) -> None:
        self._send = send
        self.wait_s = wait_s

    async def perform(self, action: str, args: Args, known: Known) -> Performed:
        spec = actions.SPECS[action]
        base = f"jp-{secrets.token_hex(6)}"
        wire_args = actions.wire_args(args)
        wait_s = self.wait_s()
        if isinstance(args, actions.RunnersArgs | actions.RestartArgs):
            return await self._to_runners(action, spec.wire, args, known, base, wire_args, wait_s)
        if isinstance(args, actions.LogsArgs):
            replies = await self._send([WireCommand(base, "logs", f"runner:{args.runner}", wire_args)], wait_s)
            reply = _one(replies[0], f"runner {args.runner}")
            lines = (reply.get("result") or {}).get("lines", [])
            return Performed({"runner": args.runner, "lines": lines}, f"{len(lines)} log lines of {args.runner}",
                             len(lines))  # fmt: skip
        if isinstance(args, actions.BroadcastArgs):
            if not known.live:
                raise CommandError("no live runner to broadcast to", "no_reply")
            expect = len(known.live)
            heard = (await self._send([WireCommand(base, "broadcast", "*", wire_args, expect=expect)], wait_s))[0]
            ok = [r for r in heard if r["ok"]]
            if not ok:
                raise CommandError(_no_answer(heard, "no runner"), "no_reply" if not heard else "failed")
            return Performed(
                {"count": expect, "replies": heard, "missing": sorted(set(known.live) - {r["src"] for r in heard})},
                f"Broadcast reached {len(ok)} of {expect} live runners",
                len(ok),
            )
        if isinstance(args, actions.BatchArgs):
            return await self._batch(args, known, base, wait_s)
        if isinstance(args, actions.CleanupArgs):
            if not known.dead:
                return Performed({"removed": 0, "requeued": 0}, "No dead runners to clean up", 0)
            wire_args = {"runners": known.dead[:1000], "older_than": args.older_than}
        replies = await self._send([WireCommand(base, spec.wire, "system", wire_args)], wait_s)
        result = _one(replies[0], "the job system").get("result") or {}
        return Performed(result, _done_message(action, args, result), _count_of(result))

    async def _to_runners(
        self, action: str, wire: str, args: actions.RunnersArgs | actions.RestartArgs, known: Known, base: str,
        wire_args: dict[str, Any], wait_s: float,
    ) -> Performed:  # fmt: skip
        ids = actions.addressed(known.live, args)
        if not ids:
            raise CommandError("no live runner to address", "no_reply")
        if args.runners == "*":
            replies = (await self._send([WireCommand(base, wire, "*", wire_args, expect=len(ids))], wait_s))[0]
        else:
            commands = [WireCommand(f"{base}.{i}", wire, f"runner:{rid}", wire_args) for i, rid in enumerate(ids)]
            replies = [r for rs in await self._send(commands, wait_s) for r in rs]
        answered = {r["src"] for r in replies}
        missing = [rid for rid in ids if rid not in answered]
        ok = [r for r in replies if r["ok"]]
        if not ok:
            raise CommandError(_no_answer(replies, ", ".join(ids[:5])), "no_reply" if not replies else "failed")
        verb = action.split(".", 1)[1]
        if len(ids) == 1:
            result = ok[0].get("result") or {}
            extra = f" ({result['active']} jobs to finish)" if verb == "drain" and result.get("active") else ""
            message = f"{VERBS.get(verb, verb)} {ids[0]}{extra}"
        else:
            message = f"{VERBS.get(verb, verb)} {len(ok)} of {len(ids)} runners"
            if missing:
                message += f"; {len(missing)} did not answer"
        return Performed({"count": len(ids), "replies": replies, "missing": missing}, message, len(ok))

    async def _batch(self, args: actions.BatchArgs, known: Known, base: str, wait_s: float) -> Performed:
        channels = list(known.channels) if args.channels == "*" else list(args.channels)
        if not channels:
            raise CommandError("no channels known yet", "not_found")
        commands = [
            WireCommand(f"{base}.{c}.{i}", "run", "system",
                        {"fn": args.fn, "channel": channel, "payload": {"test_batch": base, "n": i}, "cid": base})
            for c, channel in enumerate(channels)
            for i in range(args.count)
        ]  # fmt: skip
        replies = [r for rs in await self._send(commands, wait_s) for r in rs]
        ok = sum(1 for r in replies if r["ok"])
        if not ok:
            raise CommandError(_no_answer(replies, "the job system"), "no_reply" if not replies else "failed")
        return Performed(
            {"queued": ok, "asked": len(commands), "cid": base, "channels": channels},
            f"Queued {ok} of {len(commands)} test jobs on {len(channels)} channels (correlation id {base})",
            ok,
        )


def _one(replies: list[dict[str, Any]], who: str) -> dict[str, Any]:
    if not replies:
        raise CommandError(f"{who} did not answer", "no_reply")
    reply = replies[0]
    if not reply["ok"]:
        error = str(reply.get("error") or "failed")
        raise CommandError(error, "not_found" if "not found" in error or "unknown" in error else "failed")
    return reply


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
