"""Hostile input and connection floods against real jobpulse servers (issue #6; docs/reliability.md 6 and 7).

The fuzz is bench/hostile.py's, shorter: 10,000 websocket frames and 10,000
Redis messages against a real server, checked against a control server that
folds only the valid messages. The connection limits per client address are
tested from several loopback addresses, and through trusted X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from bench import hostile
from server.handlers.ws import AddressLimits
from tests.conftest import LiveServer, bearer, users_env


def _server(live: LiveServer) -> hostile.Server:
    assert live.process is not None
    return hostile.Server(live.url, live.prefix, live.process.pid, live.api_headers())


@pytest.fixture
def pair(redis_url: str, prefix: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    """A target and a control server, each on its own prefix, both reconciling every second."""
    env = {
        "JOBPULSE_COMMAND_RATE": "1000000",  # refused commands reach their validation, not the per-user rate limit
        "JOBPULSE_RECONCILE_S": "1",
        "JOBPULSE_MESSAGE_MAX": "65536",  # over-size messages stay cheap for Redis
    }
    target = LiveServer(redis_url, prefix, env=env).start()
    control = LiveServer(redis_url, f"{prefix}:control", env=env)
    try:
        control.start()
        yield target, control
    finally:
        outputs = [target.finish(), control.finish()]
    for output in outputs:
        assert "Traceback" not in output, f"a server logged a traceback:\n{output[-3000:]}"


@pytest.mark.timeout(120)
async def test_fuzzed_frames_and_malformed_messages(pair: tuple[LiveServer, LiveServer], redis_url: str) -> None:
    """10,000 fuzzed frames and 10,000 malformed Redis messages, then 300 connects from one address: every frame
    answered or closed with a documented code, every bad frame and rejection counted, no crash, state unchanged /
    equal to the fold of the valid ones, the address refused past its limit while others get in."""
    target, control = pair
    report = await hostile.run(
        _server(target), _server(control), redis_url, frames=10_000, redis_messages=10_000, seed=11,
        connections=6, message_max=65_536, base_objects=600, flood_attempts=300, max_per_address=200,
    )  # fmt: skip
    print(hostile.summary(report))
    assert report.failures() == []
    ws = report.ws
    # The fuzz reached every part it means to: the websocket layer's own closes, policy closes, size, version.
    assert {1002, 1007, 1008, 1009, 4400} <= set(ws.closes), ws.closes
    assert ws.counted["bad_json"] and ws.counted["binary"] and ws.counted["unknown_widget"], ws.counted
    assert set(report.redis.rejected) >= {"too_large", "json", "schema", "version", "unknown_type", "batch"}
    assert report.target_events == report.redis.valid_objects
    # The default JOBPULSE_MAX_CLIENTS_PER_ADDRESS (200) held against 300 connects from one address.
    assert (report.flood.admitted, report.flood.refused[4429]) == (200, 100)
    assert report.rss["after_redis"] < report.rss["start"] + 200 * 2**20, report.rss


def test_address_limits_count_open_sockets_and_connects() -> None:
    """Per address: at most `max_open` open, at most `max_connects` connects over a sliding window; 0 is no limit."""
    limits = AddressLimits(max_open=2, max_connects=5, window=10.0)
    assert limits.admit("a", 100.0) is None and limits.admit("a", 100.0) is None
    assert "open" in (limits.admit("a", 100.1) or "")  # a third socket from a (its third connect)
    assert limits.admit("b", 100.1) is None  # b is another address
    limits.release("a")
    assert limits.admit("a", 100.2) is None  # one closed: room again (the fourth connect)
    limits.release("a")
    assert limits.admit("a", 100.3) is None  # the fifth
    assert "connects" in (limits.admit("a", 100.4) or "")  # the sixth within 10 s, though one socket is free
    assert limits.admit("", 100.4) is None  # no address: nothing to limit by
    assert set(limits.opened) == {"a", "b"}
    for _ in range(2):
        limits.release("a")
    assert set(limits.opened) == {"b"}
    # The window slides: just after it turns, the last one still weighs nearly whole; near its end, hardly.
    rate = AddressLimits(max_open=0, max_connects=10, window=10.0)
    assert all(rate.admit("c", 109.9) is None for _ in range(10))
    assert rate.admit("c", 110.5) is not None
    assert rate.admit("c", 119.0) is None
    unlimited = AddressLimits(max_open=0, max_connects=0)
    assert all(unlimited.admit("x", 1.0) is None for _ in range(1000))


async def _open(server: LiveServer, source: str, headers: dict[str, str] | None = None) -> hostile.RawSocket | int:
    """A socket past its welcome, or the close code it was refused with."""
    sock = await hostile.RawSocket.open("127.0.0.1", server.port, source=source, headers=headers)
    try:
        async with asyncio.timeout(10):
            welcome = await sock.read_json()
    except hostile.Closed as closed:
        return closed.code or 0
    assert welcome["type"] == "welcome"
    return sock


async def _closed(sock: hostile.RawSocket) -> int | None:
    """Read until the server's close frame; its code."""
    try:
        async with asyncio.timeout(5):
            while True:
                await sock.read()
    except hostile.Closed as closed:
        return closed.code


async def _still_open(sock: hostile.RawSocket) -> bool:
    sock.write(hostile.text(json.dumps({"type": "ping", "t": 1})))
    try:
        async with asyncio.timeout(5):
            while (await sock.read_json())["type"] != "pong":
                pass
    except hostile.Closed:
        return False
    return True


async def test_one_address_over_its_limit_is_refused_others_get_through(redis_url: str, prefix: str) -> None:
    """JOBPULSE_MAX_CLIENTS_PER_ADDRESS: one address past it is refused with 4429 while other addresses connect;
    behind a trusted proxy each X-Forwarded-For address counts on its own, and an untrusted peer's header is
    ignored. Refusals are counted in /metrics."""
    env = {"JOBPULSE_MAX_CLIENTS_PER_ADDRESS": "3", "JOBPULSE_CONNECTS_PER_ADDRESS": "0"}
    server = LiveServer(redis_url, prefix, env=env).start()
    opened: list[hostile.RawSocket] = []
    try:

        async def connect(source: str, forwarded: str | None = None) -> hostile.RawSocket | int:
            result = await _open(server, source, {"X-Forwarded-For": forwarded} if forwarded else None)
            if isinstance(result, hostile.RawSocket):
                opened.append(result)
            return result

        # Three from 127.0.0.2 get in; the fourth is refused; 127.0.0.3 and 127.0.0.4 still get in.
        first = [await connect("127.0.0.2") for _ in range(3)]
        assert all(isinstance(s, hostile.RawSocket) for s in first)
        assert await connect("127.0.0.2") == 4429
        assert all([isinstance(await connect(source), hostile.RawSocket) for source in ("127.0.0.3", "127.0.0.4")])
        # Those let in stay up, and a socket that closes makes room for its address.
        assert all([await _still_open(s) for s in first if isinstance(s, hostile.RawSocket)])
        closing = first[0]
        assert isinstance(closing, hostile.RawSocket)
        closing.write(hostile.frame(hostile.OP_CLOSE, (1000).to_bytes(2, "big")))
        assert await _closed(closing) == 1000
        await asyncio.sleep(0.2)
        assert isinstance(await connect("127.0.0.2"), hostile.RawSocket)

        # 127.0.0.1 is a trusted proxy (uvicorn's default --forwarded-allow-ips): the forwarded address counts.
        for client in ("10.1.0.1", "10.1.0.2"):
            assert all([isinstance(await connect("127.0.0.1", client), hostile.RawSocket) for _ in range(3)])
            assert await connect("127.0.0.1", client) == 4429
        assert isinstance(await connect("127.0.0.1", "10.1.0.3"), hostile.RawSocket)
        # 127.0.0.5 is not trusted: its X-Forwarded-For is ignored, so it cannot spread itself over addresses.
        forged = [await connect("127.0.0.5", f"10.2.0.{i}") for i in range(4)]
        assert forged[3] == 4429 and all(isinstance(s, hostile.RawSocket) for s in forged[:3])

        metrics = _server(server).metrics()
        assert metrics[("jobpulse_http_events_total", 'what="ws_address_limit"')] == 4
    finally:
        for sock in opened:
            sock.close()
        output = server.finish()
    assert "Traceback" not in output


async def test_a_connect_flood_from_one_address_is_cut_at_the_rate(redis_url: str, prefix: str) -> None:
    """JOBPULSE_CONNECTS_PER_ADDRESS: past it in 10 s an address is refused (4429) though it holds nothing open;
    another address connects meanwhile."""
    env = {"JOBPULSE_CONNECTS_PER_ADDRESS": "20"}
    server = LiveServer(redis_url, prefix, env=env).start()
    try:
        results = []
        for _ in range(30):
            result = await _open(server, "127.0.0.6")
            if isinstance(result, hostile.RawSocket):
                result.close()
            results.append(result if isinstance(result, int) else "open")
        assert results[:20] == ["open"] * 20
        assert set(results[20:]) == {4429}
        other = await _open(server, "127.0.0.7")
        assert isinstance(other, hostile.RawSocket)
        other.close()
    finally:
        output = server.finish()
    assert "Traceback" not in output


async def test_hostile_entries_in_the_replay_stream(redis_url: str, prefix: str) -> None:
    """P:stream is replayed at start: bad entries there are rejected and counted like live messages, the valid
    ones around them folded, and reconciling goes on (a string that is not UTF-8 used to end the reconcile loop)."""
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    valid = {"v": 1, "type": "job", "id": "s:1", "src": "s", "seq": 1, "ts": 1.0, "event": "queued", "job": "j1",
             "channel": "email", "fn": "mail.send", "attempt": 1}  # fmt: skip
    entries = [b'{"v":1,"type":"job","src":"\xff\xfe","seq":1}', b"[" * 5000, b'{"v":1,"type":{"a":1}}',
               b'[{"v":1,"type":"heartbeat","src":"\xed\xa0\x80"}]', json.dumps(valid).encode()]  # fmt: skip
    try:
        for entry in entries:
            await client.xadd(f"{prefix}:stream", {"m": entry})
    finally:
        await client.aclose()
    server = LiveServer(redis_url, prefix, env={"JOBPULSE_RECONCILE_S": "0.5"}).start()
    try:
        jobpulse = _server(server)
        for _ in range(200):
            intake = jobpulse.stats()["intake"]
            if intake["events"]:
                break
            await asyncio.sleep(0.1)
        assert intake["rejected"] == {"json": 3, "unknown_type": 1}
        reconciled = json.loads(jobpulse.get("/api/widgets/health")[1])["data"]["reconciled"]
        await asyncio.sleep(1.5)
        assert json.loads(jobpulse.get("/api/widgets/health")[1])["data"]["reconciled"] > reconciled
    finally:
        output = server.finish()
    assert "Traceback" not in output


async def test_connects_without_a_user_do_not_spend_the_signed_in_budget(redis_url: str, prefix: str) -> None:
    """With sign-in on, 30 connects that bring no user from one address (each refused 4401, past the rate 4429)
    leave that address's own budget alone: a signed-in page from it still connects."""
    env = users_env(JOBPULSE_CONNECTS_PER_ADDRESS="20")
    server = LiveServer(redis_url, prefix, env=env).start()
    try:
        refused = [await _open(server, "127.0.0.8") for _ in range(30)]
        assert refused[:20] == [4401] * 20 and set(refused[20:]) == {4429}, refused
        signed_in = await _open(server, "127.0.0.8", headers=bearer("oscar"))
        assert isinstance(signed_in, hostile.RawSocket), signed_in
        signed_in.close()
    finally:
        output = server.finish()
    assert "Traceback" not in output
