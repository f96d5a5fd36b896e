"""The `jobpulse` command: serve, demo, simulate, control.

Shell layer: parses arguments, sets up logging, and starts processes. `demo`
is the one-command start: a private Redis (unless REDIS_URL is set), the fleet
simulator in a child process, and the web server, all stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from server import __version__, logs
from server.redact import redact
from server.redis_server import RedisServer, free_port
from server.settings import Settings, documented

log = logging.getLogger("jobpulse.cli")


def _setup_logging(level: str) -> None:
    try:
        fmt = Settings.from_env().log_format
    except ValueError:
        fmt = "text"
    logs.setup(level, fmt)


def _uvicorn_run(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from server.wsdeflate import SharedDeflateProtocol

    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=host,
        port=port,
        # With permessage-deflate, one that compresses each message once for every client (server/wsdeflate.py).
        ws=SharedDeflateProtocol if settings.ws_deflate else "websockets-sansio",
        ws_max_size=settings.ws_max_frame,
        ws_per_message_deflate=settings.ws_deflate,
        # The hub pings every client itself, with the stall rule's deadline (docs/protocol.md 3.5); uvicorn's
        # keepalive would also close a slow reader whose pong waits 20 s behind what it has yet to read.
        ws_ping_interval=None,
        http="httptools",
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        log_level=settings.log_level,
        proxy_headers=False,  # jobpulse applies them itself, for trusted peers only (server/security.py)
        access_log=settings.access_log,
        # Several processes on one port (the kernel spreads the connections): each is a whole jobpulse on the
        # same Redis, as behind a load balancer (docs/reliability.md 8).
        workers=settings.workers if settings.workers > 1 else None,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    # The flags stand for their environment variables (the app reads its settings from the environment).
    if args.source:
        os.environ["JOBPULSE_SOURCE"] = args.source
    if args.celery_broker:
        os.environ["JOBPULSE_CELERY_BROKER"] = args.celery_broker
    if args.workers:
        os.environ["JOBPULSE_WORKERS"] = str(args.workers)  # the workers read their settings from the environment
    settings = Settings.from_env()
    _uvicorn_run(settings, args.host or settings.host, args.port or settings.port)
    return 0


def _port_is_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    base = Settings.from_env()
    host = args.host or base.host
    port = args.port or base.port
    if not _port_is_free(host, port):
        taken, port = port, free_port(host)
        print(f"jobpulse demo: port {taken} is taken, using {port}", flush=True)
    redis_server: RedisServer | None = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_server = RedisServer().start()
        redis_url = redis_server.url
        print(f"jobpulse demo: started a private redis-server ({redis_server.binary}) at {redis_url}", flush=True)
    else:
        print(f"jobpulse demo: using REDIS_URL={redact(redis_url)}", flush=True)
    os.environ["REDIS_URL"] = redis_url
    # The demo's fleet plays the story scenario: a healthy fleet and, every five minutes, incidents that come and
    # go. Tighter rules than the production defaults raise each one within its minute or two and clear it after
    # (a two-minute failure window lets the failure burst's alert clear before the cycle ends). Set them yourself
    # to override.
    os.environ.setdefault("JOBPULSE_STUCK_AFTER_S", "90")
    os.environ.setdefault("JOBPULSE_SLA", "*=120,reports=60")
    os.environ.setdefault("JOBPULSE_FAIL_WINDOW_MIN", "2")
    # The demo is for trying jobpulse out: no sign-in, everyone admin, unless you configure users yourself.
    if not os.environ.get("JOBPULSE_AUTH") and not os.environ.get("JOBPULSE_USERS"):
        os.environ["JOBPULSE_AUTH"] = "dev"
        print("jobpulse demo: dev mode (JOBPULSE_AUTH=dev): no sign-in, everyone is admin", flush=True)
    if not args.no_history:
        # Four weeks of made-up hours before now, so the 24 h and 14 d views have a shape from the first minute; the
        # pages label them synthetic. Only into a store that holds no history yet.
        from server.simulator.history import DAYS, backfill

        written = asyncio.run(backfill(redis_url, base.prefix, time.time(), args.rate, args.seed))
        if written:
            print(f"jobpulse demo: wrote {DAYS} days of synthetic history ({written} hours), labelled so", flush=True)
    systems = _demo_systems(args.sources)
    children: list[subprocess.Popen[bytes]] = []
    if args.alert_sink:
        children.append(_demo_alert_sink())
    if len(systems) == 1:
        children.append(_demo_fleet(redis_url, base.prefix, args.runners, args.rate, args.seed))
    else:
        entries = []
        for i, (label, kind) in enumerate(systems):
            if kind == "native":
                # Each native system its own fleet under a prefix of its own, a different size and rhythm.
                prefix = f"{base.prefix}-{label}"
                os.environ[f"JOBPULSE_{label.upper().replace('-', '_')}_PREFIX"] = prefix
                runners = max(2, args.runners // (i + 1))
                seed = None if args.seed is None else args.seed + i
                children.append(_demo_fleet(redis_url, prefix, runners, args.rate / (i + 1), seed, cycle=300 + 120 * i))
                entries.append(f"{label}:native:{redis_url}")
            else:
                broker = _redis_db(redis_url, 1 + i)  # Celery names its event channels by database: one each
                children += _demo_celery(broker, label, args.rate / 4, args.seed)
                entries.append(f"{label}:celery:{broker}")
        os.environ["JOBPULSE_SOURCES"] = ",".join(entries)
        print(f"jobpulse demo: {len(systems)} systems in one console: {os.environ['JOBPULSE_SOURCES']}", flush=True)
    print(f"jobpulse demo: open http://{host}:{port}/admin/jobs   (Ctrl-C stops everything)", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    # SIGTERM (kill, a supervisor) stops everything as Ctrl-C does. uvicorn handles the signal while it serves
    # and raises it again once it has stopped: this handler turns that into SystemExit, so `finally` runs.
    signal.signal(signal.SIGTERM, stop)
    try:
        _uvicorn_run(Settings.from_env(), host, port)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server is not None:
            redis_server.stop()
        print("jobpulse demo: stopped", flush=True)
    return 0


DEMO_KINDS = ("native", "celery")  # what the demo can run itself (django-mojo needs Postgres and Django)


def _demo_systems(text: str) -> list[tuple[str, str]]:
    """`--sources`: `kind` or `label:kind` entries, comma-separated; labels default to the kind (numbered when a
    kind repeats).

    Raises:
        SystemExit: for a kind the demo cannot run, a bad or repeated label, or Celery not installed.
    """
    from server.streams.core.labels import LABEL_RE, MAX_LABELS

    systems: list[tuple[str, str]] = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        label, _, kind = entry.rpartition(":")
        if kind not in DEMO_KINDS:
            raise SystemExit(f"jobpulse demo --sources: {kind!r}: the demo runs {' and '.join(DEMO_KINDS)} systems")
        if not label:
            taken = sum(1 for _, k in systems if k == kind)
            label = kind if not taken else f"{kind}-{taken + 1}"
        if not LABEL_RE.match(label) or any(label == other for other, _ in systems):
            raise SystemExit(f"jobpulse demo --sources: label {label!r}: a-z, 0-9 and -, at most 16, once each")
        systems.append((label, kind))
    if not systems or len(systems) > MAX_LABELS:
        raise SystemExit(f"jobpulse demo --sources: one to {MAX_LABELS} systems")
    if any(kind == "celery" for _, kind in systems):
        try:
            import celery  # noqa: F401
        except ImportError:
            raise SystemExit("jobpulse demo --sources ...celery: pip install 'jobpulse[celery]' first") from None
    return systems


def _demo_fleet(
    redis_url: str, prefix: str, runners: int, rate: float, seed: int | None, cycle: int = 300
) -> subprocess.Popen[bytes]:
    """The fleet simulator, playing the story scenario, in a session of its own (Ctrl-C reaches only the demo,
    which then stops the fleet first, so it can clean up its keys, and Redis last)."""
    command = [
        sys.executable, "-m", "server.cli", "simulate", "--redis-url", redis_url, "--prefix", prefix,
        "--runners", str(runners), "--rate", f"{rate:g}", "--scenario", "story", "--cycle", str(cycle),
    ]  # fmt: skip
    if seed is not None:
        command += ["--seed", str(seed)]
    child = subprocess.Popen(command, start_new_session=True)
    print(f"jobpulse demo: fleet simulator running (pid {child.pid}, prefix {prefix}, {runners} runners, "
          f"{rate:g} jobs/s); it starts healthy and plays a {cycle // 60}-minute cycle of incidents that come and go",
          flush=True)  # fmt: skip
    return child


def _demo_celery(broker: str, label: str, rate: float, seed: int | None) -> list[subprocess.Popen[bytes]]:
    """A real Celery worker on `broker` and a producer sending it tasks (server/simulator/celery_demo.py)."""
    env = {**os.environ, "CELERY_BROKER_URL": broker}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "server.simulator.celery_demo", "--quiet", "worker", "-E", "-c", "4",
         "-Q", "celery,emails,reports,webhooks", "-n", f"{label}-1@%h", "--without-mingle", "--without-gossip",
         "-l", "warning"],
        env=env, start_new_session=True,
    )  # fmt: skip
    producer = subprocess.Popen(
        [sys.executable, "-m", "server.simulator.celery_demo", "--broker", broker, "--rate", f"{max(rate, 1):g}",
         *(["--seed", str(seed)] if seed is not None else [])],
        env=env, start_new_session=True,
    )  # fmt: skip
    print(f"jobpulse demo: Celery worker (pid {worker.pid}) and producer (pid {producer.pid}) on {broker}", flush=True)
    return [worker, producer]


def _redis_db(url: str, db: int) -> str:
    """`url` with database `db`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def cmd_alert_sink(args: argparse.Namespace) -> int:
    from server.notify.sink import run

    secret = args.secret if args.secret is not None else os.environ.get("JOBPULSE_ALERT_WEBHOOK_SECRET", "")
    asyncio.run(run(args.host, args.port, secret))
    return 0


def _demo_alert_sink() -> subprocess.Popen[bytes]:
    """`jobpulse alert-sink` on a free port with a fresh secret; the demo's jobpulse sends its alerts there."""
    port = free_port("127.0.0.1")
    secret = secrets.token_hex(16)
    os.environ["JOBPULSE_ALERT_WEBHOOKS"] = f"http://127.0.0.1:{port}/jobpulse"
    os.environ["JOBPULSE_ALERT_WEBHOOK_SECRET"] = secret
    # The demo's incidents last a minute or two: alerts that fire after 20 s open show them coming and going.
    os.environ.setdefault("JOBPULSE_ALERT_MIN_OPEN_S", "20")
    child = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--log-level", "warning", "alert-sink", "--port", str(port)],
        env={**os.environ, "JOBPULSE_ALERT_WEBHOOK_SECRET": secret},
    )
    print(f"jobpulse demo: alerts go to a webhook receiver at http://127.0.0.1:{port} (printed below)", flush=True)
    return child


def cmd_simulate(args: argparse.Namespace) -> int:
    from server.simulator import Fleet, config_from_args

    redis_url = args.redis_url or Settings.from_env().redis_url
    prefix = args.prefix or Settings.from_env().prefix
    config = config_from_args(args, redis_url, prefix)
    fleet = Fleet(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, fleet.stop)
        if args.duration:
            loop.call_later(args.duration, fleet.stop)
        await fleet.run()

    asyncio.run(main())
    return 0


def _parse_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def cmd_control(args: argparse.Namespace) -> int:
    import redis

    settings = Settings.from_env()
    redis_url = args.redis_url or settings.redis_url
    prefix = args.prefix or settings.prefix
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    replies = f"{prefix}:replies"
    pubsub.subscribe(replies)
    pubsub.get_message(timeout=1.0)
    command_id = args.id or f"cli-{uuid.uuid4().hex[:12]}"
    message = {
        "v": 1,
        "type": "command",
        "id": command_id,
        "action": args.action,
        "to": args.to,
        "args": dict(args.arg or []),
        "ts": time.time(),
        "reply_to": replies,
    }
    client.publish(f"{prefix}:control", json.dumps(message))
    expected = None if args.to == "*" else 1
    got = 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and (expected is None or got < expected):
        reply = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if reply is None or reply["type"] != "message":
            continue
        try:
            body = json.loads(reply["data"])
        except ValueError:
            continue
        if body.get("id") == command_id:
            got += 1
            print(json.dumps(body))
    pubsub.close()
    client.close()
    if got == 0:
        print(f"no reply to {args.action} within {args.timeout} s", file=sys.stderr)
        return 1
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from server.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("a password needs at least 8 characters", file=sys.stderr)
        return 1
    digest = hash_password(password)
    print(f"{args.user}:{args.role}:{digest}" if args.user else digest)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from server.auth import make_token

    token, digest = make_token()
    print(f"token (shown once; give it to {args.name}): {token}")
    print(f"add to JOBPULSE_TOKENS: {args.name}:{args.role}:{digest}")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    import asyncio

    import redis.asyncio as aredis

    from server.sessions import Sessions

    settings = Settings.from_env()

    async def revoke() -> int:
        client = aredis.Redis.from_url(settings.store)
        try:
            sessions = Sessions(client, settings.prefix, b"", settings.session_idle_s, settings.session_max_s, 0)
            return await sessions.revoke_user(args.user)
        finally:
            await client.aclose()

    count = asyncio.run(revoke())
    print(f"ended {count} session(s) of {args.user}; their open pages are signed out within "
          f"{settings.session_check_s:g} s")  # fmt: skip
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print("| variable | default | meaning |\n| --- | --- | --- |")
        for env, default, doc in documented():
            shown = "empty" if default == "''" else f"`{default.strip(chr(39))}`"
            print(f"| `{env}` | {shown} | {doc} |")
        return 0
    for env, default, doc in documented():
        print(f"{env:32} {default:28} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobpulse",
        description="A live operations console for async job systems on Redis. "
        "Settings come from environment variables: `jobpulse settings` lists them.",
    )
    parser.add_argument("--version", action="version", version=f"jobpulse {__version__}")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error (default JOBPULSE_LOG_LEVEL)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web server against REDIS_URL")
    serve.add_argument("--host", default=None, help="bind address (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default PORT or 8000)")
    serve.add_argument("--source", choices=("native", "celery", "mojo"), default=None, help="default JOBPULSE_SOURCE")
    serve.add_argument("--celery-broker", default=None, help="Celery's Redis broker URL (JOBPULSE_CELERY_BROKER)")
    serve.add_argument("--workers", type=int, default=None, help="processes sharing the port (JOBPULSE_WORKERS)")
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser(
        "demo", help="start a private Redis (unless REDIS_URL is set), the fleet simulator and the web server"
    )
    demo.add_argument("--host", default=None)
    demo.add_argument("--port", type=int, default=None)
    demo.add_argument("--runners", type=int, default=12, help="simulated runners (default 12)")
    demo.add_argument("--rate", type=float, default=20.0, help="jobs published per second (default 20)")
    demo.add_argument("--seed", type=int, default=None, help="seed for a repeatable fleet")
    demo.add_argument(
        "--no-history", action="store_true", help="do not write the four weeks of synthetic history before now"
    )
    demo.add_argument(
        "--sources",
        default="native",
        help="the job systems to run and watch in one console, comma-separated, each `kind` or `label:kind`: "
        "native (a simulated fleet) or celery (a real Celery worker and a producer; needs jobpulse[celery]). "
        "Default: native. Example: --sources payments:native,media:celery",
    )
    demo.add_argument(
        "--alert-sink",
        action="store_true",
        help="also start a webhook receiver (jobpulse alert-sink) and send the hot issues there as alerts: they "
        "are printed as they fire and resolve",
    )
    demo.set_defaults(func=cmd_demo)

    sink = commands.add_parser(
        "alert-sink",
        help="a webhook receiver that prints the alerts jobpulse sends it (checks signatures, drops copies)",
    )
    sink.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    sink.add_argument("--port", type=int, default=9099, help="port (default 9099)")
    sink.add_argument(
        "--secret", default=None, help="the signing key (default JOBPULSE_ALERT_WEBHOOK_SECRET; empty: no check)"
    )
    sink.set_defaults(func=cmd_alert_sink)

    simulate = commands.add_parser(
        "simulate",
        help="run a fleet of job runners that speaks the jobpulse protocol",
        description="Run a simulated fleet of job runners over a real Redis job queue, speaking the jobpulse "
        "protocol. --scenario steady (the default) has trouble from the start: reports backs up for good, "
        "webhooks-legacy has jobs and no runner, one runner goes silent after --silent-after. --scenario story "
        "(what `jobpulse demo` runs) starts healthy and repeats a cycle of incidents that come and go (--cycle "
        "seconds, default 300): a runner goes silent and comes back, webhooks-legacy backs up with no runner until "
        "one takes it on, reports backs up and drains, webhooks fail in a burst, a deploy restarts every runner.",
    )
    simulate.add_argument("--redis-url", default=None, help="default REDIS_URL")
    simulate.add_argument("--prefix", default=None, help="default JOBPULSE_PREFIX")
    from server.simulator import add_arguments

    add_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)

    control = commands.add_parser("control", help="send a command to runners or the job system; print the replies")
    control.add_argument("action", help="ping, drain, undrain, restart, shutdown, logs, run, purge, clear_stuck, ...")
    control.add_argument("--to", default="*", help="* (every runner), runner:<id>, or system (default *)")
    control.add_argument("--arg", action="append", type=_parse_arg, help="key=value (JSON values allowed)")
    control.add_argument("--id", default=None, help="command id (default: a new one)")
    control.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for replies (default 2)")
    control.add_argument("--redis-url", default=None)
    control.add_argument("--prefix", default=None)
    control.set_defaults(func=cmd_control)

    hashing = commands.add_parser("hash-password", help="hash a password for JOBPULSE_USERS (reads it from stdin)")
    hashing.add_argument("user", nargs="?", default=None, help="print a whole name:role:hash entry for this user")
    hashing.add_argument("--role", default="operator", choices=("viewer", "operator", "admin"))
    hashing.set_defaults(func=cmd_hash_password)

    token = commands.add_parser("token", help="make an API token; prints it once and its JOBPULSE_TOKENS entry")
    token.add_argument("name", help="who or what uses it, e.g. ci-bot or lobby-wall")
    token.add_argument("role", choices=("viewer", "operator", "admin"))
    token.set_defaults(func=cmd_token)

    sessions = commands.add_parser("sessions", help="end every session of a user (sign them out everywhere)")
    sessions_commands = sessions.add_subparsers(dest="sessions_command", required=True, metavar="ACTION")
    revoke = sessions_commands.add_parser("revoke", help="end every session of USER")
    revoke.add_argument("user")
    revoke.set_defaults(func=cmd_sessions)

    show = commands.add_parser("settings", help="list every setting: environment variable, default, meaning")
    show.add_argument("--markdown", action="store_true", help="as the README's table")
    show.set_defaults(func=cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        level = args.log_level or Settings.from_env().log_level
    except ValueError as exc:
        parser.error(str(exc))
    _setup_logging(level)
    with contextlib.suppress(KeyboardInterrupt):
        result: int = args.func(args)
        return result
    return 130


if __name__ == "__main__":
    sys.exit(main())
