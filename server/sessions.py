"""Sign-in sessions and sign-in throttling, kept in Redis so every jobpulse process shares them.

Shell layer. A session is a random id, sent to the browser signed (so a forged
cookie is refused without a round trip) and kept as the hash
`P:jp:session:<sha256(id)>` with an idle expiry; `P:jp:sessions:<user>` lists
a user's sessions so they can be revoked together. docs/protocol.md 5.3.

A sign-out or revocation is published on `P:jp:sessions-ended`, so every
process forgets the session from its store-down fallback (`recall`) too; a
process whose subscription was lost forgets its whole fallback when it is
back, since it may have missed some.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import cast

import redis.asyncio as aredis

from server.auth import ROLES, Principal, Role, sign, unsign
from server.pubsub import follow

THROTTLE_WINDOW_S = 900
ALIVE_WAIT_S = 1.0
# What a failing store raises, for callers that must not import Redis themselves (the handlers).
STORE_ERRORS: tuple[type[Exception], ...] = (aredis.RedisError, OSError)


async def shared_secret(client: aredis.Redis, prefix: str, configured: str) -> bytes:
    """JOBPULSE_SECRET, or one made once and shared by every process through the store."""
    if configured:
        return configured.encode()
    key = f"{prefix}:jp:secret"
    await client.set(key, secrets.token_hex(32), nx=True)
    value = await client.get(key)
    if value is None:  # pragma: no cover - deleted between the two calls
        raise RuntimeError(f"{key} vanished")
    return value if isinstance(value, bytes) else str(value).encode()


class Sessions:
    """Create, resolve, end and revoke sessions; throttle failed sign-ins."""

    def __init__(
        self,
        client: aredis.Redis,
        prefix: str,
        secret: bytes,
        idle_s: float,
        max_s: float,
        max_failures: int,
        clock: Callable[[], float] = time.time,
        grace_s: float = 0.0,
        remember: int = 0,
        login_client: aredis.Redis | None = None,
    ) -> None:
        self.client = client
        # Sign-in's own small pool: a flood of sign-ins cannot take the connections the live path needs.
        self.login_client = login_client or client
        self.grace_s = grace_s
        self.remember = remember
        # Sessions this process resolved lately, for `recall` while the store is unreachable (LRU, capped).
        self._recent: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self.secret = secret
        self.idle_s = idle_s
        self.max_s = max_s
        self.max_failures = max_failures
        self.clock = clock
        self._key = f"{prefix}:jp:session:"
        self._user_key = f"{prefix}:jp:sessions:"
        self._fail_key = f"{prefix}:jp:login-fail:"
        self.ended_channel = f"{prefix}:jp:sessions-ended"

    def key_of(self, session_id: str) -> str:
        return self._key + hashlib.sha256(session_id.encode()).hexdigest()

    async def create(self, principal: Principal, address: str) -> str:
        """A new session for `principal`; returns the signed cookie value."""
        session_id = secrets.token_urlsafe(32)
        key = self.key_of(session_id)
        now = self.clock()
        pipe = self.login_client.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={"user": principal.name, "role": principal.role, "created": now, "addr": address},
        )
        pipe.expire(key, int(self.idle_s))
        pipe.sadd(self._user_key + principal.name, key)
        pipe.expire(self._user_key + principal.name, int(self.max_s))
        await pipe.execute()
        return sign(self.secret, session_id)

    async def resolve(self, cookie: str) -> Principal | None:
        """The session's user, or None (forged, unknown, expired); a hit extends the idle expiry."""
        session_id = unsign(self.secret, cookie)
        if session_id is None:
            return None
        key = self.key_of(session_id)
        fields = cast(dict[bytes, bytes], await self.client.hgetall(key))
        if not fields:
            return None
        try:
            user = fields[b"user"].decode()
            role_text = fields[b"role"].decode()
            created = float(fields[b"created"])
        except (KeyError, ValueError, UnicodeDecodeError):
            return None
        if self.clock() - created > self.max_s or role_text not in ROLES:
            await self.client.delete(key)
            return None
        await self.client.expire(key, int(self.idle_s))
        role: Role = ROLES[ROLES.index(role_text)]
        principal = Principal(user, role, "session", session=key)
        if self.remember:
            self._recent[key] = (principal, self.clock())
            self._recent.move_to_end(key)
            while len(self._recent) > self.remember:
                self._recent.popitem(last=False)
        return principal

    def recall(self, cookie: str) -> Principal | None:
        """While the store cannot answer: the session's user if this process resolved it within `grace_s`.

        A Redis outage must not sign every operator out of the wall; a session cannot be revoked while the
        store is down anyway, and the grace bounds how stale the answer may be.
        """
        session_id = unsign(self.secret, cookie)
        if session_id is None:
            return None
        found = self._recent.get(self.key_of(session_id))
        if found is None or self.clock() - found[1] > self.grace_s:
            return None
        return found[0]

    async def alive(self, key: str) -> bool | None:
        """Whether the session with this store key still exists; None when the store cannot say within
        ALIVE_WAIT_S (a stalled store must not hold a command or a socket's check)."""
        try:
            async with asyncio.timeout(ALIVE_WAIT_S):
                return bool(await self.client.exists(key))
        except (aredis.RedisError, OSError, TimeoutError):
            return None

    async def end(self, cookie: str) -> None:
        """Sign out: the session is gone from the store and from every process's fallback."""
        session_id = unsign(self.secret, cookie)
        if session_id is not None:
            key = self.key_of(session_id)
            self.forget(key)
            await self.client.delete(key)
            await self.client.publish(self.ended_channel, key)

    async def revoke_user(self, user: str) -> int:
        """End every session of `user` (in the store and every process's fallback); returns how many there were."""
        members = await self.client.smembers(self._user_key + user)
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in members]
        for key in keys:
            self.forget(key)
        deleted = await self.client.delete(*keys) if keys else 0
        await self.client.delete(self._user_key + user)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.publish(self.ended_channel, key)
        await pipe.execute()
        return int(deleted)

    def forget(self, key: str) -> None:
        """Drop a session from this process's store-down fallback."""
        self._recent.pop(key, None)

    async def listen(self) -> None:
        """Forget the sessions other processes end, until cancelled; after a lost subscription, forget the whole
        fallback: ends published while this process was not listening are lost."""
        await follow(self.client, self.ended_channel, lambda key: self.forget(key.decode(errors="replace")),
                     on_subscribed=self._recent.clear, what="sessions-ended")  # fmt: skip

    # -- throttling -------------------------------------------------------------------------------

    async def reserve(self, user: str, address: str) -> int:
        """Count a sign-in attempt before its password is checked; the seconds to wait when it is one too many.

        Counting first, with INCR, is what holds the limit however many attempts arrive at once: checking the
        count and counting the failure afterwards let 99 of 300 concurrent guesses through a limit of 5. A
        right password gives its attempt back (`succeeded`).
        """
        pipe = self.login_client.pipeline(transaction=True)
        for who in (f"u:{user}", f"a:{address}"):
            pipe.incr(self._fail_key + who)
            pipe.expire(self._fail_key + who, THROTTLE_WINDOW_S, nx=True)
            pipe.ttl(self._fail_key + who)
        u_count, _, u_ttl, a_count, _, a_ttl = await pipe.execute()
        wait = 0
        for count, ttl in ((u_count, u_ttl), (a_count, a_ttl)):
            if int(count) > self.max_failures:
                wait = max(wait, int(ttl) if ttl and ttl > 0 else THROTTLE_WINDOW_S)
        return wait

    async def succeeded(self, user: str, address: str) -> None:
        """A right password: the user's failures are forgiven, and the address's reserved attempt given back."""
        pipe = self.login_client.pipeline(transaction=True)
        pipe.delete(self._fail_key + f"u:{user}")
        pipe.decr(self._fail_key + f"a:{address}")
        await pipe.execute()
