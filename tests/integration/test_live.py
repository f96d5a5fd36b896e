"""End to end over real parts: events published to a real Redis reach a real websocket client as the right patches."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import redis.asyncio as aredis
import websockets

from tests.conftest import LiveServer, get
from tests.integration.helpers import LiveClient, Publisher

pytestmark = pytest.mark.integration

ALL = ["counters", "published", "live_jobs", "failures", "scheduled", "runners", "health"]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict = json.loads(response.read())
        return body


async def close_code(ws: websockets.ClientConnection) -> int | None:
    """Read until the server closes; return its close code."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def test_job_events_come_out_as_the_right_patches(live_server, aredis_client):
    """A job's lifecycle, a runner's beat and a depth report published to Redis show up in the client's widgets."""
    pub = Publisher(aredis_client, live_server.prefix)
    client = await LiveClient.connect(live_server.ws_url, ALL)
    await client.wait_for(lambda c: set(c.data) == set(ALL))

    await pub.publish(pub.beat("r1", concurrency=2), pub.job("queued", "j1", cid="order-1"),
                      pub.depth(email=(1, 0, 0)))  # fmt: skip
    await client.wait_for(lambda c: c.data["live_jobs"]["rows"]["j1"]["status"] == "queued"
                          and c.data["runners"]["rows"]["r1"]["status"] == "online"
                          and c.data["counters"]["pending"]["v"] == 1)  # fmt: skip
    await pub.publish(pub.job("started", "j1", runner="r1"), pub.depth(email=(0, 1, 0)))
    await client.wait_for(lambda c: c.data["live_jobs"]["rows"]["j1"]["status"] == "running"
                          and c.data["counters"]["running"]["v"] == 1)  # fmt: skip
    await pub.publish(pub.job("failed", "j1", runner="r1", error="ValueError: bad input\nsecond line",
                              traceback="Traceback...\nValueError: bad input"), pub.depth(email=(0, 0, 0)))  # fmt: skip
    await client.wait_for(lambda c: "j1" not in c.data["live_jobs"]["rows"] and c.data["failures"]["order"]
                          and c.data["counters"]["failed"]["v"] == 1)  # fmt: skip
    failure = client.data["failures"]["rows"][client.data["failures"]["order"][0]]
    assert failure["error"] == "ValueError: bad input"
    assert client.gaps == 0
    # What the client assembled from snapshot + patches equals what the server holds now.
    for name in ALL:
        if name == "health":
            continue
        assert client.data[name] == get_json(f"{live_server.url}/api/widgets/{name}")["data"], name
    await client.close()


async def test_a_batch_message_folds_every_object(live_server, aredis_client):
    """A JSON-array batch on the events channel folds all its objects."""
    pub = Publisher(aredis_client, live_server.prefix)
    client = await LiveClient.connect(live_server.ws_url, ["live_jobs"])
    await pub.publish(json.dumps([pub.job("queued", f"b{i}") for i in range(5)]).encode())
    await client.wait_for(lambda c: c.data["live_jobs"]["queued"] == 5)
    await client.close()


async def test_malformed_redis_messages_are_counted_and_harmless(live_server, aredis_client):
    """Garbage, wrong schemas and newer versions are counted by reason; good messages keep flowing."""
    pub = Publisher(aredis_client, live_server.prefix)
    client = await LiveClient.connect(live_server.ws_url, ["health", "live_jobs"])
    newer = json.dumps({**pub.job("queued", "x"), "v": 9}).encode()
    mystery = b'{"v":1,"type":"mystery","src":"a","seq":1,"ts":1}'
    await pub.publish(b"\x00\xffgarbage", b'{"v":1,"type":"job"}', newer, mystery, b"[" * 100_000)
    await pub.publish(pub.job("queued", "good"))
    await client.wait_for(lambda c: "good" in c.data["live_jobs"]["rows"]
                          and sum(c.data["health"]["rejected"].values()) == 5)  # fmt: skip
    assert set(client.data["health"]["rejected"]) == {"json", "schema", "version", "unknown_type"}
    assert get_json(f"{live_server.url}/readyz")["ready"] is True
    await client.close()


async def test_bad_websocket_frames_get_error_frames(live_server):
    """Bad client frames are answered with error frames naming the problem; the connection stays usable."""
    client = await LiveClient.connect(live_server.ws_url, ["counters", "nope"])
    await client.wait_for(lambda c: c.errors and "counters" in c.data)
    assert client.errors[0]["code"] == "unknown_widget"
    for frame in ["{", "[]", '{"type":"dance"}', '{"type":"sub","widgets":7}',
                  '{"type":"cmd","id":"c1","action":"purge","args":{}}']:  # fmt: skip
        await client.send(frame)
    await client.ws.send(b"\x01\x02")
    await client.wait_for(lambda c: len(c.errors) >= 6 and "c1" in c.acks)
    codes = [e["code"] for e in client.errors[1:]]
    assert codes == ["bad_json", "bad_frame", "bad_frame", "bad_frame", "binary"]
    # A command with an id is answered by its ack, never an error frame (docs/protocol.md 4.2).
    assert client.acks["c1"]["ok"] is False
    assert client.acks["c1"]["error"] == {"code": "unknown_action", "message": "unknown action 'purge'"}
    await client.send({"type": "ping", "t": 42})
    await client.wait_for(lambda c: c.pongs)
    assert client.pongs[0]["t"] == 42
    await client.close()


async def test_oversized_frames_and_floods_of_bad_frames_close_the_connection(live_server):
    """A frame over the size limit closes with 1009; a flood of bad frames closes with 1008."""
    async with websockets.connect(live_server.ws_url) as ws:
        await ws.recv()
        await ws.send("x" * 100_000)
        assert await close_code(ws) == 1009
    async with websockets.connect(live_server.ws_url) as ws:
        await ws.recv()
        for _ in range(25):
            await ws.send("not json")
        assert await close_code(ws) == 1008


async def test_unsupported_protocol_version_closes_with_4400(live_server):
    """A hello with another protocol version gets an error and close code 4400 (the page reloads)."""
    async with websockets.connect(live_server.ws_url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "hello", "v": 2, "widgets": []}))
        error = json.loads(await ws.recv())
        assert error["code"] == "bad_version"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4400


async def test_resume_after_reconnect_sends_only_missed_patches(live_server, aredis_client):
    """A client that reconnects with its epoch and seqs gets the patches it missed, not snapshots."""
    pub = Publisher(aredis_client, live_server.prefix)
    first = await LiveClient.connect(live_server.ws_url, ["counters"])
    await first.wait_for(lambda c: "counters" in c.data)
    await first.close()
    for i in range(3):
        await pub.publish(pub.depth(email=(i + 1, 0, 0)))
        await asyncio.sleep(0.1)
    epoch = first.welcome["epoch"]
    second = await LiveClient.connect(live_server.ws_url, ["counters"], epoch=epoch, resume=first.seqs, previous=first)
    await second.wait_for(lambda c: c.data["counters"]["pending"]["v"] == 3)
    assert second.frames and all(f["type"] == "patch" for f in second.frames)
    assert second.gaps == 0
    await second.close()


async def test_restart_rebuilds_the_fleet_from_keys_and_keeps_history(redis_url, prefix, aredis_client):
    """After a restart, runners come back from their keys and the durable series and failures are intact."""
    pub = Publisher(aredis_client, prefix)
    beat = pub.beat("keyed-runner", interval=2.0)
    await aredis_client.sadd(f"{prefix}:runners", "keyed-runner", "ghost-runner")
    await aredis_client.set(f"{prefix}:runner:keyed-runner", json.dumps(beat), ex=30)
    await aredis_client.hset(f"{prefix}:depth", "email", json.dumps({"queued": 7, "inflight": 2, "scheduled": 1}))
    server = LiveServer(redis_url, prefix, env={"JOBPULSE_PERSIST_S": "0.3"}).start()
    try:
        client = await LiveClient.connect(server.ws_url, ["runners", "counters", "failures"])
        await client.wait_for(lambda c: c.data["runners"]["rows"]["keyed-runner"]["status"] == "online"
                              and c.data["runners"]["rows"]["ghost-runner"]["status"] == "offline"
                              and c.data["counters"]["pending"]["v"] == 7)  # fmt: skip
        await pub.publish(pub.job("completed", "done-1", runner="keyed-runner"),
                          pub.job("failed", "bad-1", runner="keyed-runner", error="Boom"))  # fmt: skip
        await client.wait_for(lambda c: c.data["counters"]["completed"]["v"] == 1 and c.data["failures"]["order"])
        await client.close()
        await asyncio.sleep(0.8)  # let a persist pass run
        server.stop()
        server.start()
        client = await LiveClient.connect(server.ws_url, ["runners", "counters", "failures"])
        await client.wait_for(lambda c: c.data["counters"]["completed"]["v"] == 1
                              and c.data["counters"]["failed"]["v"] == 1 and len(c.data["failures"]["order"]) == 1
                              and "keyed-runner" in c.data["runners"]["rows"])  # fmt: skip
        await client.close()
    finally:
        output = server.finish()
    assert "Traceback" not in output


async def test_keys_written_just_after_connecting_are_read_a_second_later(redis_url, prefix, aredis_client):
    """After an outage the job system's writers reconnect with jobpulse, and what they write can land just after
    jobpulse's first read of the keys: a second read a second after connecting learns it, not the reconcile timer
    (30 s here). Redis's MONITOR shows when the first read happened, so the write lands after it every time."""
    depth = f"{prefix}:depth"
    await aredis_client.hset(depth, "email", json.dumps({"queued": 3, "inflight": 0, "scheduled": 0}))
    watcher = aredis.Redis.from_url(redis_url)
    async with watcher.monitor() as monitor:
        server = LiveServer(redis_url, prefix, env={"JOBPULSE_RECONCILE_S": "30"})
        server.start()
        try:
            async with asyncio.timeout(10):
                while (await monitor.next_command())["command"] != f"HGETALL {depth}":
                    pass
            await aredis_client.hset(depth, "email", json.dumps({"queued": 8, "inflight": 0, "scheduled": 0}))
            written = time.monotonic()
            client = await LiveClient.connect(server.ws_url, ["counters"])
            await client.wait_for(lambda c: c.data["counters"]["pending"]["v"] == 8, within=10)
            learnt = time.monotonic() - written
            await client.close()
        finally:
            output = server.finish()
    await watcher.aclose()
    assert learnt < 5, f"learnt {learnt:.1f} s after the write: the reconcile timer, not the second read"
    assert "Traceback" not in output


async def test_a_seq_gap_is_healed_from_the_replay_stream(live_server, aredis_client):
    """Events lost from pub/sub but kept in the stream are replayed once a later event reveals the gap."""
    pub = Publisher(aredis_client, live_server.prefix)
    client = await LiveClient.connect(live_server.ws_url, ["live_jobs", "health"])
    await pub.publish(pub.job("queued", "seen-1", src="app"), stream=True)
    await client.wait_for(lambda c: "seen-1" in c.data["live_jobs"]["rows"])
    await pub.stream_only(*[pub.job("queued", f"lost-{i}", src="app") for i in range(3)])
    await pub.publish(pub.job("queued", "seen-2", src="app"), stream=True)
    await client.wait_for(lambda c: all(f"lost-{i}" in c.data["live_jobs"]["rows"] for i in range(3)))
    assert client.data["health"]["gaps"] == 1
    assert client.data["health"]["missed"] == 3
    await client.close()


async def test_events_while_jobpulse_was_down_are_replayed_at_start(redis_url, prefix, aredis_client):
    """A source that keeps the replay stream loses no job history across a jobpulse restart."""
    pub = Publisher(aredis_client, prefix)
    await pub.stream_only(pub.job("scheduled", "nightly", src="app", run_at=time.time() + 3600, fn="reports.nightly"))
    server = LiveServer(redis_url, prefix).start()
    try:
        client = await LiveClient.connect(server.ws_url, ["scheduled"])
        await client.wait_for(lambda c: "nightly" in c.data["scheduled"]["rows"])
        await client.close()
    finally:
        server.close()


async def test_a_client_that_never_reads_is_closed_and_others_keep_going(redis_url, prefix, aredis_client):
    """A socket that stops reading is cut off after the stall timeout; a healthy client is not held up."""
    env = {"JOBPULSE_STALL_TIMEOUT_S": "1", "JOBPULSE_CLIENT_QUEUE": "4"}
    server = LiveServer(redis_url, prefix, env=env).start()
    pub = Publisher(aredis_client, prefix)
    # A raw websocket client with a tiny receive buffer that sends hello and then never reads.
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
        assert b"101" in sock.recv(4096)
        hello = json.dumps({"type": "hello", "v": 1, "widgets": ["failures", "live_jobs"]}).encode()
        sock.sendall(bytes([0x81, 0x80 | 126]) + len(hello).to_bytes(2, "big") + b"\x00" * 4 + hello)
        healthy = await LiveClient.connect(server.ws_url, ["failures", "live_jobs"])
        # Every round replaces all ten rows of both widgets with long ids, so each tick's patch is large.
        long = "x" * 180
        deadline = time.monotonic() + 40
        n = 0
        stats = {}
        while time.monotonic() < deadline:
            batch = [pub.job("failed", f"f{n}-{i}-{long}", runner="r", fn=f"fn.{long}{i}", error="E" * 150)
                     for i in range(10)]  # fmt: skip
            batch += [pub.job("started", f"s{n}-{i}-{long}", runner="r", fn=f"fn.{long}{i}") for i in range(10)]
            batch += [pub.job("completed", f"s{n - 1}-{i}-{long}", runner="r") for i in range(10)]
            await pub.publish(*batch)
            n += 1
            await asyncio.sleep(0.03)
            if n % 10 == 0:
                stats = get_json(f"{server.url}/api/stats")
                if stats["hub"]["stalled_closed"] >= 1:
                    break
        assert stats["hub"]["stalled_closed"] == 1, stats
        assert stats["clients"] == 1
        last = f"f{n - 1}-9-{long}"
        await healthy.wait_for(lambda c: last in [r["job"] for r in c.data["failures"]["rows"].values()])
        assert healthy.gaps == 0
        await healthy.close()
    finally:
        sock.close()
        output = server.finish()
    assert "Traceback" not in output


def _raw_subscriber(port: int, widgets: list[str]) -> socket.socket:
    """A websocket client that upgrades, sends its hello and then reads nothing (its kernel still takes bytes)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
    assert b"101" in sock.recv(4096)
    hello = json.dumps({"type": "hello", "v": 1, "widgets": widgets}).encode()
    sock.sendall(bytes([0x81, 0x80 | len(hello)]) + b"\x00" * 4 + hello)
    return sock


async def test_a_client_that_reads_nothing_of_a_quiet_stream_is_closed_within_the_stall_bound(
    redis_url, prefix, aredis_client
):
    """A few small patches a second fit in the socket buffers for minutes: the hub's unanswered ping, not a full
    buffer, closes the client that reads none of them (docs/protocol.md 3.5), while a client that reads stays."""
    from server.settings import Settings
    from server.streams.hubcore import HubLimits

    stall = 1.0
    server = LiveServer(redis_url, prefix, env={"JOBPULSE_STALL_TIMEOUT_S": str(stall)}).start()
    goal = HubLimits(stall_timeout=stall, beat=Settings().beat_s).stall_bound  # the documented bound
    pub = Publisher(aredis_client, prefix)
    sock = None
    try:
        healthy = await LiveClient.connect(server.ws_url, ["counters"])
        sock = _raw_subscriber(server.port, ["counters"])
        stopped = time.monotonic()
        closed_after = None
        n = 0
        while time.monotonic() < stopped + 3 * goal:
            await pub.publish(pub.depth(email=(n % 50, 1, 0)))
            n += 1
            await asyncio.sleep(0.1)
            if get_json(f"{server.url}/api/stats")["hub"]["stalled_closed"] >= 1:
                closed_after = time.monotonic() - stopped
                break
        assert closed_after is not None, f"a deaf client of a quiet stream still open after {3 * goal:.1f} s"
        assert closed_after >= stall, closed_after
        print(f"closed {closed_after:.2f} s after it stopped reading (bound {goal:.2f} s, stall timeout {stall} s)")
        # The reader answered every ping: open, and still getting the stream, a few stall timeouts later.
        await asyncio.sleep(3 * stall)
        await pub.publish(pub.depth(email=(999, 1, 0)))
        await healthy.wait_for(lambda c: c.data["counters"]["pending"]["v"] >= 999)
        stats = get_json(f"{server.url}/api/stats")
        assert stats["clients"] == 1 and stats["hub"]["stalled_closed"] == 1, stats
        await healthy.close()
    finally:
        if sock is not None:
            sock.close()
        output = server.finish()
    assert "Traceback" not in output


async def test_the_job_health_endpoint_reports_status_rules_and_channels(live_server, aredis_client):
    """GET /api/job/health: overall status and the rule that set it, broker, runners, channels, rules fired."""
    pub = Publisher(aredis_client, live_server.prefix)
    await pub.publish(pub.beat("r1", channels=["email"]), pub.depth(email=(2, 1, 0), orphan=(4, 0, 0)))
    deadline = time.monotonic() + 5
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            body = get_json(f"{live_server.url}/api/job/health")
            status = 200
        except urllib.error.HTTPError as exc:  # critical answers 503, still with the JSON body
            status, body = exc.code, json.loads(exc.read())
            exc.close()
        if body.get("rules_fired"):
            break
        await asyncio.sleep(0.2)
    assert (status, body["status"]) == (503, "critical")
    assert body["rule"] == "orphan: backlog and no runner"
    assert body["broker"]["connected"] is True
    assert body["runners"]["total"] == 1
    assert body["channels"]["orphan"]["status"] == "critical"
    assert body["channels"]["orphan"]["rules"] == ["no_runner"]
    assert body["channels"]["email"]["status"] == "ok"
    assert [r["rule"] for r in body["rules_fired"]] == ["no_runner"]


async def test_the_start_line_shows_no_password(redis_url, prefix):
    """REDIS_URL with a password (Redis's default user takes any while it has none): the log says `***`."""
    parts = urllib.parse.urlsplit(redis_url)
    secret_url = parts._replace(netloc=f"default:s3cret-pw@{parts.hostname}:{parts.port}").geturl()
    server = LiveServer(secret_url, prefix, env={"JOBPULSE_LOG_LEVEL": "info"}).start()
    output = server.finish()
    assert f"source native at redis://default:***@{parts.hostname}:{parts.port}" in output, output
    assert "s3cret-pw" not in output, output


async def test_numbers_out_of_range_are_rejected_in_messages_and_in_keys(live_server, aredis_client):
    """A 4,300-digit count or seq, or a time past 10^11, rejects its object, in a message and in the keys a reconcile
    reads, counted as schema; pages, /metrics, /api/stats and persistence keep working (a server restart too)."""
    prefix, huge = live_server.prefix, int("9" * 4300)
    pub = Publisher(aredis_client, prefix)
    client = await LiveClient.connect(live_server.ws_url, ["health", "counters", "channels", "runners"])
    deep = pub.depth(email=(1, 0, 0))
    deep["channels"]["email"]["queued"] = huge
    far = {**pub.beat("far-runner"), "ts": 1e300}
    numbered = {**pub.job("queued", "j-huge"), "seq": huge}
    await pub.publish(json.dumps(deep).encode(), json.dumps(far).encode(), json.dumps(numbered).encode())
    # The keys a reconcile reads: a depth hash entry and a runner key with numbers out of range.
    await aredis_client.hset(f"{prefix}:depth", "email", json.dumps({"queued": huge, "inflight": 0, "scheduled": 0}))
    await aredis_client.sadd(f"{prefix}:runners", "huge-runner")
    await aredis_client.set(f"{prefix}:runner:huge-runner", json.dumps({**pub.beat("huge-runner"), "seq": huge}))
    await pub.publish(pub.job("queued", "fine"), pub.depth(reports=(2, 0, 0)))
    await client.wait_for(lambda c: c.data["counters"]["pending"]["v"] >= 1
                          and c.data["health"]["rejected"].get("schema", 0) >= 5, within=15)  # fmt: skip
    assert "email" not in client.data["channels"]["rows"] and "far-runner" not in client.data["runners"]["rows"]
    # Registered, but its key's beat is rejected: known only from the registry, as a runner that never beat.
    assert client.data["runners"]["rows"]["huge-runner"]["status"] == "offline"
    for path in ("/api/stats", "/api/widgets/counters", "/api/widgets/health", "/readyz", "/metrics"):
        status, body = get(live_server.url + path)
        assert status == 200, (path, body[:500])
    assert client.gaps == 0
    await client.close()


async def test_dev_mode_serves_loopback_names_only(live_server):
    """A page on a rebinding domain (evil.example resolving to 127.0.0.1) reaches the same socket with its own
    name in Host and Origin: dev mode's everyone-admin is not for it, over HTTP or the websocket."""
    port = live_server.port
    status, body = get(live_server.url + "/admin/jobs", {"Host": f"evil.example:{port}"})
    assert status == 403 and b"only to this machine" in body
    assert get(live_server.url + "/api/widgets/counters", {"Host": f"evil.example:{port}"})[0] == 403
    assert get(f"http://localhost:{port}/admin/jobs")[0] == 200
    sock = socket.create_connection(("127.0.0.1", port))
    async with websockets.connect(
        f"ws://evil.example:{port}/ws", sock=sock, origin=websockets.Origin(f"http://evil.example:{port}")
    ) as ws:
        assert await close_code(ws) == 4401


def test_the_documents_the_pages_link_to_are_served_as_text(live_server):
    """The Operations page links to the protocol: /docs/<name>.md serves docs/*.md (the wheel ships them) as text,
    and nothing else."""
    status, body = get(live_server.url + "/docs/protocol.md")
    assert status == 200 and b"## 4." in body and b"## 5." in body
    status, page = get(live_server.url + "/admin/jobs/manage")
    assert status == 200 and b'href="/docs/protocol.md"' in page
    assert get(live_server.url + "/docs/nope.md")[0] == 404
    assert get(live_server.url + "/docs/..%2F..%2Fsetup.py")[0] == 404


async def test_the_demos_synthetic_history_fills_the_long_views_and_is_labelled(redis_url, prefix):
    """`jobpulse demo` writes four weeks of synthetic hours into an empty store: the 14-day and 24-hour KPI views
    show them, labelled with `synthetic_until`; the per-channel hour chart leaves them as gaps (they have no channel
    numbers); a store that already holds hours gets none."""
    from server.simulator.history import DAYS, backfill

    now = time.time()
    assert await backfill(redis_url, prefix, now, rate=20.0, seed=3) == DAYS * 24
    assert await backfill(redis_url, prefix, now, rate=20.0, seed=3) == 0  # never over jobpulse's own history
    server = LiveServer(redis_url, prefix).start()
    keys = ["kpi?gran=days&metric=published", "kpi?gran=hours&metric=failed", "kpi?gran=minutes&metric=published",
            "chart?gran=hours&metric=published"]  # fmt: skip
    try:
        client = await LiveClient.connect(server.ws_url, keys)
        await client.wait_for(lambda c: set(keys) <= set(c.data))
        data = client.data[keys[0]]
        assert data["synthetic_until"] == float(int(now // 3600) * 3600)
        assert len(data["points"]) >= 13 and data["value"] > 100_000 and "prev" in data  # ~20 jobs/s for two weeks
        hours = client.data[keys[1]]
        assert "synthetic_until" in hours and len(hours["points"]) >= 23
        assert "synthetic_until" not in client.data[keys[2]]  # the last hour is jobpulse's own
        series = client.data[keys[3]]["series"]
        assert all(int(h) * 3600 >= data["synthetic_until"] for s in series.values() for h in s)
        await client.close()
    finally:
        output = server.finish()
    assert "Traceback" not in output


async def test_deflate_compresses_each_message_once_for_every_client(redis_url, prefix, aredis_client):
    """With JOBPULSE_WS_DEFLATE, `jobpulse serve` negotiates permessage-deflate without context takeover and the hub
    writes the same compressed frame to every client (server/wsdeflate.py): each client decodes the same widgets the
    server holds, with nothing missed."""
    server = LiveServer(redis_url, prefix, env={"JOBPULSE_WS_DEFLATE": "1"}, cli=True).start()
    try:
        pub = Publisher(aredis_client, prefix)
        widgets = ["live_jobs", "counters", "failures"]
        clients = [await LiveClient.connect(server.ws_url, widgets) for _ in range(3)]
        for client in clients:
            assert client.ws.response is not None
            extensions = client.ws.response.headers["Sec-WebSocket-Extensions"]
            assert "permessage-deflate" in extensions and "server_no_context_takeover" in extensions
            await client.wait_for(lambda c: set(c.data) == set(widgets))
        for n in range(20):
            await pub.publish(pub.job("queued", f"j{n}", cid=f"order-{n}"), pub.depth(email=(n + 1, 0, 0)))
        await pub.publish(pub.job("failed", "j3", error="ValueError: bad input"), pub.depth(email=(19, 0, 0)))
        for client in clients:
            await client.wait_for(lambda c: c.data["counters"]["failed"]["v"] == 1 and c.data["failures"]["order"])
        for name in widgets:
            held = get_json(f"{server.url}/api/widgets/{name}")["data"]
            assert all(c.data[name] == held for c in clients), name
        assert all(c.gaps == 0 for c in clients)
        stats = get_json(f"{server.url}/api/stats")["hub"]
        assert stats["frame_writes"] > 0  # the shared, pre-compressed frames, not a compression per client
        for client in clients:
            await client.close()
    finally:
        output = server.finish()
    assert "Traceback" not in output, output
