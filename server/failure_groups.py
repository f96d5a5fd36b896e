"""Operators' failure-group mutes: `group.mute` and `group.unmute`, kept in Redis for every process.

Shell layer. A mute is written to the store (`P:jp:groups:muted`, docs/protocol.md
1.7) and folded at once here; other processes fold it at their next persist round
(Aggregator.read_mutes). A muted group raises no hot issue until the mute ends;
it is still counted and shown (dimmed) on the Failures page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aredis

from server.actions import Args, GroupArgs, MuteArgs, Performed
from server.streams.connector import CommandError
from server.streams.core.events import GroupMute

if TYPE_CHECKING:
    from server.commander import LocalAction
    from server.roles import Principal
    from server.streams.aggregator import Aggregator


class GroupActions:
    """The local actions on failure groups, for the commander."""

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    def actions(self) -> dict[str, LocalAction]:
        return {"group.mute": self._mute, "group.unmute": self._unmute}

    def _title(self, group: str) -> str:
        found = self.aggregator.state.groups.get(group)
        if found is None:
            raise CommandError(f"no failure group {group} is known", "not_found")
        return f"{found.type.rsplit('.', 1)[-1]}: {found.message[:80]}"

    async def _mute(self, args: Args, principal: Principal, now: float) -> Performed:
        assert isinstance(args, MuteArgs)
        title = self._title(args.group)
        until = now + args.minutes * 60
        try:
            await self.aggregator.store.mute(GroupMute(args.group, until, principal.name, args.reason), now)
            await self.aggregator.read_mutes()
        except (aredis.RedisError, OSError) as exc:
            raise CommandError(f"jobpulse's store is not reachable: {exc}", "unavailable") from None
        return Performed(
            {"group": args.group, "until": until, "by": principal.name},
            f"Muted {title} for {args.minutes} min: it raises no hot issue until then", 1,
        )  # fmt: skip

    async def _unmute(self, args: Args, principal: Principal, now: float) -> Performed:
        assert isinstance(args, GroupArgs)
        try:
            gone = await self.aggregator.store.unmute(args.group)
            await self.aggregator.read_mutes()
        except (aredis.RedisError, OSError) as exc:
            raise CommandError(f"jobpulse's store is not reachable: {exc}", "unavailable") from None
        known = self.aggregator.state.groups.get(args.group)
        name = self._title(args.group) if known is not None else f"group {args.group}"
        if not gone:
            raise CommandError(f"{name} is not muted", "not_found")
        return Performed({"group": args.group}, f"{name} is no longer muted: it can raise hot issues again", 1)
