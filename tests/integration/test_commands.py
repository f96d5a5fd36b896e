"""Operator commands over the websocket, end to end: a real server with real sign-in, a real simulated fleet.

Every action of docs/protocol.md 4.4 is sent as a `cmd` frame by an API-token
client and checked where it lands: in the fleet's own Redis keys (the runner
really drains, the channel really empties), in the ack, and in the audit log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aredis

from tests.conftest import TEST_USERS, LiveServer, SimulatedFleet, bearer, users_env
from tests.integration.helpers import LiveClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(redis_url: str, prefix: str) -> Iterator[LiveServer]:
    live = LiveServer(
        redis_url,
        prefix,
        env=users_env(JOBPULSE_CONFIRM_TTL_S="4", JOBPULSE_COMMAND_TIMEOUT_S="1", JOBPULSE_COMMAND_RATE="100000"),
    ).start()
    yield live
    output = live.finish()
    assert "Traceback" not in output, f"the server logged a traceback:\n{output}"


@pytest.fixture
def fleet(server: LiveServer) -> Iterator[SimulatedFleet]:
    sim = SimulatedFleet(
        server, "--runners", "4", "--channels", "3", "--rate", "4", "--seed", "5",
        "--time-scale", "0.3", "--silent-after", "never", "--heartbeat", "1",
    )  # fmt: skip
    sim.wait_for_runners(4)
    yield sim
    sim.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def connect(server: LiveServer, user: str, widgets: list[str] | None = None) -> LiveClient:
    client = await LiveClient.connect(server.ws_url, widgets or ["runners", "channels"], headers=bearer(user))
    return client


async def live_runners(client: LiveClient, count: int) -> list[str]:
    await client.wait_for(
        lambda c: (
            sum(1 for r in c.data.get("runners", {}).get("rows", {}).values() if r["status"] != "offline") >= count
        ),
        15,
    )
    rows = client.data["runners"]["rows"]
    return sorted(r for r, row in rows.items() if row["status"] != "offline")


async def runner_state(store: aredis.Redis, prefix: str, runner: str) -> str | None:
    raw = await store.get(f"{prefix}:runner:{runner}")
    return json.loads(raw)["state"] if raw else None


async def eventually(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


# -- who may do what --------------------------------------------------------------------------------

MATRIX_ARGS: dict[str, dict[str, Any]] = {
    "runner.ping": {"runners": ["r-x"]},
    "runner.logs": {"runner": "r-x"},
    "runner.drain": {"runners": ["r-x"]},
    "runner.undrain": {"runners": ["r-x"]},
    "runner.restart": {"runners": ["r-x"]},
    "runner.shutdown": {"runners": ["r-x"]},
    "broadcast": {"message": "hello"},
    "job.run": {"fn": "demo.task", "channel": "email", "payload": {}},
    "job.batch": {"channels": ["email"], "count": 1},
    "job.retry": {"job": "j-x"},
    "job.cancel": {"job": "j-x"},
    "channel.pause": {"channel": "email"},
    "channel.resume": {"channel": "email"},
    "channel.purge": {"channel": "email"},
    "channel.clear_stuck": {"channel": "email"},
    "runners.cleanup": {},
    # Bulk forms: admin only.
    "runner.drain*": {"runners": "*"},
    "runner.restart*": {"runners": ["r-x", "r-y"]},
    "channel.clear_stuck*": {"channel": None},
}
ADMIN_ONLY = {"broadcast", "runners.cleanup", "runner.drain*", "runner.restart*", "channel.clear_stuck*"}


async def test_role_matrix(server: LiveServer) -> None:
    """viewer x operator x admin against every action (previews: nothing happens to the fleet)."""
    users_env()
    clients = {name: await connect(server, name) for name in TEST_USERS}
    try:
        for name, client in clients.items():
            role = TEST_USERS[name][0]
            offered = client.welcome["actions"]
            assert client.welcome["user"] == {"name": f"{name}-token", "role": role, "auth": "token"}
            for label, args in MATRIX_ARGS.items():
                action = label.rstrip("*")
                ack = await client.command(action, args, phase="preview")
                allowed = role == "admin" or (role == "operator" and label not in ADMIN_ONLY)
                assert ack["ok"] is allowed, (name, label, ack)
                if not allowed:
                    assert ack["error"]["code"] == "forbidden", (name, label, ack)
                    assert f"needs the {'admin' if label in ADMIN_ONLY else 'operator'} role" in ack["error"]["message"]
                else:
                    assert ack["phase"] == "preview" and ack["result"]["confirm"], ack
                if "*" not in label:
                    assert offered[action]["ok"] is allowed, (name, action, offered[action])
                    if not allowed:
                        assert offered[action]["reason"]
            # What this source cannot do is offered to nobody, with the reason.
            assert offered["task.rate_limit"]["ok"] is False
            assert "native protocol has no per-function rate limits" in offered["task.rate_limit"]["reason"]
    finally:
        for client in clients.values():
            await client.close()


async def test_unsigned_and_cross_site_sockets_are_closed(server: LiveServer) -> None:
    """No user: 4401. An upgrade from another site's page: 4403. Both before any data is sent."""
    import websockets

    async with websockets.connect(server.ws_url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    users_env()
    async with websockets.connect(server.ws_url, origin="http://evil.example", additional_headers=bearer("ada")) as ws:  # type: ignore[arg-type]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    # The page's own origin is fine.
    async with websockets.connect(server.ws_url, origin=server.url, additional_headers=bearer("ada")) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "welcome"


# -- the actions, for real ---------------------------------------------------------------------------


async def test_runner_actions(server: LiveServer, fleet: SimulatedFleet, store: aredis.Redis, prefix: str) -> None:
    """ping, logs, drain, undrain, restart on one runner (operator), and a bulk drain with two phases (admin)."""
    users_env()
    oscar = await connect(server, "oscar")
    ada = await connect(server, "ada")
    try:
        runners = await live_runners(oscar, 4)
        first, second = runners[0], runners[1]
        ping = await oscar.command("runner.ping", {"runners": [first]})
        assert ping["ok"] and ping["result"]["replies"][0]["src"] == first, ping
        logs = await oscar.command("runner.logs", {"runner": first, "lines": 5})
        assert logs["ok"] and 1 <= len(logs["result"]["lines"]) <= 5 and "booted" in json.dumps(logs["result"])

        drain = await oscar.command("runner.drain", {"runners": [first]})
        assert drain["ok"] and drain["message"].startswith(f"Draining {first}"), drain

        async def drained() -> bool:
            return await runner_state(store, prefix, first) in ("draining", "drained")

        await eventually(drained)
        await oscar.wait_for(lambda c: c.data["runners"]["rows"][first]["status"] == "draining", 10)
        undrain = await oscar.command("runner.undrain", {"runners": [first]})
        assert undrain["ok"]

        async def running() -> bool:
            return await runner_state(store, prefix, first) == "running"

        await eventually(running)

        boot = json.loads(await store.get(f"{prefix}:runner:{second}") or "{}")["boot"]
        restart = await oscar.command("runner.restart", {"runners": [second], "timeout": 2})
        assert restart["ok"], restart

        async def rebooted() -> bool:
            raw = await store.get(f"{prefix}:runner:{second}")
            return raw is not None and json.loads(raw)["boot"] != boot

        await eventually(rebooted, 15)

        # Bulk: the operator may not; the admin must preview first, then confirm.
        assert (await oscar.command("runner.drain", {"runners": "*"}, phase="preview"))["error"]["code"] == "forbidden"
        unconfirmed = await ada.command("runner.drain", {"runners": "*"})
        assert unconfirmed["error"]["code"] == "confirm_required"
        done = await ada.confirmed("runner.drain", {"runners": "*"})
        assert done["ok"] and done["result"]["count"] == 4 and not done["result"]["missing"], done

        async def all_draining() -> bool:
            states = [await runner_state(store, prefix, r) for r in runners]
            return all(s in ("draining", "drained") for s in states)

        await eventually(all_draining)
    finally:
        await oscar.close()
        await ada.close()


async def test_shutdown_and_broadcast(
    server: LiveServer, fleet: SimulatedFleet, store: aredis.Redis, prefix: str
) -> None:
    """shutdown (two-phase even for one runner) takes it out of P:runners; broadcast reaches every live runner."""
    users_env()
    ada = await connect(server, "ada")
    try:
        runners = await live_runners(ada, 4)
        victim = runners[-1]
        done = await ada.confirmed("runner.shutdown", {"runners": [victim], "timeout": 1})
        assert done["ok"], done

        async def gone() -> bool:
            return not await store.sismember(f"{prefix}:runners", victim)

        await eventually(gone, 15)

        # Offline, or already gone: a reconcile that reads the registry without it forgets a stopped runner, and
        # when it lands in the same tick as the stop the card goes without an "offline" frame between.
        def stopped(c: LiveClient) -> bool:
            rows = c.data["runners"]["rows"]
            return victim not in rows or rows[victim]["status"] == "offline"

        await ada.wait_for(stopped, 10)

        cast = await ada.confirmed("broadcast", {"message": "maintenance at noon", "config": {"concurrency": 7}})
        assert cast["ok"] and cast["result"]["count"] == 3, cast
        assert all(r["result"]["applied"] == ["concurrency"] for r in cast["result"]["replies"])
        await ada.wait_for(lambda c: all(c.data["runners"]["rows"][r]["concurrency"] == 7 for r in runners[:3]), 10)
        logs = await ada.command("runner.logs", {"runner": runners[0]})
        assert "broadcast: maintenance at noon" in json.dumps(logs["result"]["lines"])
    finally:
        await ada.close()


async def test_channel_and_job_actions(
    server: LiveServer, fleet: SimulatedFleet, store: aredis.Redis, prefix: str
) -> None:
    """pause, run, batch, purge (the channel really empties), resume, cancel, retry, clear stuck."""
    users_env()
    oscar = await connect(server, "oscar", ["runners", "channels"])
    try:
        await live_runners(oscar, 4)
        await oscar.wait_for(lambda c: len(c.data.get("channels", {}).get("rows", {})) >= 3, 10)
        channel = sorted(oscar.data["channels"]["rows"])[0]
        paused = await oscar.command("channel.pause", {"channel": channel})
        assert paused["ok"] and paused["result"]["paused"] is True, paused

        run = await oscar.command("job.run", {"fn": "ops.check", "channel": channel, "payload": {"n": 1}, "cid": "t-1"})
        assert run["ok"], run
        job = run["result"]["job"]
        batch = await oscar.command("job.batch", {"channels": [channel], "count": 5, "fn": "ops.test"})
        assert batch["ok"] and batch["result"]["queued"] == 5, batch
        await oscar.wait_for(lambda c: c.data["channels"]["rows"][channel]["queued"] >= 6, 10)

        canceled = await oscar.command("job.cancel", {"job": job})
        assert canceled["ok"] and canceled["result"]["was"] == "queued", canceled
        retried = await oscar.command("job.retry", {"job": job})
        assert retried["ok"] and retried["result"]["attempt"] >= 1, retried

        preview = await oscar.command("channel.purge", {"channel": channel}, phase="preview")
        assert preview["ok"] and preview["result"]["count"] >= 6 and preview["result"]["sample"], preview
        queue = f"{prefix}:sim:queue:{channel}"  # the simulator's list of waiting ids (server/simulator/keys.py)
        waiting = set(await store.lrange(queue, 0, -1))
        assert len(waiting) >= 6, waiting
        done = await oscar.command("channel.purge", {"channel": channel}, confirm=preview["result"]["confirm"])
        assert done["ok"] and done["result"]["purged"] >= 6, done
        # The channel really emptied: none of the jobs that waited is left (the fleet may queue new ones since).
        assert not waiting & set(await store.lrange(queue, 0, -1)), "purged jobs are still queued"
        await oscar.wait_for(lambda c: c.data["channels"]["rows"][channel]["queued"] == 0, 10)

        resumed = await oscar.command("channel.resume", {"channel": channel})
        assert resumed["ok"] and resumed["result"]["paused"] is False

        stuck = await oscar.confirmed("channel.clear_stuck", {"channel": channel, "older_than": 10})
        assert stuck["ok"] and set(stuck["result"]) >= {"cleared", "requeued", "expired"}, stuck

        missing = await oscar.command("job.retry", {"job": "no-such-job"})
        assert missing["ok"] is False and missing["error"]["code"] in ("not_found", "failed"), missing
    finally:
        await oscar.close()


async def test_cleanup_removes_dead_runners(redis_url: str, prefix: str, store: aredis.Redis) -> None:
    """A runner that went silent turns offline, stays visible, and cleanup removes it (and takes back its jobs)."""
    server = LiveServer(
        redis_url, prefix, env=users_env(JOBPULSE_STALE_FACTOR="1.5", JOBPULSE_OFFLINE_FACTOR="2")
    ).start()
    sim = SimulatedFleet(
        server, "--runners", "3", "--channels", "2", "--rate", "4", "--seed", "3",
        "--time-scale", "0.3", "--silent-after", "1", "--heartbeat", "1",
    )  # fmt: skip
    try:
        sim.wait_for_runners(2)
        ada = await connect(server, "ada")
        try:
            await ada.wait_for(
                lambda c: any(r["status"] == "offline" for r in c.data.get("runners", {}).get("rows", {}).values()), 20
            )
            dead = [r for r, row in ada.data["runners"]["rows"].items() if row["status"] == "offline"]

            async def keys_gone() -> bool:
                # The job system forgets only runners whose heartbeat key has expired (3 intervals).
                return not any([await store.exists(f"{prefix}:runner:{r}") for r in dead])

            await eventually(keys_gone, 10)
            preview = await ada.command("runners.cleanup", {"older_than": 0}, phase="preview")
            assert preview["ok"] and preview["result"]["count"] == len(dead), preview
            done = await ada.command("runners.cleanup", {"older_than": 0}, confirm=preview["result"]["confirm"])
            assert done["ok"] and done["result"]["removed"] == len(dead), done
            await ada.wait_for(lambda c: not set(dead) & set(c.data["runners"]["rows"]), 10)
            for runner in dead:
                assert not await store.sismember(f"{prefix}:runners", runner)
        finally:
            await ada.close()
    finally:
        sim.stop()
        output = server.finish()
    assert "Traceback" not in output, output


# -- safety ------------------------------------------------------------------------------------------


async def test_confirm_tokens_expire_and_are_single_use(server: LiveServer, store: aredis.Redis, prefix: str) -> None:
    users_env()
    ada = await connect(server, "ada")
    oscar = await connect(server, "oscar")
    try:
        args = {"channel": "nothing-here"}
        preview = await ada.command("channel.purge", args, phase="preview")
        token = preview["result"]["confirm"]
        # Another user, other arguments, a forged token: refused.
        for client, a, t in ((oscar, args, token), (ada, {"channel": "other"}, token), (ada, args, token[:-3] + "abc")):
            ack = await client.command("channel.purge", a, confirm=t)
            assert ack["error"]["code"] == "confirm_invalid", ack
        first = await ada.command("channel.purge", args, confirm=token)
        assert first["error"]["code"] in ("no_reply", "failed", "unavailable") or first["ok"], first
        replay = await ada.command("channel.purge", args, confirm=token)
        assert replay["error"] == {"code": "confirm_invalid", "message": "confirm token: already used; preview again"}
        late = await ada.command("channel.purge", args, phase="preview")
        await asyncio.sleep(4.3)  # JOBPULSE_CONFIRM_TTL_S=4
        expired = await ada.command("channel.purge", args, confirm=late["result"]["confirm"])
        assert expired["error"] == {"code": "confirm_invalid", "message": "confirm token: expired; preview again"}
    finally:
        await ada.close()
        await oscar.close()


async def test_same_id_runs_once(server: LiveServer, fleet: SimulatedFleet, store: aredis.Redis, prefix: str) -> None:
    """Retrying a command id (say after a reconnect) gets the first ack again; the job is queued once."""
    users_env()
    oscar = await connect(server, "oscar")
    try:
        await live_runners(oscar, 4)
        args = {"fn": "ops.once", "channel": "email", "payload": {}, "cid": "once-1"}
        first = await oscar.command("job.run", args, cmd_id="same-id-1")
        await oscar.close()
        oscar = await connect(server, "oscar")
        again = await oscar.command("job.run", args, cmd_id="same-id-1")
        assert first["ok"] and again == first
        entries = [e for e in await audit_entries(server, "oscar") if e["cmd"] == "same-id-1"]
        assert len(entries) == 1
    finally:
        await oscar.close()


async def audit_entries(server: LiveServer, who: str, **filters: str) -> list[dict[str, Any]]:
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode(filters)
    request = urllib.request.Request(f"{server.url}/api/audit?{query}", headers=bearer(who))
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read())
    entries: list[dict[str, Any]] = json.loads(body)["entries"]
    return entries


async def audit_csv(server: LiveServer, who: str, **filters: str) -> str:
    import urllib.parse
    import urllib.request

    request = urllib.request.Request(
        f"{server.url}/api/audit.csv?{urllib.parse.urlencode(filters)}", headers=bearer(who)
    )
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read())
    return str(body.decode())


async def test_audit_log_records_done_and_denied(server: LiveServer) -> None:
    """Every command with an id lands in the audit stream, refusals included, and in the live activity widget."""
    users_env()
    vera = await connect(server, "vera", ["activity"])
    oscar = await connect(server, "oscar", ["activity"])
    try:
        denied = await vera.command("channel.pause", {"channel": "email"})
        assert denied["error"]["code"] == "forbidden"
        bad = await oscar.command("channel.pause", {"channel": "no spaces allowed"})
        assert bad["error"]["code"] == "bad_args" and bad["error"]["message"].startswith("channel:")
        previewed = await oscar.command("channel.purge", {"channel": "email"}, phase="preview")
        assert previewed["ok"]
        entries = await audit_entries(server, "ada")
        by_cmd = {e["cmd"]: e for e in entries}
        assert by_cmd[denied["id"]]["ok"] is False and by_cmd[denied["id"]]["result"] == "forbidden"
        assert by_cmd[denied["id"]]["user"] == "vera-token" and by_cmd[denied["id"]]["role"] == "viewer"
        assert by_cmd[bad["id"]]["result"] == "bad_args"
        assert by_cmd[previewed["id"]]["phase"] == "preview" and by_cmd[previewed["id"]]["target"] == "channel:email"
        only_denied = await audit_entries(server, "ada", ok="false")
        assert {e["cmd"] for e in only_denied} == {denied["id"], bad["id"]}
        purges = await audit_entries(server, "ada", action="channel.")
        assert [e["cmd"] for e in purges] == [previewed["id"], bad["id"], denied["id"]]  # newest first
        csv_text = await audit_csv(server, "ada", ok="false")
        lines = csv_text.strip().splitlines()
        assert lines[0].startswith("id,ts,user,role,auth,action,phase,target,args,ok,result,count,error")
        assert len(lines) == 3 and "forbidden" in csv_text and "bad_args" in csv_text
        await oscar.wait_for(lambda c: previewed["audit"] in c.data.get("activity", {}).get("rows", {}), 5)
        assert {denied["audit"], bad["audit"]} <= set(oscar.data["activity"]["rows"])
        assert oscar.data["activity"]["order"][0] == previewed["audit"]
    finally:
        await vera.close()
        await oscar.close()


async def test_fuzzed_command_frames(
    server: LiveServer, fleet: SimulatedFleet, store: aredis.Redis, prefix: str
) -> None:
    """Thousands of malformed commands: every one answered, the socket stays up, the fleet is untouched."""
    import random

    users_env()
    rng = random.Random(4)
    oscar = await connect(server, "oscar")
    try:
        runners = await live_runners(oscar, 4)
        before = {r: await runner_state(store, prefix, r) for r in runners}
        junk: list[Any] = [None, 0, -1, 1e308, True, "", "x" * 300, [], {}, {"a": 1}, ["*"], "*", "../../etc"]
        actions = ["runner.drain", "runner.shutdown", "channel.purge", "broadcast", "job.run", "nope", "", "x" * 80]
        expected: set[str] = set()
        errors_before = len(oscar.errors)
        sent_without_id = 0
        for n in range(2000):
            # Frames without an id get error frames, and more than 20 of those in 10 s close the socket (1008).
            kind = rng.randrange(6) if sent_without_id < 15 else rng.choice([0, 1, 2, 3, 5])
            cmd_id = f"f{n}"
            frame: dict[str, Any] = {"type": "cmd", "id": cmd_id, "action": rng.choice(actions)}
            if kind == 0:
                frame["args"] = rng.choice(junk)
            elif kind == 1:
                frame["args"] = {rng.choice(["runners", "channel", "job", "zzz"]): rng.choice(junk)}
            elif kind == 2:
                frame["phase"] = rng.choice(["run", "", 3, None])
            elif kind == 3:
                frame["confirm"] = rng.choice(["abc.def", "", "x" * 2000, 5])
                frame["args"] = {"runners": "*"}
            elif kind == 4:
                del frame["id"]
                sent_without_id += 1
            else:
                frame["args"] = {"runners": [rng.choice(junk)]}
            if "id" in frame:
                expected.add(cmd_id)
            await oscar.send(json.dumps(frame))
        try:
            await oscar.wait_for(lambda c: expected <= set(c.acks), 60)
        except TimeoutError:
            missing = sorted(expected - set(oscar.acks))
            raise AssertionError(
                f"{len(missing)} commands unanswered, e.g. {missing[:5]}; errors {oscar.errors[-3:]}; "
                f"closed {oscar.ws.close_code}"
            ) from None
        assert all(oscar.acks[i]["ok"] is False for i in expected)
        await oscar.wait_for(lambda c: len(c.errors) - errors_before >= sent_without_id, 10)
        after = {r: await runner_state(store, prefix, r) for r in runners}
        assert after == before
        assert (await oscar.command("runner.ping", {"runners": [runners[0]]}))["ok"]
    finally:
        await oscar.close()


async def test_command_rate_limit(redis_url: str, prefix: str) -> None:
    """Past JOBPULSE_COMMAND_RATE commands a minute a user is refused with `rate`, and the socket stays up."""
    server = LiveServer(redis_url, prefix, env=users_env(JOBPULSE_COMMAND_RATE="5")).start()
    try:
        oscar = await connect(server, "oscar")
        try:
            acks = [await oscar.command("channel.purge", {"channel": "email"}, phase="preview") for _ in range(7)]
            assert [a["ok"] for a in acks] == [True] * 5 + [False] * 2
            assert acks[5]["error"]["code"] == "rate"
            # Other users have their own allowance.
            ada = await connect(server, "ada")
            assert (await ada.command("channel.purge", {"channel": "email"}, phase="preview"))["ok"]
            await ada.close()
        finally:
            await oscar.close()
    finally:
        server.stop()
        server.close()


async def test_activity_reaches_every_process(redis_url: str, prefix: str) -> None:
    """Two jobpulse processes on one Redis: a command run on one shows live in the other's activity widget."""
    first = LiveServer(redis_url, prefix, env=users_env()).start()
    second = LiveServer(redis_url, prefix, env=users_env()).start()
    try:
        watcher = await LiveClient.connect(second.ws_url, ["activity"], headers=bearer("vera"))
        actor = await connect(first, "oscar")
        try:
            await watcher.wait_for(lambda c: "activity" in c.data, 5)
            ack = await actor.command("channel.purge", {"channel": "email"}, phase="preview")
            await watcher.wait_for(lambda c: ack["audit"] in c.data["activity"]["rows"], 5)
            assert watcher.data["activity"]["rows"][ack["audit"]]["user"] == "oscar-token"
        finally:
            await watcher.close()
            await actor.close()
    finally:
        for server in (first, second):
            server.stop()
            server.close()
