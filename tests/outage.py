"""One outage round of the native source, shared by tests/integration/test_faults.py and `python -m bench.outage`.

A round runs a real jobpulse (users and sessions on) against a private `redis-server` under a simulated fleet,
breaks the source (Redis SIGKILLed, or the network to it stalled by tests/faultproxy.py), checks what is said and
served meanwhile, mends it, changes the truth behind jobpulse's back, and times how long jobpulse takes to say the
outage (`said`) and to show the truth again after the return (`healed`).

The goals (docs/reliability.md section 1, README): an outage is said within 2 s, and the truth is back within 5 s
of the source's return. `bench.outage` measures them over several rounds and is where they are recorded from; the
tests hold each round to a functional bound of three times the goal, so a loaded, shared machine cannot fail them
while a connector that waits for its next reconcile, or never notices a stall, still does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aredis

from server.redis_server import RedisServer
from tests.conftest import LiveServer, SimulatedFleet, get, users_env
from tests.faultproxy import FaultProxy
from tests.integration.helpers import LiveClient, Publisher

SAID_GOAL_S = 2.0  # the outage is said (health card, banner, /readyz) within 2 s of the fault
HEALED_GOAL_S = 5.0  # jobpulse's state equals the source's keys within 5 s of the source's return
SAID_BOUND_S = 3 * SAID_GOAL_S  # what a test allows: three times the goal
HEALED_BOUND_S = 3 * HEALED_GOAL_S

MARK = "fault-check"  # the channel whose depth a round changes behind jobpulse's back

Fault = Callable[[], Awaitable[None]]


def fleet(server: LiveServer, redis_url: str) -> SimulatedFleet:
    """A small simulated fleet writing to `redis_url` (the real Redis, also when jobpulse reads via a proxy)."""
    args = ("--runners", "5", "--channels", "3", "--rate", "40", "--seed", "11")
    return SimulatedFleet(server, *args, redis_url=redis_url)


async def set_truth(client: aredis.Redis, prefix: str, runners: dict[str, float], queued: int) -> None:
    """Write the source's authoritative keys by hand, publishing nothing: only a reconcile can learn them."""
    pub = Publisher(client, prefix)
    pipe = client.pipeline(transaction=True)
    for runner, interval in runners.items():
        pipe.sadd(f"{prefix}:runners", runner)
        pipe.set(f"{prefix}:runner:{runner}", json.dumps(pub.beat(runner, interval=interval)), ex=60)
    pipe.hset(f"{prefix}:depth", MARK, json.dumps({"queued": queued, "inflight": 0, "scheduled": 0}))
    await pipe.execute()


async def remove_runner(client: aredis.Redis, prefix: str, runner: str) -> None:
    await client.srem(f"{prefix}:runners", runner)
    await client.delete(f"{prefix}:runner:{runner}")


def matches_truth(c: LiveClient, registered: set[str], queued: int) -> bool:
    rows = c.data["runners"]["rows"]
    return (
        c.data["health"]["connected"] is True
        and set(rows) == registered
        and c.data["channels"]["rows"][MARK]["queued"] == queued
    )


async def seen_truth(client: aredis.Redis, prefix: str) -> set[str]:
    members: set[bytes] = await client.smembers(f"{prefix}:runners")  # type: ignore[assignment]
    return {m.decode() for m in members}


def signed_in(server: LiveServer) -> dict[str, str]:
    """The Cookie header of oscar's session, signed in through the login form."""
    status, cookies = server.sign_in("oscar")
    assert status == 303, status
    return {"Cookie": f"jp_session={cookies['jp_session']}"}


async def outage_round(
    server: LiveServer, direct: aredis.Redis, cookie: dict[str, str], break_it: Fault, mend_it: Fault
) -> dict[str, float]:
    """Break the source under load, check what is said and served, mend it, change the truth, time the heal.

    Waits at most SAID_BOUND_S and HEALED_BOUND_S (a TimeoutError or an AssertionError past them)."""
    prefix = server.prefix
    # `doomed` beats fast, so once silent it is stale within ~1 s: when it leaves the registry during the
    # outage, the first reconcile after the return may drop it.
    await set_truth(direct, prefix, {"steady": 2.0, "doomed": 0.4}, queued=5)
    client = await LiveClient.connect(server.ws_url, ["health", "runners", "channels"], headers=cookie)
    try:
        truth = await seen_truth(direct, prefix)
        await client.wait_for(lambda c: matches_truth(c, truth, 5), within=10)

        broke = time.monotonic()
        await break_it()
        await client.wait_for(lambda c: c.data["health"]["connected"] is False, within=SAID_BOUND_S)
        said = time.monotonic() - broke
        assert client.data["health"]["error"], "the health card says why the source is down"
        status, body = get(server.url + "/readyz")
        assert status == 503 and json.loads(body)["source_connected"] is False
        # Pages stay up: a signed-in operator can still load one (the session store is the same Redis).
        status, page = get(server.url + "/admin/jobs", cookie)
        assert status == 200 and b"data-widget" in page, status

        await mend_it()
        await direct.connection_pool.disconnect()  # the round's own pooled connections died with a crashed Redis
        # While jobpulse could not look, a runner left, another joined, and the channel's depth moved.
        await remove_runner(direct, prefix, "doomed")
        await set_truth(direct, prefix, {"joined": 2.0}, queued=9)
        back = time.monotonic()
        truth = await seen_truth(direct, prefix)
        assert "doomed" not in truth and "joined" in truth
        try:
            await client.wait_for(lambda c: matches_truth(c, truth, 9), within=HEALED_BOUND_S)
        except TimeoutError:
            shown = {k: v.get("status") for k, v in client.data["runners"]["rows"].items()}
            mark = client.data["channels"]["rows"].get(MARK)
            raise AssertionError(
                f"not healed within {HEALED_BOUND_S:.0f} s: truth {sorted(truth)}, shown {shown}, {MARK} {mark}, "
                f"health {client.data['health']}"
            ) from None
        healed = time.monotonic() - back
        status, _ = get(server.url + "/readyz")
        assert status == 200
        return {"said": said, "healed": healed}
    finally:
        await client.close()


async def native_outage(
    jobpulse_redis_url: str, redis_server: RedisServer, direct: aredis.Redis, prefix: str,
    break_it: Fault, mend_it: Fault,
) -> tuple[dict[str, float], str]:  # fmt: skip
    """A jobpulse reading `jobpulse_redis_url`, a fleet writing to the real Redis, one `outage_round`.

    Returns the round's timings and everything the server logged."""
    server = LiveServer(jobpulse_redis_url, prefix, env=users_env()).start()
    load = fleet(server, redis_server.url)  # the fleet writes to Redis itself, also when jobpulse's link stalls
    try:
        load.wait_for_runners(5)
        timings = await outage_round(server, direct, signed_in(server), break_it, mend_it)
    finally:
        load.stop()
        output = server.finish()
    return timings, output


def crash(redis_server: RedisServer) -> tuple[Fault, Fault]:
    """Redis SIGKILLed; started again (its data back from the append-only file) after 1 s down."""

    async def break_it() -> None:
        redis_server.kill()

    async def mend_it() -> None:
        await asyncio.sleep(1.0)  # down for a while, so the reconnect backoff has grown
        redis_server.start()

    return break_it, mend_it


def stall(proxy: FaultProxy) -> tuple[Fault, Fault]:
    """The network to Redis hangs (nothing closes, nothing arrives); it flows again after 1 s."""

    async def break_it() -> None:
        proxy.stall()

    async def mend_it() -> None:
        await asyncio.sleep(1.0)
        proxy.heal()

    return break_it, mend_it


async def redis_crash_round(prefix: str) -> tuple[dict[str, float], str]:
    """One crash round on a private Redis of its own (append-only, fsync always); its timings and the server's log."""
    with RedisServer(persist=True) as redis_server:
        direct = aredis.Redis.from_url(redis_server.url, socket_timeout=5)
        try:
            return await native_outage(redis_server.url, redis_server, direct, prefix, *crash(redis_server))
        finally:
            await direct.aclose()


async def network_stall_round(prefix: str) -> tuple[dict[str, float], str]:
    """One stall round: jobpulse reads a private Redis through a FaultProxy; its timings and the server's log."""
    with RedisServer(persist=True) as redis_server:
        direct = aredis.Redis.from_url(redis_server.url, socket_timeout=5)
        proxy = FaultProxy("127.0.0.1", redis_server.port).start()
        try:
            return await native_outage(proxy.url, redis_server, direct, prefix, *stall(proxy))
        finally:
            proxy.close()
            await direct.aclose()
