"""Commands on `P:control`: parsing, argument checks, once-only execution, routing and replies.

A `Receiver` (a runner, or the broker for `system`) acts on a command id once and
remembers its reply in a bounded memory, so a duplicate gets the same reply again.
The `ControlListener` runs each command on the receivers it is addressed to, one
at a time, and queues the replies on the outbox after the events they caused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from server.simulator.backoff import REDIS_ERRORS, Backoff
from server.simulator.context import Context
from server.simulator.keys import CHANNEL_NAME

log = logging.getLogger(__name__)

REPLY_MEMORY = 10_000
"""Command ids each receiver remembers, with their replies."""


class BadArgument(Exception):
    """A command argument is missing or wrong; the message names it."""


@dataclass(frozen=True)
class Command:
    id: str
    action: str
    to: str
    args: Mapping[str, Any]
    reply_to: str
    v: int
    args_ok: bool = True
    """False when `args` was there but not an object."""


def parse_command(raw: bytes | str, default_reply_to: str) -> Command | None:
    """The command in a `P:control` message, or None when it is not one (logged)."""
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        log.warning("ignored a control message that is not JSON")
        return None
    if not isinstance(obj, dict) or obj.get("type") != "command":
        log.warning("ignored a control message that is not a command")
        return None
    cid, action, to = obj.get("id"), obj.get("action"), obj.get("to")
    if not (isinstance(cid, str) and cid and isinstance(action, str) and isinstance(to, str)):
        log.warning("ignored a command without a string id, action and to")
        return None
    args = obj.get("args")
    reply_to = obj.get("reply_to")
    version = obj.get("v", 1)
    return Command(
        id=cid,
        action=action,
        to=to,
        args=args if isinstance(args, dict) else {},
        args_ok=args is None or isinstance(args, dict),
        reply_to=reply_to if isinstance(reply_to, str) and reply_to else default_reply_to,
        v=version if isinstance(version, int) and not isinstance(version, bool) else 0,
    )


def arg_number(args: Mapping[str, Any], name: str, default: float | None, minimum: float = 0.0) -> float:
    """A finite number >= `minimum`; `default` when absent (None: required)."""
    value = args.get(name)
    if value is None:
        if default is None:
            raise BadArgument(f"{name}: required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < minimum:
        raise BadArgument(f"{name}: must be a number >= {minimum:g}")
    return float(value)


def arg_int(args: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    """An integer in [low, high]; `default` when absent (None: required)."""
    value = args.get(name)
    if value is None:
        if default is None:
            raise BadArgument(f"{name}: required")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadArgument(f"{name}: must be an integer from {low} to {high}")
    return value


def arg_str(args: Mapping[str, Any], name: str, *, required: bool, max_len: int = 200) -> str | None:
    """A non-empty string of at most `max_len` characters; None when absent and not required."""
    value = args.get(name)
    if value is None:
        if required:
            raise BadArgument(f"{name}: required")
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise BadArgument(f"{name}: must be a string of 1-{max_len} characters")
    return value


def arg_channel(args: Mapping[str, Any], name: str = "channel", *, required: bool = True) -> str | None:
    """A channel name (1-100 characters of [A-Za-z0-9_.:-])."""
    value = args.get(name)
    if value is None:
        if required:
            raise BadArgument(f"{name}: required")
        return None
    if not isinstance(value, str) or not CHANNEL_NAME.match(value):
        raise BadArgument(f"{name}: must be a channel name (1-100 characters of A-Z a-z 0-9 _ . : -)")
    return value


Handler = Callable[[Command], Awaitable[dict[str, Any]]]


class Receiver:
    """Something commands are addressed to. Subclasses fill `handlers` and set `src`."""

    src: str

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self._replies: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def answer(self, command: Command) -> dict[str, Any]:
        """The reply to `command`: acting on it the first time its id is seen, else the earlier reply."""
        earlier = self._replies.get(command.id)
        if earlier is not None:
            return earlier
        handler = self.handlers.get(command.action)
        transient = False
        if command.v != 1:
            reply = self._reply(command, None, f"v: unsupported protocol version {command.v}")
        elif not command.args_ok:
            reply = self._reply(command, None, "args: must be an object")
        elif handler is None:
            reply = self._reply(command, None, f"unsupported: {command.action}")
        else:
            try:
                reply = self._reply(command, await handler(command), None)
            except BadArgument as exc:
                reply = self._reply(command, None, str(exc))
            except REDIS_ERRORS as exc:
                # Not remembered: the same command sent again may well succeed.
                transient = True
                log.warning("%s: %s %s failed: %s", self.src, command.action, command.id, exc)
                reply = self._reply(command, None, f"redis: {type(exc).__name__}: {exc}")
        if not transient:
            self._replies[command.id] = reply
            while len(self._replies) > REPLY_MEMORY:
                self._replies.popitem(last=False)
        return reply

    def _reply(self, command: Command, result: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "reply",
            "id": command.id,
            "src": self.src,
            "ok": error is None,
            "result": result,
            "error": error,
            "ts": time.time(),
        }


class ControlListener:
    """Subscribes to `P:control` and runs each command on the receivers it is addressed to."""

    def __init__(self, ctx: Context, route: Callable[[str], Sequence[Receiver]]) -> None:
        self._ctx = ctx
        self._route = route
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled; on a Redis error, subscribe again after a backoff."""
        backoff = Backoff()
        while True:
            try:
                async with self._ctx.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._ctx.keys.control)
                    self.subscribed.set()
                    backoff.reset()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self.dispatch(message["data"])
            except REDIS_ERRORS as exc:
                self.subscribed.clear()
                delay = backoff.next()
                log.warning("control subscription lost (%s: %s); again in %.2fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    async def dispatch(self, raw: bytes | str) -> None:
        """Run one control message."""
        command = parse_command(raw, self._ctx.keys.replies)
        if command is None:
            return
        receivers = self._route(command.to)
        if not receivers:
            log.info("command %s (%s) to %s: nobody here answers", command.id, command.action, command.to)
        for receiver in receivers:
            reply = await receiver.answer(command)
            self._ctx.outbox.message(command.reply_to, reply)
