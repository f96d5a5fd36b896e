"""Outbound alerts against real parts: jobpulse processes, Redis, and an HTTP receiver that fails, hangs, recovers.

A hot issue is made the way production makes one: the broker reports a backlog
on a channel no runner consumes (rule no_runner), and cleared by reporting the
backlog gone. The receiver checks what on-call tooling would: each notification
accepted once, signed, in order, retried through failures with backoff.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from server.notify.targets import signature, verify
from server.redis_server import free_port
from tests.conftest import TEST_USERS, LiveServer, bearer, get, users_env
from tests.integration.helpers import LiveClient, Publisher
from tests.receiver import HANG, Receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "test-signing-key"


def alert_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        "JOBPULSE_ALERT_WEBHOOKS": receiver.url + "/hooks/jobpulse",
        "JOBPULSE_ALERT_WEBHOOK_SECRET": SECRET,
        "JOBPULSE_ALERT_MIN_OPEN_S": "0.5",
        "JOBPULSE_ALERT_RETRY_S": "0.4",
        "JOBPULSE_CLOCK_MS": "250",
        **extra,
    }


async def report(publisher: Publisher, queued: int) -> None:
    """The broker reports `queued` jobs on `email`, as a real one does: the authoritative `P:depth` key (which
    jobpulse reconciles from every few seconds) and a `depth` message (docs/protocol.md 1.3)."""
    message = publisher.depth(email=(queued, 0, 0))
    entry = {**message["channels"]["email"], "ts": message["ts"]}
    await publisher.client.hset(f"{publisher.prefix}:depth", "email", json.dumps(entry))
    await publisher.publish(message)


def accepted_kinds(receiver: Receiver, alert: str) -> list[str]:
    return [r.json()["kind"] for r in receiver.accepted() if r.json()["alert"]["id"] == alert]


async def raise_and_clear(publisher: Publisher, receiver: Receiver, within: float = 30.0) -> float:
    """A backlog on `email` with no runner (no_runner fires), then no backlog (it resolves): one more of each."""
    fired = accepted_kinds(receiver, "no_runner:email").count("firing")
    await report(publisher, 7)
    await receiver.wait_for(lambda r: accepted_kinds(r, "no_runner:email").count("firing") > fired, within)
    cleared = time.time()
    await report(publisher, 0)
    await receiver.wait_for(lambda r: accepted_kinds(r, "no_runner:email").count("resolved") > fired, within)
    return cleared


def check_delivered_once(receiver: Receiver) -> list[dict[str, Any]]:
    """Every accepted notification verified and unique; returns their bodies in arrival order."""
    bodies = []
    for request in receiver.accepted():
        assert request.path == "/hooks/jobpulse"
        assert verify(SECRET, request.headers["x-jobpulse-signature"], request.body, time.time())
        body = request.json()
        assert request.headers["x-jobpulse-delivery"] == body["id"]
        assert request.headers["x-jobpulse-event"] == body["kind"]
        bodies.append(body)
    counts = Counter(b["id"] for b in bodies)
    assert all(n == 1 for n in counts.values()), f"delivered more than once: {counts}"
    return bodies


async def test_a_hot_issue_fires_and_resolves_once_through_a_receiver_that_fails_then_recovers(
    redis_url: str, prefix: str, aredis_client: Any
) -> None:
    receiver = await Receiver.start(answers=[503, 502])  # the first two attempts fail
    server = LiveServer(redis_url, prefix, env=alert_env(receiver)).start()
    try:
        cleared = await raise_and_clear(Publisher(aredis_client, prefix), receiver)
        bodies = check_delivered_once(receiver)
        assert [b["kind"] for b in bodies] == ["firing", "resolved"]
        firing, resolved = bodies
        assert resolved["at"] >= cleared - 0.01  # resolved when the backlog went, not before
        alert = firing["alert"]
        assert (alert["rule"], alert["key"], alert["severity"]) == ("no_runner", "email", "critical")
        assert "no live runner consumes email" in alert["detail"]
        assert (
            resolved["alert"]["episode"] == alert["episode"] and resolved["alert"]["resolved_at"] >= alert["fired_at"]
        )
        # The firing took three attempts, the retries spaced by the backoff (0.4 s, then 0.8 s, each half jittered).
        attempts = [r for r in receiver.requests if r.json()["id"] == firing["id"]]
        assert [r.status for r in attempts] == [503, 502, 200]
        gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps
        # The delivery log in Redis says the same.
        log = [line async for line in _log(aredis_client, prefix)]
        assert [e["outcome"] for e in log if e["id"] == firing["id"]] == ["retry", "retry", "sent"]
        # Nothing waits for the target any more: its backlog counter is back to 0 (once the last outcome is
        # recorded, a moment after the receiver answered).
        for _ in range(50):
            counters = await aredis_client.hgetall(f"{prefix}:jp:notify:targets")
            backlog = [int(v) for k, v in counters.items() if k.endswith(b":backlog")]
            if backlog == [0]:
                break
            await asyncio.sleep(0.1)
        assert backlog == [0]
        # And /metrics counts them by target and outcome (the last one once its answer is read: soon after).
        for _ in range(50):
            counted = notifications_counted(server)
            if counted == {"sent": 2.0, "retry": 2.0}:
                break
            await asyncio.sleep(0.1)
        assert counted == {"sent": 2.0, "retry": 2.0}
    finally:
        output = server.finish()
        await receiver.close()
    assert "Traceback" not in output, output


def notifications_counted(server: LiveServer) -> dict[str, float]:
    status, text = get(server.url + "/metrics")
    assert status == 200
    pattern = r'jobpulse_notifications_total\{outcome="(\w+)",target="webhook-\w+"\} (\S+)'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text.decode())}


async def _log(client: Any, prefix: str) -> Any:
    for raw in reversed(await client.lrange(f"{prefix}:jp:notify:log", 0, -1)):
        yield json.loads(raw)


async def test_two_processes_send_each_notification_once_between_them(
    redis_url: str, prefix: str, aredis_client: Any
) -> None:
    receiver = await Receiver.start()
    servers = [LiveServer(redis_url, prefix, env=alert_env(receiver)).start() for _ in range(2)]
    try:
        publisher = Publisher(aredis_client, prefix)
        await raise_and_clear(publisher, receiver)
        await asyncio.sleep(1.5)  # time for a second, wrong, copy to arrive
        bodies = check_delivered_once(receiver)
        assert [b["kind"] for b in bodies] == ["firing", "resolved"]
        # A second episode of the same issue is news again, once.
        await raise_and_clear(publisher, receiver)
        await asyncio.sleep(1.5)
        bodies = check_delivered_once(receiver)
        assert [b["kind"] for b in bodies] == ["firing", "resolved", "firing", "resolved"]
        assert bodies[0]["alert"]["episode"] != bodies[2]["alert"]["episode"]
    finally:
        outputs = [s.finish() for s in servers]
        await receiver.close()
    for output in outputs:
        assert "Traceback" not in output, output


async def test_a_process_killed_mid_delivery_loses_nothing_and_doubles_nothing(
    redis_url: str, prefix: str, aredis_client: Any
) -> None:
    """The receiver holds the first request unanswered; the process sending it is killed (SIGKILL, no cleanup).
    A process started after it takes the notification over once the lease runs out and delivers it; the
    receiver accepts it once."""
    receiver = await Receiver.start(answers=[HANG])
    env = alert_env(receiver, JOBPULSE_ALERT_TIMEOUT_S="1", JOBPULSE_ALERT_LEASE_S="2")
    first = LiveServer(redis_url, prefix, env=env).start()
    second = None
    try:
        publisher = Publisher(aredis_client, prefix)
        await report(publisher, 7)
        await receiver.wait_for(lambda r: len(r.requests) == 1, 20)
        first.stop(signal.SIGKILL)
        second = LiveServer(redis_url, prefix, env=env).start()
        # The broker says it again (a restarted process learns the backlog from the next report).
        await report(publisher, 7)
        await receiver.wait_for(lambda r: "firing" in accepted_kinds(r, "no_runner:email"), 30)
        await report(publisher, 0)
        await receiver.wait_for(lambda r: "resolved" in accepted_kinds(r, "no_runner:email"), 30)
        await asyncio.sleep(1.0)
        bodies = check_delivered_once(receiver)
        assert [b["kind"] for b in bodies] == ["firing", "resolved"]
        # The held request and the accepted one are the same notification: taken over, not made again.
        assert receiver.requests[0].json()["id"] == bodies[0]["id"]
    finally:
        first.close()
        output = second.finish() if second is not None else ""
        await receiver.close()
    assert "Traceback" not in output, output


async def test_operators_acknowledge_silence_and_test_over_the_websocket(
    redis_url: str, prefix: str, aredis_client: Any
) -> None:
    """alert.ack stops the reminders; alert.silence holds a rule's next episode until alert.unsilence; an admin's
    notify.test reaches the receiver; a viewer and an operator are refused what their roles do not allow."""
    receiver = await Receiver.start()
    env = users_env(**alert_env(receiver, JOBPULSE_ALERT_REMIND_S="1.5", JOBPULSE_COMMAND_RATE="100000"))
    server = LiveServer(redis_url, prefix, env=env).start()
    clients = {name: await LiveClient.connect(server.ws_url, ["health"], headers=bearer(name)) for name in TEST_USERS}
    operator = next(clients[n] for n in TEST_USERS if TEST_USERS[n][0] == "operator")
    viewer = next(clients[n] for n in TEST_USERS if TEST_USERS[n][0] == "viewer")
    admin = next(clients[n] for n in TEST_USERS if TEST_USERS[n][0] == "admin")
    publisher = Publisher(aredis_client, prefix)
    kinds = lambda: accepted_kinds(receiver, "no_runner:email")  # noqa: E731
    try:
        assert operator.welcome["actions"]["alert.ack"] == {"ok": True, "two_phase": False}
        assert operator.welcome["actions"]["notify.test"]["ok"] is False
        await report(publisher, 7)
        await receiver.wait_for(lambda r: kinds().count("reminder") >= 1, 20)
        refused = await viewer.command("alert.ack", {"alert": "no_runner:email"})
        assert refused["error"]["code"] == "forbidden"
        ack = await operator.command("alert.ack", {"alert": "no_runner:email"})
        assert ack["ok"] and ack["result"]["acked_by"] == operator.welcome["user"]["name"], ack
        reminders = kinds().count("reminder")
        await asyncio.sleep(4)  # more than two reminder intervals
        assert kinds().count("reminder") == reminders
        missing = await operator.command("alert.ack", {"alert": "stuck_jobs:email"})
        assert missing["error"]["code"] == "not_found"

        # A silence on the rule: the episode that fired still resolves; the next one does not fire until unsilenced.
        silenced = await operator.command("alert.silence", {"alert": "no_runner", "minutes": 5, "reason": "deploy"})
        assert silenced["ok"], silenced
        await report(publisher, 0)
        await receiver.wait_for(lambda r: kinds().count("resolved") == 1, 20)
        await report(publisher, 9)
        await asyncio.sleep(3)
        assert kinds().count("firing") == 1
        assert (await operator.command("alert.unsilence", {"alert": "no_runner"}))["ok"]
        await receiver.wait_for(lambda r: kinds().count("firing") == 2, 20)
        bad = await operator.command("alert.silence", {"alert": "no_such_rule:x"})
        assert bad["error"]["code"] == "not_found"
        too_long = await operator.command("alert.silence", {"alert": "no_runner", "minutes": 100_000})
        assert too_long["error"]["code"] == "bad_args"

        assert (await operator.command("notify.test"))["error"]["code"] == "forbidden"
        sent = await admin.command("notify.test")
        assert sent["ok"] and sent["result"]["targets"] == 1, sent
        await receiver.wait_for(lambda r: any(q.json()["kind"] == "test" for q in r.accepted()), 20)
        check_delivered_once(receiver)
    finally:
        for client in clients.values():
            await client.close()
        output = server.finish()
        await receiver.close()
    assert "Traceback" not in output, output


def start_sink(port: int, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "alert-sink", "--port", str(port), "--secret", SECRET],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def post_signed(url: str, body: bytes, key: str) -> int:
    """POST `body` signed with `key`; the status it gets."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"X-Jobpulse-Signature": signature(key, int(time.time()), body)}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


async def test_jobpulse_alert_sink_prints_what_a_real_server_sends_and_refuses_forgeries(
    redis_url: str, prefix: str, aredis_client: Any, tmp_path: Any
) -> None:
    """`jobpulse alert-sink` (the demo's receiver) checks the signature, prints each notification once, and
    refuses a request signed with another key."""
    port = free_port("127.0.0.1")
    log = (tmp_path / "sink.log").open("w+")
    sink = start_sink(port, log)
    env = {"JOBPULSE_ALERT_WEBHOOKS": f"http://127.0.0.1:{port}/in", "JOBPULSE_ALERT_WEBHOOK_SECRET": SECRET,
           "JOBPULSE_ALERT_MIN_OPEN_S": "0.5", "JOBPULSE_CLOCK_MS": "250"}  # fmt: skip
    server = LiveServer(redis_url, prefix, env=env).start()

    def printed() -> str:
        log.seek(0)
        return str(log.read())

    try:
        publisher = Publisher(aredis_client, prefix)
        await report(publisher, 7)
        for _ in range(200):
            if "FIRING" in printed():
                break
            await asyncio.sleep(0.1)
        await report(publisher, 0)
        for _ in range(200):
            if "RESOLVED" in printed():
                break
            await asyncio.sleep(0.1)
        text = printed()
        assert "checking signatures" in text
        assert text.count("FIRING") == 1 and "critical no_runner:email: email: backlog and no runner" in text, text
        assert text.count("RESOLVED") == 1, text
        body = b'{"version": 1, "id": "x#1", "kind": "firing", "alert": {"id": "fake"}}'
        assert post_signed(f"http://127.0.0.1:{port}/in", body, "another key") == 401
        assert "refused a request: bad or missing signature" in printed()
        assert post_signed(f"http://127.0.0.1:{port}/in", body, SECRET) == 200
        assert post_signed(f"http://127.0.0.1:{port}/in", body, SECRET) == 200  # a copy: dropped, not printed
        assert printed().count("FIRING") == 2
    finally:
        output = server.finish()
        sink.terminate()
        sink.wait(10)
        log.close()
    assert "Traceback" not in output, output


AM_CONFIG = """
route:
  receiver: hook
  group_by: [alertname, alert_id]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
        send_resolved: true
"""


def start_alertmanager(binary: str, port: int, folder: Any, hook: str) -> subprocess.Popen[bytes]:
    (folder / "am.yml").write_text(AM_CONFIG.format(url=hook))
    return subprocess.Popen(
        [binary, f"--config.file={folder / 'am.yml'}", f"--storage.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def alertmanager_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def alertmanager_alerts(port: int) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=2) as response:
            return list(json.load(response))
    except OSError:
        return []


async def test_a_real_alertmanager_receives_fire_and_resolve(
    redis_url: str, prefix: str, aredis_client: Any, alertmanager_path: str, tmp_path: Any
) -> None:
    """jobpulse -> Alertmanager (API v2) -> Alertmanager's own webhook: the alert is active there with jobpulse's
    labels, routed on, and resolved when the issue clears."""
    routed = await Receiver.start()  # where Alertmanager sends what it routes
    port = free_port("127.0.0.1")
    am = start_alertmanager(alertmanager_path, port, tmp_path, routed.url + "/am")
    server = None
    try:
        for _ in range(100):
            if am.poll() is not None:
                raise AssertionError(f"alertmanager exited: {am.stderr.read().decode() if am.stderr else ''}")
            if alertmanager_ready(port):
                break
            await asyncio.sleep(0.1)
        env = {"JOBPULSE_ALERTMANAGER_URL": f"http://127.0.0.1:{port}", "JOBPULSE_ALERT_MIN_OPEN_S": "0.5",
               "JOBPULSE_CLOCK_MS": "250"}  # fmt: skip
        server = LiveServer(redis_url, prefix, env=env).start()
        publisher = Publisher(aredis_client, prefix)
        await report(publisher, 7)

        def routed_with(status: str) -> bool:
            return any(
                r.json().get("status") == status
                and r.json()["alerts"][0]["labels"].get("alert_id") == "no_runner:email"
                for r in routed.accepted()
            )

        await routed.wait_for(lambda r: routed_with("firing"), 30)
        [active] = [a for a in alertmanager_alerts(port) if a["labels"].get("alert_id") == "no_runner:email"]
        assert active["status"]["state"] == "active"
        assert active["labels"] | {} == {
            "alertname": "jobpulse_no_runner", "alert_id": "no_runner:email", "rule": "no_runner",
            "severity": "critical", "service": "jobpulse", "key": "email",
        }  # fmt: skip
        assert active["annotations"]["summary"] == "email: backlog and no runner"
        await report(publisher, 0)
        await routed.wait_for(lambda r: routed_with("resolved"), 30)
        assert not [a for a in alertmanager_alerts(port) if a["labels"].get("alert_id") == "no_runner:email"]
    finally:
        output = server.finish() if server is not None else ""
        am.terminate()
        am.wait(10)
        if am.stderr is not None:
            am.stderr.close()
        await routed.close()
    assert "Traceback" not in output, output


async def test_routes_send_each_alert_where_it_belongs_and_its_resolution_to_whoever_heard_it_fire(
    redis_url: str, prefix: str, aredis_client: Any
) -> None:
    pager = await Receiver.start()
    chat = await Receiver.start()
    env = alert_env(
        pager, JOBPULSE_ALERT_ROUTES="target=webhook-%s severity=critical; target=127.0.0.1 rule=stuck_jobs"
    )
    env["JOBPULSE_ALERT_WEBHOOKS"] = f"{pager.url}/hooks/jobpulse {chat.url}/hooks/jobpulse"
    # Name the pager by its target name, the chat by its host (127.0.0.1: both are, so the chat's route is the
    # one that names it by name below).
    from server.notify.targets import configured

    names = [t.name for t in configured(env["JOBPULSE_ALERT_WEBHOOKS"], SECRET)]
    env["JOBPULSE_ALERT_ROUTES"] = f"target={names[0]} severity=critical; target={names[1]} rule=stuck_jobs"
    server = LiveServer(redis_url, prefix, env=env).start()
    try:
        await raise_and_clear(Publisher(aredis_client, prefix), pager)
        await asyncio.sleep(1.5)
        assert [b["kind"] for b in check_delivered_once(pager)] == ["firing", "resolved"]
        assert chat.requests == []  # its route takes stuck_jobs only
    finally:
        output = server.finish()
        await pager.close()
        await chat.close()
    assert "Traceback" not in output, output


async def test_apprise_targets_deliver_to_a_real_json_receiver_through_failures_and_to_a_real_smtp_server(
    redis_url: str, prefix: str, aredis_client: Any
) -> None:
    """Through Apprise (JOBPULSE_ALERT_APPRISE): its json:// plugin to an HTTP receiver that fails once (retried),
    and its mailto:// plugin to a real SMTP server (aiosmtpd): the firing and the resolution arrive, once each."""
    from aiosmtpd.controller import Controller

    mails: list[Any] = []

    class Mailbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope)
            return "250 OK"

    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=free_port("127.0.0.1"))
    smtp.start()
    chat = await Receiver.start(answers=[503])
    urls = (
        f"json://127.0.0.1:{chat.port}/apprise "
        f"mailto://127.0.0.1:{smtp.port}?from=jobpulse@example.com&to=oncall@example.com&mode=insecure"
    )
    env = {"JOBPULSE_ALERT_APPRISE": urls, "JOBPULSE_ALERT_MIN_OPEN_S": "0.5", "JOBPULSE_ALERT_RETRY_S": "0.4",
           "JOBPULSE_CLOCK_MS": "250"}  # fmt: skip
    server = LiveServer(redis_url, prefix, env=env).start()

    def titles() -> list[str]:
        return [r.json()["title"] for r in chat.accepted()]

    try:
        publisher = Publisher(aredis_client, prefix)
        await report(publisher, 7)
        await chat.wait_for(lambda r: any("FIRING" in t for t in titles()), 30)
        await report(publisher, 0)
        await chat.wait_for(lambda r: any("RESOLVED" in t for t in titles()), 30)
        for _ in range(100):
            if len(mails) >= 2:
                break
            await asyncio.sleep(0.1)
        assert titles() == [
            "[jobpulse] FIRING critical: email: backlog and no runner",
            "[jobpulse] RESOLVED critical: email: backlog and no runner",
        ]
        assert [r.status for r in chat.requests] == [503, 200, 200]  # the first attempt failed, then retried
        first = chat.accepted()[0].json()
        assert first["type"] == "failure" and "7 queued, no live runner consumes email" in first["message"]
        assert chat.accepted()[1].json()["type"] == "success"
        subjects = [m.content.decode(errors="replace") for m in mails]
        assert len(mails) == 2 and all(m.rcpt_tos == ["oncall@example.com"] for m in mails)
        assert "Subject: [jobpulse] FIRING critical: email: backlog and no runner" in subjects[0]
        assert "Subject: [jobpulse] RESOLVED critical: email: backlog and no runner" in subjects[1]
    finally:
        output = server.finish()
        await chat.close()
        smtp.stop()
    assert "Traceback" not in output, output


async def test_a_silence_holds_until_it_expires_then_the_alert_fires(aredis_client: Any, prefix: str) -> None:
    """Against Redis, with the outbox and the lifecycle as a process uses them: a silence (here of 1.5 s) keeps
    the issue from firing; once it expires it is gone from the store and the issue fires."""
    from server.notify.lifecycle import Issue, Policy, proposals
    from server.notify.outbox import Outbox

    outbox = Outbox(aredis_client, prefix, cap=100, log_cap=10, dead_cap=10)
    await outbox.ensure_group()
    policy = Policy(min_open=0.0, remind=0.0, settle=1.0)
    issue = Issue("no_runner:email", "no_runner", "email", "critical", "email: backlog and no runner", "7 queued", 0.0)
    start = time.time()
    await outbox.silence("no_runner", start + 1.5, "ada", "deploy")

    async def plan() -> list[str]:
        now = time.time()
        silenced = await outbox.silences(now)
        wanted = list(proposals([issue], (await outbox.records()).values(), now, policy, silenced))
        return [n.kind for n in await outbox.apply(wanted, now, policy, lambda record: ["webhook-x"])]

    assert await plan() == []  # silenced
    assert list(await outbox.silences(time.time())) == ["no_runner"]
    await asyncio.sleep(max(0.0, start + 1.6 - time.time()))
    assert await plan() == ["firing"]
    assert await outbox.silences(time.time()) == {}
    assert await aredis_client.hlen(outbox.silences_key) == 0  # expired ones are removed from the store
    assert await aredis_client.xlen(outbox.stream) == 1  # the firing waits in the outbox for its one target


def email_queued(n: int) -> Any:
    return lambda c: c.data["channels"]["rows"]["email"]["queued"] == n


async def test_a_receiver_that_hangs_never_slows_the_live_path(redis_url: str, prefix: str, aredis_client: Any) -> None:
    """Every delivery hangs until its timeout, many at once (each channel its own alert); meanwhile the pages'
    pushes and HTTP answers go on as usual: the deliveries have their own tasks and time limits."""
    receiver = await Receiver.start(answers=[HANG] * 1000)
    env = alert_env(receiver, JOBPULSE_ALERT_TIMEOUT_S="5", JOBPULSE_ALERT_LEASE_S="10")
    server = LiveServer(redis_url, prefix, env=env).start()
    client = await LiveClient.connect(server.ws_url, ["channels"])
    try:
        publisher = Publisher(aredis_client, prefix)
        depth = publisher.depth(**{f"ch{i}": (5, 0, 0) for i in range(20)})
        await aredis_client.hset(f"{prefix}:depth", mapping={
            name: json.dumps({**entry, "ts": depth["ts"]}) for name, entry in depth["channels"].items()
        })  # fmt: skip
        await publisher.publish(depth)
        await receiver.wait_for(lambda r: len(r.requests) >= 16, 20)  # every sender of the process is held
        for n in range(1, 6):
            started = time.monotonic()
            await report(publisher, n)
            await client.wait_for(email_queued(n), 2.0)
            pushed = time.monotonic() - started
            started = time.monotonic()
            status, _ = get(server.url + "/api/widgets/hot_issues")
            answered = time.monotonic() - started
            assert status == 200 and pushed < 1.0 and answered < 1.0, (pushed, answered)
    finally:
        await client.close()
        output = server.finish()
        await receiver.close()
    assert "Traceback" not in output, output
