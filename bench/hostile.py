"""Hostile input (issue #6): fuzzed websocket frames and malformed Redis messages against a real jobpulse.

What runs (all on loopback): a private Redis (unless `--redis-url`/REDIS_URL),
two real jobpulse servers (`python -m server.cli serve`: uvicorn, uvloop,
websockets-sansio, --ws-max-size = JOBPULSE_WS_MAX_FRAME), and this script:

1. A known fleet (heartbeats, job lifecycles, depth reports of the native
   protocol, docs/protocol.md section 1) is published to both servers.
2. Websocket: `--frames` fuzzed frames go to the *target* over many
   connections from many loopback source addresses (127.0.1.x): random bytes,
   binary frames, invalid UTF-8, frames that break RFC 6455, wrong JSON types,
   frames over JOBPULSE_WS_MAX_FRAME, unknown frame types and widgets, refused
   commands, deeply nested JSON, and valid frames among them. After each frame
   a `ping` sentinel follows; the frame counts as answered when its answer (an
   `error` frame, an `ack`, a `pong`) arrives before the sentinel's pong, or the
   connection is closed with a code listed in docs/protocol.md 3.6. Widget
   snapshots before and after must be equal.
3. Redis: `--redis-messages` messages go to the target's `P:events`: random
   bytes, truncated JSON, wrong types, messages over JOBPULSE_MESSAGE_MAX,
   batches with bad members and batches too long, unknown types and versions,
   NaN/Infinity, deep nesting, absurd numbers and timestamps, interleaved with
   valid ones. What `parse_message` accepts of each goes to the *control*
   server too, so the control folds only the valid messages. The target's
   widgets must equal the control's, and its rejection counters (health and
   /metrics) must equal the rejections counted here.
4. A connection flood: `--flood` connects from one address, every admitted
   socket held; it must be cut at JOBPULSE_MAX_CLIENTS_PER_ADDRESS with 4429
   while other addresses, and clients behind the trusted proxy (their own
   X-Forwarded-For), still get in.

The whole run is also what `tests/integration/test_hostile.py` runs, shorter,
against the test suite's `LiveServer`s: `run()` takes the servers it is given.

Usage: python -m bench.hostile [--frames 100000] [--redis-messages 100000] [--flood 1000] (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/<script>.py`: make `bench` and `server` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

# -- what the documentation promises ---------------------------------------------------------------


def documented_close_codes() -> set[int]:
    """The close codes of docs/protocol.md section 3.6: a connection may end with these and no others."""
    text = (common.REPO / "docs" / "protocol.md").read_text()
    section = text.split("### 3.6 Close codes", 1)[1].split("\n### ", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d{4}) \|", section, re.MULTILINE)}


# -- a raw websocket client -------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """One RFC 6455 frame as a client writes it (masked), or broken on purpose (rsv bits, unmasked, no fin)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    if n:
        stream = int.from_bytes((key * (n // 4 + 1))[:n], "big")
        payload = (int.from_bytes(payload, "big") ^ stream).to_bytes(n, "big")
    return head + key + payload


def text(value: str | bytes) -> bytes:
    return frame(OP_TEXT, value.encode() if isinstance(value, str) else value)


class Closed(Exception):
    """The server closed the connection; `code` is its close code (None: no close frame, the socket ended)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed ({code})")
        self.code = code


class RawSocket:
    """A websocket client over asyncio streams that sends any bytes and reads the server's frames one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.close_code: int | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        source: str | None = None,
        headers: dict[str, str] | None = None,
        within: float = 10.0,
    ) -> RawSocket:
        """Connect (from `source`, a local address to bind) and upgrade; raises OSError when refused."""
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=(source, 0) if source else None, limit=2**24
            )
            key = base64.b64encode(os.urandom(16)).decode()
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            writer.write(
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
            )
            status = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n", 1)[0]:
            writer.close()
            raise ConnectionRefusedError(f"upgrade refused: {status[:60]!r}")
        return cls(reader, writer)

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def read(self) -> tuple[int, bytes]:
        """The next data or control frame (opcode, payload). Raises Closed at the server's close frame or EOF."""
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Closed(self.close_code) from exc
        opcode = b0 & 0x0F
        if opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.write(frame(OP_CLOSE, payload[:2]))
            self.close()
            raise Closed(self.close_code)
        return opcode, payload

    async def read_json(self) -> dict[str, Any]:
        """The next text message as JSON (control frames other than close are skipped)."""
        while True:
            opcode, payload = await self.read()
            if opcode == OP_TEXT:
                value: dict[str, Any] = json.loads(payload)
                return value

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


# -- websocket fuzz cases ---------------------------------------------------------------------------

WIDGETS = ("counters", "live_jobs", "failures", "scheduled", "runners", "fleet_summary", "channels")
ACTIONS = ("runner.drain", "runner.shutdown", "channel.purge", "broadcast", "job.run", "job.retry", "runners.cleanup")
JUNK: tuple[Any, ...] = (None, 0, -1, 1.5, 1e308, True, "", "x" * 300, [], {}, [[]], {"a": {}}, "*", "../../etc")


@dataclass
class Case:
    """One fuzzed frame: its wire bytes, what kind it is, and the answers that are right for it.

    `expect` holds any of: ("error", code), ("ack",), ("pong",), ("ws_pong",), ("close", code), ("valid",).
    `counted`: a command the frame decoder refuses, so the server counts it as a bad frame though its answer is
    an ack (every other bad frame shows in its answer: an error frame, or the close of the websocket layer).
    """

    kind: str
    wire: bytes
    expect: set[tuple[Any, ...]]
    counted: bool = False
    ack_id: str | None = None


def _text_cases(rng: random.Random, max_frame: int, seq: Iterator[int]) -> Case:
    """A text-frame case (everything but the wire-level ones)."""
    roll = rng.random() * 100
    if roll < 8:
        junk = "".join(chr(rng.choice((rng.randrange(32, 127), rng.randrange(160, 0x2FFF)))) for _ in range(60))
        return Case("garbage", text("#" + junk), {("error", "bad_json")})
    if roll < 14:
        whole = json.dumps({"type": "hello", "v": 1, "widgets": list(WIDGETS[:3]), "epoch": None, "resume": {}})
        return Case("truncated", text(whole[: rng.randrange(1, len(whole))]), {("error", "bad_json")})
    if roll < 17:
        literal = rng.choice(("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "nan"))
        body = rng.choice(('{"type":"ping","t":LIT}', '{"type":"hello","v":LIT,"widgets":[]}', "[LIT]"))
        return Case("non_finite", text(body.replace("LIT", literal)), {("error", "bad_json")})
    if roll < 20:
        depth = rng.randrange(1_100, min(20_000, max_frame // 2 - 100))
        inner = "[" * depth + "]" * depth
        body = rng.choice(
            (inner, '{"type":"cmd","id":"d","action":"x","args":{"a":' + inner + "}}",
             '{"type":"hello","v":1,"widgets":' + inner + "}")
        )  # fmt: skip
        return Case("deep", text(body), {("error", "bad_json")})
    if roll < 25:
        body = rng.choice(("1", '"hello"', "null", "true", "[]", '[{"type":"ping"}]', "-0.5e3", '""'))
        return Case("not_object", text(body), {("error", "bad_frame")})
    if roll < 31:
        value = rng.choice(("nope", "", "HELLO", "welcome", "batch", 5, None, ["ping"], {"t": 1}, "ping " * 20))
        obj: dict[str, Any] = {"type": value, "t": 1}
        if rng.random() < 0.3:
            del obj["type"]
        return Case("unknown_type", text(json.dumps(obj)), {("error", "bad_frame")})
    if roll < 43:
        bad = rng.choice(
            [
                {"type": "hello", "v": "1", "widgets": []},
                {"type": "hello", "v": 1, "widgets": "counters"},
                {"type": "hello", "v": 1, "widgets": [1, 2]},
                {"type": "hello", "v": 1.5, "widgets": []},
                {"type": "hello", "v": 1, "widgets": [], "resume": {"counters": -1}},
                {"type": "hello", "v": 1, "widgets": [], "resume": []},
                {"type": "hello", "v": 1, "widgets": [], "epoch": 5},
                {"type": "hello", "v": 1, "widgets": [], "extra": True},
                {"type": "hello", "widgets": []},
                {"type": "sub"},
                {"type": "sub", "widgets": None},
                {"type": "sub", "widgets": ["counters"] * 65},
                {"type": "sub", "widgets": ["x" * 401]},
                {"type": "unsub", "widgets": [{}]},
                {"type": "ping", "t": "now"},
                {"type": "ping", "t": [1]},
                {"type": "ping", "t": 1, "x": 2},
                {"type": "cmd", "action": "runner.drain", "args": {}},
                {"type": "cmd", "id": "", "action": "runner.drain"},
                {"type": "cmd", "id": 7, "action": "runner.drain"},
                {"type": "cmd", "id": "i" * 101, "action": "runner.drain"},
            ]
        )
        return Case("wrong_types", text(json.dumps(bad)), {("error", "bad_frame")})
    if roll < 55:
        # A command with a usable id is answered by its ack (docs/protocol.md 4.2), however wrong it is.
        cmd_id = f"h{next(seq)}-{rng.randrange(1 << 30):x}"
        cmd: dict[str, Any] = {"type": "cmd", "id": cmd_id}
        shape = rng.randrange(7)
        if shape == 0:
            cmd.update(action=rng.choice(("nope", "x" * 64, "runner.*", "DROP TABLE")), args={})
        elif shape == 1:
            cmd.update(action=rng.choice(ACTIONS), args={"zzz": rng.choice(JUNK)})
        elif shape == 2:
            cmd.update(action=rng.choice(ACTIONS), args={rng.choice(("runners", "channel", "job")): rng.choice(JUNK)})
            cmd["args"]["zzz"] = 1  # an unknown key: refused, whatever the rest
        elif shape == 3:
            cmd.update(action=rng.choice(ACTIONS), args=rng.choice(([], "x", 5, None)))  # decode-level: bad_args
        elif shape == 4:
            cmd.update(action=rng.choice(ACTIONS), args={"zzz": 1}, phase=rng.choice(("run", "", 3, None)))
        elif shape == 5:
            cmd.update(action=rng.choice(ACTIONS), args={"zzz": 1}, confirm=rng.choice(("a.b", "x" * 1001, 5)))
        else:
            depth = rng.randrange(50, 900)  # under the decoder's limit: the commander gets it
            cmd.update(action="nope", args=json.loads('{"a":' * depth + "1" + "}" * depth))
        return Case("cmd", text(json.dumps(cmd)), {("ack",)}, _decode_fails(cmd), ack_id=cmd_id)
    if roll < 61:
        key = rng.choice(
            (
                "nope",
                "counters?x=1",
                "fleet?status=stale&region=x",  # parameters not sorted: not canonical
                "fleet?status=sleepy",
                "jobs?sort=sideways",
                "jobs?page=0",
                "kpi?metric=vibes",
                "job?id=",
                "Fleet",
                "fleet?q=a%20b%zz",
                "chart?gran=years&metric=failed",
            )
        )
        asking: dict[str, Any] = rng.choice(
            ({"type": "sub", "widgets": [key]}, {"type": "hello", "v": 1, "widgets": [key]})
        )
        return Case("unknown_widget", text(json.dumps(asking)), {("error", "unknown_widget")})
    if roll < 61.5:
        v = rng.choice((0, 2, -1, 10**20))
        return Case("bad_version", text(json.dumps({"type": "hello", "v": v, "widgets": []})),
                    {("error", "bad_version"), ("close", 4400)})  # fmt: skip
    if roll < 67:
        payload = rng.choice((rng.randbytes(rng.randrange(0, 300)), b'{"type":"ping","t":1}', b""))
        return Case("binary", frame(OP_BINARY, payload), {("error", "binary")})
    if roll < 67.3:
        size = max_frame + 1 + rng.randrange(0, 3 * max_frame)
        opcode = rng.choice((OP_TEXT, OP_BINARY))
        big = b'{"type":"ping","t":"' + b"x" * size + b'"}'
        expect: set[tuple[Any, ...]] = {("error", "too_large"), ("close", 1009)}
        if opcode == OP_BINARY:
            expect.add(("error", "binary"))
        return Case("too_large", frame(opcode, big), expect)
    if roll < 70:
        whole = rng.choice(('{"type":"ping","t":7}', "#not json", '{"type":"nope"}'))
        cuts = sorted(rng.sample(range(1, len(whole)), min(len(whole) - 1, rng.randrange(1, 4))))
        parts = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
        wire = b"".join(
            frame(OP_TEXT if i == 0 else OP_CONT, p.encode(), fin=i == len(parts) - 1) for i, p in enumerate(parts)
        )
        answers: dict[str, set[tuple[Any, ...]]] = {
            '{"type":"ping","t":7}': {("pong",)},
            "#not json": {("error", "bad_json")},
            '{"type":"nope"}': {("error", "bad_frame")},
        }
        return Case("fragmented", wire, answers[whole])
    if roll < 73:
        return Case("ws_ping", frame(OP_PING, rng.randbytes(rng.randrange(0, 126))), {("ws_pong",)})
    if roll < 85:
        t = rng.choice((0, -1, 1.5, 10**30, 1e308, next(seq)))
        return Case("ping", text(json.dumps({"type": "ping", "t": t})), {("pong",)})
    valid: dict[str, Any] = rng.choice(
        (
            {"type": "sub", "widgets": [rng.choice(WIDGETS)], "resume": {}},
            {"type": "unsub", "widgets": [rng.choice(WIDGETS), "never-subscribed"]},
            {"type": "unsub", "widgets": []},
            {"type": "hello", "v": 1, "widgets": [], "epoch": "other", "resume": {}},
        )
    )
    return Case("valid", text(json.dumps(valid)), {("valid",)})


def _decode_fails(cmd: dict[str, Any]) -> bool:
    """Whether the websocket layer's frame decoder refuses this command (then it counts as a bad frame)."""
    from server import protocol

    try:
        protocol.decode_client(json.dumps(cmd))
    except protocol.ProtocolError:
        return True
    return False


def _wire_case(rng: random.Random) -> Case:
    """A frame the websocket layer refuses itself: not UTF-8 (1007), or against RFC 6455 (1002)."""
    roll = rng.randrange(8)
    if roll < 3:
        bad = rng.choice((b"\xff\xfe", b'{"type":"ping","t":"\xc3\x28"}', b"\xed\xa0\x80", b"abc\x80"))
        return Case("invalid_utf8", frame(OP_TEXT, bad), {("close", 1007)})
    wire = rng.choice(
        (
            frame(OP_TEXT, b'{"type":"ping"}', rsv=rng.choice((1, 2, 4))),  # reserved bits, no extension
            frame(rng.choice((0x3, 0x7, 0xB, 0xF)), b"x"),  # reserved opcode
            frame(OP_TEXT, b'{"type":"ping"}', mask=False),  # client frames must be masked
            frame(OP_PING, b"p" * 126),  # control frames carry at most 125 bytes
            frame(OP_PING, b"p", fin=False),  # control frames cannot be fragmented
            frame(OP_CONT, b"orphan"),  # a continuation with nothing to continue
            frame(OP_CLOSE, (1005).to_bytes(2, "big")),  # a code that must not be sent
            frame(OP_CLOSE, b"\x03"),  # a one-byte close payload
        )
    )
    # A close frame with a bad code is answered with 1002; every other breach is too.
    return Case("protocol", wire, {("close", 1002)})


def ws_cases(rng: random.Random, max_frame: int) -> Iterator[Case]:
    """An endless stream of fuzz cases, about 1% of them breaking the websocket layer itself."""
    seq = iter(range(1, 1 << 62))
    while True:
        yield _wire_case(rng) if rng.random() < 0.01 else _text_cases(rng, max_frame, seq)


# -- the websocket fuzz driver ----------------------------------------------------------------------


@dataclass
class WsTally:
    """What the websocket fuzz saw."""

    sent: int = 0
    answered: int = 0
    connections: int = 0
    connect_failures: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    acks: int = 0
    pongs: int = 0
    # Bad frames by the reason the server should count them under (jobpulse_ws_bad_frames_total{reason}).
    counted: Counter[str] = field(default_factory=Counter)
    unanswered: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    undocumented: list[str] = field(default_factory=list)
    early_policy_closes: int = 0
    seconds: float = 0.0


BAD_CODES = {"bad_json", "bad_frame", "binary"}  # the error codes that count toward the 1008 close
LAYER_REASONS = {1002: "protocol_error", 1007: "invalid_utf8", 1009: "too_large"}


async def _answers(sock: RawSocket, case: Case, sentinel: float, within: float) -> tuple[set[tuple[Any, ...]], bool]:
    """What the server said about `case`, up to the sentinel's pong (and the case's ack), and whether it is open."""
    seen: set[tuple[Any, ...]] = set()
    got_sentinel = False
    want_ack = case.ack_id is not None
    try:
        async with asyncio.timeout(within):
            while not got_sentinel or want_ack:
                opcode, payload = await sock.read()
                if opcode == OP_PONG:
                    seen.add(("ws_pong",))
                    continue
                if opcode != OP_TEXT:
                    continue
                message = json.loads(payload)
                kind = message.get("type")
                if kind == "pong":
                    if message.get("t") == sentinel:
                        got_sentinel = True
                    else:
                        seen.add(("pong",))
                elif kind == "error":
                    seen.add(("error", message.get("code")))
                elif kind == "ack" and message.get("id") == case.ack_id:
                    seen.add(("ack",))
                    want_ack = False
    except Closed as closed:
        seen.add(("close", closed.code))
        return seen, False
    except TimeoutError:
        seen.add(("timeout",))
        return seen, not sock.writer.is_closing()
    return seen, True


async def _ws_worker(
    host: str, port: int, cases: Iterator[Case], budget: list[int], sources: list[str], tally: WsTally,
    documented: set[int], bad_limit: int, within: float,
) -> None:  # fmt: skip
    n = 0
    while budget[0] > 0:
        source = sources[n % len(sources)]
        n += 1
        try:
            sock = await RawSocket.open(host, port, source=source, within=within)
        except (OSError, TimeoutError):
            tally.connect_failures += 1
            await asyncio.sleep(0.05)
            continue
        tally.connections += 1
        try:
            try:
                async with asyncio.timeout(within):
                    welcome = await sock.read_json()
                assert welcome["type"] == "welcome", welcome
            except Closed as closed:
                # Refused at the door: 4429 (this address), 1013 (full). No frame was spent on it.
                tally.closes[closed.code or 0] += 1
                if closed.code not in documented:
                    tally.undocumented.append(f"at connect: {closed.code}")
                await asyncio.sleep(0.05)
                continue
            bad = 0
            marker = 0
            open_ = True
            while open_ and budget[0] > 0:
                budget[0] -= 1
                case = next(cases)
                marker += 1
                sentinel = -marker - 0.25  # no fuzzed ping carries a negative fraction like this
                tally.sent += 1
                tally.kinds[case.kind] += 1
                sock.write(case.wire + text(json.dumps({"type": "ping", "t": sentinel})))
                seen, open_ = await _answers(sock, case, sentinel, within)
                close = next((s[1] for s in seen if s[0] == "close"), None)
                errors = {s[1] for s in seen if s[0] == "error"}
                for code in errors:
                    tally.errors[code] += 1
                    if code != "rate":
                        tally.counted[code] += 1
                bad += len(errors & BAD_CODES)
                if ("ack",) in seen:
                    tally.acks += 1
                    if case.counted:
                        tally.counted["bad_frame"] += 1  # refused by the frame decoder: acked and counted
                if ("pong",) in seen:
                    tally.pongs += 1
                if close is not None:
                    tally.closes[close] += 1
                    if close not in documented:
                        tally.undocumented.append(f"{case.kind}: {close}")
                    if close in LAYER_REASONS and not (close == 1009 and "too_large" in errors):
                        tally.counted[LAYER_REASONS[close]] += 1
                    if close == 1008 and bad <= bad_limit:
                        tally.early_policy_closes += 1
                # The answers that policy adds to any bad frame: the `rate` error and the 1008 close after it.
                own = {s for s in seen if s not in {("error", "rate"), ("close", 1008), ("timeout",)}}
                answered = bool(own & case.expect) or (("valid",) in case.expect and open_ and ("timeout",) not in seen)
                if answered or close is not None:
                    tally.answered += 1
                else:
                    tally.unanswered.append(f"{case.kind}: {case.wire[:80]!r} -> {sorted(map(str, seen))}")
                if answered and own - case.expect - {("valid",)}:
                    tally.mismatched.append(f"{case.kind}: {case.wire[:80]!r} -> {sorted(map(str, seen))}")
                if ("timeout",) in seen:
                    break  # answers still on their way would be taken for the next frame's: start afresh
        finally:
            sock.close()


async def fuzz_websocket(
    host: str, port: int, frames: int, *, connections: int, seed: int, max_frame: int, bad_limit: int,
    sources: list[str] | None = None, within: float = 15.0,
) -> WsTally:  # fmt: skip
    """Send `frames` fuzz cases over `connections` parallel sockets (reconnecting as the server closes them)."""
    rng = random.Random(seed)
    cases = ws_cases(rng, max_frame)
    tally = WsTally()
    budget = [frames]
    sources = sources or [f"127.0.1.{i}" for i in range(1, 65)]
    documented = documented_close_codes()
    started = time.monotonic()
    await asyncio.gather(
        *(
            _ws_worker(
                host, port, cases, budget, sources[i::connections] or sources, tally, documented, bad_limit, within
            )
            for i in range(connections)
        )
    )
    tally.seconds = time.monotonic() - started
    return tally


# -- the known fleet (valid native-protocol objects) ------------------------------------------------

CHANNELS = ("email", "reports", "default", "billing")


class Fleet:
    """A fleet as its source publishes it (docs/protocol.md section 1): every object valid, seqs in order.

    Jobs go queued -> started -> completed (or, rarely, failed), each started job on a runner that consumes
    its channel, listed in that runner's heartbeats; depth reports count what is queued and running.
    """

    def __init__(self, rng: random.Random, tag: str, runners: int = 12) -> None:
        self.rng = rng
        self.tag = tag
        self.t0 = time.time()
        self.seqs: dict[str, int] = {}
        self.runners = [f"{tag}-r{i:02d}" for i in range(runners)]
        self.weird_runners = [f"{tag}-weird-{i}" for i in range(6)]
        self.consumes = {r: [CHANNELS[i % 4], CHANNELS[(i + 1) % 4]] for i, r in enumerate(self.runners)}
        self.queued: dict[str, dict[str, Any]] = {}
        self.running: dict[str, dict[str, Any]] = {}
        self.jobs = 0
        self.processed: Counter[str] = Counter()

    def seq(self, src: str) -> int:
        self.seqs[src] = self.seqs.get(src, 0) + 1
        return self.seqs[src]

    def envelope(self, kind: str, src: str) -> dict[str, Any]:
        return {"v": 1, "type": kind, "src": src, "seq": self.seq(src), "ts": time.time()}

    def heartbeat(self, runner: str | None = None) -> dict[str, Any]:
        runner = runner or self.rng.choice(self.runners)
        body = self.envelope("heartbeat", runner)
        active = [
            {"job": j["job"], "channel": j["channel"], "fn": j["fn"], "started": j["started_at"]}
            for j in self.running.values()
            if j["runner"] == runner
        ][:50]
        body.update(
            boot=self.t0 - 3600, interval=3600.0, host=f"{runner}-host", region=("eu-west", "us-east")[len(runner) % 2],
            pid=4000 + self.runners.index(runner), version="hostile/1", state="running",
            channels=self.consumes[runner], concurrency=50, active=active,
            processed=self.processed[runner], failed=0,
        )  # fmt: skip
        return body

    def depth(self) -> dict[str, Any]:
        body = self.envelope("depth", f"{self.tag}-broker")
        queued = Counter(j["channel"] for j in self.queued.values())
        running = Counter(j["channel"] for j in self.running.values())
        body["channels"] = {c: {"queued": queued[c], "inflight": running[c], "scheduled": 0, "oldest": None,
                                "paused": False} for c in CHANNELS}  # fmt: skip
        return body

    def _job(self, event: str, job: dict[str, Any], src: str, **extra: Any) -> dict[str, Any]:
        body = self.envelope("job", src)
        body.update(id=f"{src}:{body['seq']}", event=event, job=job["job"], channel=job["channel"], fn=job["fn"],
                    attempt=1, max_attempts=3, queued_at=job["queued_at"], **extra)  # fmt: skip
        return body

    def job_event(self) -> dict[str, Any]:
        roll = self.rng.random()
        if self.running and (roll < 0.33 or len(self.running) > 40):
            job = self.running.pop(self.rng.choice(list(self.running)))
            self.processed[job["runner"]] += 1
            if self.rng.random() < 0.02:
                return self._job("failed", job, job["runner"], runner=job["runner"], started_at=job["started_at"],
                                 duration=0.5, error="ValueError: hostile", traceback="jobs.py, line 1")  # fmt: skip
            return self._job("completed", job, job["runner"], runner=job["runner"], started_at=job["started_at"],
                             duration=0.5)  # fmt: skip
        if self.queued and (roll < 0.66 or len(self.queued) > 40):
            job = self.queued.pop(self.rng.choice(list(self.queued)))
            job["runner"] = self.rng.choice([r for r in self.runners if job["channel"] in self.consumes[r]])
            job["started_at"] = time.time()
            self.running[job["job"]] = job
            return self._job("started", job, job["runner"], runner=job["runner"], started_at=job["started_at"])
        self.jobs += 1
        fn = self.rng.choice(("mail.send", "reports.render", "billing.charge"))
        job = {
            "job": f"{self.tag}-j{self.jobs}",
            "channel": self.rng.choice(CHANNELS),
            "fn": fn,
            "queued_at": time.time(),
        }
        self.queued[job["job"]] = job
        return self._job("queued", job, f"{self.tag}-producer", payload={"n": self.jobs, "tags": ["a", "b"]})

    def valid(self) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.15:
            return self.heartbeat()
        if roll < 0.22:
            return self.depth()
        return self.job_event()

    def weird(self) -> dict[str, Any]:
        """A valid object with absurd values: the schema takes it, so the fold and the widgets must too."""
        rng = self.rng
        absurd = (-1e308, 1e308, 0.0, -1.0, 5e-324, 1e18, -1e15)
        roll = rng.randrange(4)
        if roll == 0:
            runner = rng.choice(self.weird_runners)
            body = self.envelope("heartbeat", runner)
            body.update(
                ts=rng.choice(absurd), boot=rng.choice(absurd), interval=rng.choice((1e-9, 0.001, 3600.0)),
                host=rng.choice(("\u202eevil", "\x00\x01", "🔥" * 50, "")), region="r" * 100, version="v" * 100,
                pid=rng.choice((-1, 2**70)), state=rng.choice(("running", "draining", "drained", "paused")),
                channels=[f"c{i}" for i in range(rng.choice((0, 1, 300)))], concurrency=rng.choice((1, 100_000)),
                processed=10**30, failed=2**64,
            )  # fmt: skip
            return body
        if roll == 1:
            body = self.envelope("depth", f"{self.tag}-weird-broker")
            names = [f"w{rng.randrange(3000)}" for _ in range(rng.choice((1, 50, 400)))]
            body["channels"] = {n: {"queued": rng.choice((0, 10**30)), "inflight": 10**18, "scheduled": 2**63,
                                    "oldest": rng.choice((None, *absurd)), "paused": rng.random() < 0.5}
                                for n in names}  # fmt: skip
            return body
        src = f"{self.tag}-weird-src"
        body = self.envelope("job", src)
        job_id = rng.choice(
            ("j" * 200, "\u0000job", "😀" * 100, f"{self.tag}-j1", f"{self.tag}-weird-{rng.randrange(50)}")
        )
        body.update(
            id=f"{src}:{body['seq']}", event=rng.choice(("queued", "scheduled", "started", "retried", "completed",
                                                          "failed", "canceled", "expired")),
            job=job_id, channel=rng.choice(("c" * 100, "a.b:c-d_e", "email")), fn="f" * 300,
            attempt=rng.choice((0, 1, 10**20)), max_attempts=rng.choice((None, 1, 10**20)), ts=rng.choice(absurd),
            queued_at=rng.choice((None, *absurd)), run_at=rng.choice(absurd), started_at=rng.choice((None, *absurd)),
            duration=rng.choice((None, 0.0, 1e308)), cid=rng.choice((None, "", "c" * 200)),
            runner=rng.choice((None, *self.weird_runners)), payload=rng.choice((None, "x" * 20_000, [[[[[]]]]] * 100)),
            error=rng.choice((None, "", "E" * 30_000)), traceback=rng.choice((None, "T\n" * 20_000)),
            reason=rng.choice((None, "r" * 200)),
        )  # fmt: skip
        return body


# -- malformed Redis messages -----------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _broken(fleet: Fleet, rng: random.Random) -> dict[str, Any]:
    """A fleet object with one field made wrong (it carries the next seq of its src, as a real bad message would)."""
    body = fleet.valid()
    changed: tuple[str, Any] = rng.choice(
        [
            ("src", rng.choice((5, "", "s" * 201, None))),
            ("seq", rng.choice((-1, "7", 1.5, None))),
            ("ts", rng.choice(("now", None, [1], {}))),
            ("v", rng.choice(("1", 1.0, None, True))),
            ("type", rng.choice((None, 7, {"a": 1}, ["job"]))),
            ("id", rng.choice((5, "", "i" * 201))),
            ("channel", rng.choice(("bad channel!", "", "c" * 101, 5))),
            ("event", rng.choice(("exploded", "", 3))),
            ("attempt", rng.choice((-1, "1", 1.5))),
            ("duration", rng.choice((-5, "long"))),
            ("interval", rng.choice((0, -1, 3601, "2s"))),
            ("active", rng.choice(([{}], [{"job": "j"}] * 2, "all", [None] * 101))),
            ("channels", rng.choice(({"a": 1}, "email", [5], {"bad name": {}}))),
            ("concurrency", rng.choice((0, -3, "4"))),
            ("state", rng.choice(("sleeping", 1))),
        ]
    )
    body[changed[0]] = changed[1]
    return body


def redis_case(fleet: Fleet, rng: random.Random, message_max: int, recent: deque[bytes]) -> tuple[str, bytes]:
    """One malformed (or absurd but valid, or valid) payload for P:events, and the kind it is.

    The fleet numbers each object from the last seq the server accepted of its src (`run` keeps it so), so a
    rejected object never opens a gap, exactly as a publisher's bad message would not.
    """
    roll = rng.random() * 100
    if roll < 10:
        return "random_bytes", rng.randbytes(rng.randrange(0, 400))
    if roll < 20:
        whole = _dumps(fleet.valid())
        return "truncated", whole[: rng.randrange(0, len(whole))]
    if roll < 40:
        return "wrong_type", _dumps(_broken(fleet, rng))
    if roll < 40.1:
        body = {"v": 1, "type": "job", "src": "big", "seq": 1, "ts": 1.0, "payload": "x" * (message_max + 16)}
        return "too_large", _dumps(body)
    if roll < 48:
        members: list[Any] = [fleet.valid() for _ in range(rng.randrange(1, 4))]
        for _ in range(rng.randrange(1, 4)):
            junk = rng.choice((5, "x", None, {}, [], {"type": "job"}, {"v": 9, "type": "depth"}, [{"v": 1}]))
            members.insert(rng.randrange(len(members) + 1), junk)
        return "bad_batch", _dumps(members)
    if roll < 49:
        return "long_batch", _dumps([{"v": 1}] * rng.randrange(1001, 1500))
    if roll < 55:
        body = {"v": 1, "type": rng.choice(("job.created", "heartbeat.v2", "", "JOB", "log", {"job": 1}, ["job"])),
                "src": "x", "seq": 1, "ts": 1.0}  # fmt: skip
        return "unknown_type", _dumps(body)
    if roll < 60:
        body = fleet.valid()
        body["v"] = rng.choice((2, 3, 10**9))
        return "version", _dumps(body)
    if roll < 65:
        literal = rng.choice((b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"))
        return "non_finite", b'{"v":1,"type":"heartbeat","src":"r","seq":1,"ts":%s,"boot":0,"interval":2}' % literal
    if roll < 69:
        depth = rng.randrange(1_100, 30_000)
        inner = b"[" * depth + b"]" * depth
        return "deep", rng.choice((inner, b'{"v":1,"type":"job","payload":%s}' % inner, b"[%s]" % inner))
    if roll < 73:
        bad = rng.choice((b'{"v":1,"type":"job","src":"\xff\xfe","seq":1}', b"\xc3\x28", b'["\xed\xa0\x80"]'))
        return "invalid_utf8", bad
    if roll < 76:
        return "not_object", rng.choice((b"", b"   ", b"123", b"null", b'"heartbeat"', b"true", b"[1,2,3]", b"{}"))
    if roll < 80:
        body = fleet.valid()
        del body[rng.choice([k for k in body if k not in ("v",)])]
        return "missing_field", _dumps(body)
    if roll < 86:
        return "absurd", _dumps(fleet.weird())
    if roll < 88 and recent:
        # A redelivery: a job event the server took before, again (same id): valid, and a duplicate to the fold.
        return "redelivery", rng.choice(recent)
    return "valid", _dumps(fleet.valid())


def valid_parts(payload: bytes, good: list[Any], bad: list[Any], message_max: int) -> list[bytes]:
    """The bytes of each object `parse_message` accepted from `payload` (`good`), one object each, as sent."""
    import msgspec

    if not good:
        return []
    if payload.lstrip()[:1] != b"[":
        return [payload]
    if not bad:
        return [bytes(p) for p in msgspec.json.decode(payload, type=list[msgspec.Raw])]
    # A batch with bad members: the server judged each member on its own, as this does.
    from server.streams.core.events import parse_message

    parts = [bytes(p) for p in msgspec.json.decode(payload, type=list[msgspec.Raw])]
    return [p for p in parts if p.lstrip()[:1] == b"{" and parse_message(p, message_max)[0]]


# -- reading a server -------------------------------------------------------------------------------


@dataclass
class Server:
    """A jobpulse process under test: where it answers, its prefix and pid, and the headers its API needs."""

    url: str
    prefix: str
    pid: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/api/stats")
        assert status == 200, (status, body[:200])
        value: dict[str, Any] = json.loads(body)
        return value

    def metrics(self) -> dict[tuple[str, str], float]:
        """`/metrics` as {(family_total, 'label="value",...'): value}."""
        status, body = self.get("/metrics")
        assert status == 200, (status, body[:200])
        out: dict[tuple[str, str], float] = {}
        for line in body.decode().splitlines():
            found = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
            if found:
                out[(found.group(1), found.group(2) or "")] = float(found.group(3))
        return out

    def rss(self) -> int:
        import psutil

        return int(psutil.Process(self.pid).memory_info().rss)

    def alive(self) -> bool:
        import psutil

        try:
            if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        return self.get("/healthz", 5)[0] == 200 and self.get("/readyz", 5)[0] == 200


def subscribed_since(server: Server) -> float | None:
    """Since when the server's subscription to the source has been up (the health widget's `since`)."""
    status, body = server.get("/api/widgets/health")
    assert status == 200, (status, body[:200])
    since: float | None = json.loads(body)["data"].get("since")
    return since


def folded(stats: dict[str, Any]) -> int:
    """Source objects the server took: folded, or dropped as duplicates."""
    return int(stats["intake"]["events"] + stats["intake"]["dupes"])


def processed(stats: dict[str, Any]) -> int:
    """Source objects the server has dealt with: folded, dropped as duplicates, or rejected."""
    intake = stats["intake"]
    return int(intake["events"] + intake["dupes"] + sum(intake["rejected"].values()))


async def settle(servers: list[tuple[Server, int]], within: float = 60.0) -> None:
    """Wait until each server has dealt with at least its number of source objects."""
    deadline = time.monotonic() + within
    for server, target in servers:
        while (done := processed(await asyncio.to_thread(server.stats))) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server.prefix}: {done} of {target} source objects dealt with")
            await asyncio.sleep(0.05)


# Widgets whose data is a function of the valid messages alone (and of time, which both servers share). Left out:
# health, logs, platform, service, pulse (intake counters, log lines, round trips, this process), activity
# (audited commands), published, kpi and chart (the minute axis moves), alert_log (when each alert was seen).
COMPARED = ("counters", "live_jobs", "failures", "scheduled", "runners", "fleet_summary", "channels", "backlogs",
            "hot_issues", "snapshot", "runner_events")  # fmt: skip
# What the once-a-second clock tick saw, compared before and after the websocket fuzz (the same server) but not
# between two servers: the runner events log records status changes as ticks see them (a runner that beats with
# a tiny interval, then a normal one, may be seen offline in between by one server's tick and not the other's),
# and the hot issues shown are the first by when each alert was raised, a tick's time. The alerts open are not.
TICK_SEEN = {"runner_events"}


def between_servers(snap: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in snap.items() if k not in TICK_SEEN}
    if "hot_issues" in out:
        out["hot_issues"] = {"total": out["hot_issues"].get("total")}
    return out


# Fields holding jobpulse's receive time (its own clock), which differs by milliseconds between two servers, and
# texts that say how long ago something happened ("no heartbeat for 12s"): their digits are left out.
RECEIVE_TIME = {"runners": {"hb"}, "fleet": {"hb"}, "runner_events": {"at"}, "hot_issues": {"since"},
                "failures": {"at"}, "jobs": {"updated"}, "job": {"updated"}}  # fmt: skip
AGO_TEXT = {"runner_events": "message", "hot_issues": "detail"}


def compared_keys(fleet: Fleet) -> list[str]:
    from server.protocol import view_key

    some_job = f"{fleet.tag}-j1"
    return [
        *COMPARED,
        view_key("fleet", {}),
        view_key("fleet", {"status": "offline"}),
        view_key("jobs", {"sort": "id"}),
        view_key("jobs", {"q": "status:failed", "sort": "id"}),
        view_key("jobs", {"q": "status:running", "sort": "id"}),
        view_key("job", {"id": some_job}),
    ]


def _strip(value: Any, drop: set[str], ago: str | None) -> Any:
    if isinstance(value, dict):
        return {
            k: re.sub(r"\d+", "#", v) if k == ago and isinstance(v, str) else _strip(v, drop, ago)
            for k, v in value.items()
            if k not in drop
        }
    if isinstance(value, list):
        return [_strip(v, drop, ago) for v in value]
    return value


def normalized(key: str, data: Any) -> Any:
    """A widget's data without what differs between two servers that folded the same messages."""
    name = key.split("?", 1)[0]
    return _strip(data, RECEIVE_TIME.get(name, set()), AGO_TEXT.get(name))


async def snapshot(server: Server, keys: list[str], within: float = 20.0) -> dict[str, Any]:
    """The data of `keys` as a page that subscribes now gets it (receive-time fields left out)."""
    sock = await RawSocket.open(server.host, server.port, headers=server.headers)
    try:
        async with asyncio.timeout(within):
            await sock.read_json()  # welcome
            sock.write(text(json.dumps({"type": "hello", "v": 1, "widgets": keys, "epoch": None, "resume": {}})))
            data: dict[str, Any] = {}
            while len(data) < len(keys):
                message = await sock.read_json()
                if message["type"] == "error":
                    raise AssertionError(f"snapshot of {keys}: {message}")
                for frame_ in message.get("frames", ()):
                    if frame_["type"] == "snapshot":
                        data[frame_["w"]] = frame_["data"]
        return {k: normalized(k, v) for k, v in data.items()}
    finally:
        sock.close()


def differences(a: dict[str, Any], b: dict[str, Any], limit: int = 5) -> list[str]:
    """Where two snapshots differ (at most `limit` places, each with a short excerpt)."""
    out: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if len(out) >= limit or x == y:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y), key=str):
                walk(x.get(key, "<missing>"), y.get(key, "<missing>"), f"{path}.{key}")
            return
        out.append(f"{path}: {json.dumps(x)[:120]} != {json.dumps(y)[:120]}")

    walk(a, b, "")
    return out


# -- the whole run ----------------------------------------------------------------------------------


@dataclass
class RedisTally:
    """What the Redis fuzz published and what `parse_message` made of it."""

    published: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    valid_objects: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class FloodTally:
    """What a connection flood from one address did, beside other addresses and a trusted proxy's clients."""

    attempts: int = 0
    admitted: int = 0  # from the flooding address
    refused: Counter[int] = field(default_factory=Counter)  # its close codes at connect
    failed: int = 0  # could not even open a TCP connection
    others: int = 0  # sockets from other addresses during the flood
    others_admitted: int = 0
    forwarded: int = 0  # sockets through the trusted proxy (127.0.0.1), each from its own X-Forwarded-For address
    forwarded_admitted: int = 0
    limit_metric: int = 0  # jobpulse_http_events_total{what="ws_address_limit"}, its increase
    clients_after: int = -1  # jobpulse_clients once every flood socket closed, minus before
    seconds: float = 0.0
    max_open: int = 0


async def _admitted(server: Server, source: str, headers: dict[str, str] | None = None) -> RawSocket | int:
    """A socket past its welcome, or the close code it was refused with (-1: no TCP connection)."""
    try:
        sock = await RawSocket.open(server.host, server.port, source=source, headers=headers)
    except (OSError, TimeoutError):
        return -1
    try:
        async with asyncio.timeout(15):
            welcome = await sock.read_json()
    except Closed as closed:
        return closed.code or 0
    except TimeoutError:
        sock.close()
        return -1
    return sock if welcome.get("type") == "welcome" else 0


async def flood(
    server: Server, attempts: int, max_open: int, *, address: str = "127.0.2.1", others: int = 20,
    forwarded: int = 50, concurrency: int = 32,
) -> FloodTally:  # fmt: skip
    """`attempts` connects from `address` as fast as `concurrency` allows, holding every admitted socket; then,
    while they are held, one socket from each of `others` other addresses and `forwarded` sockets through the
    trusted proxy 127.0.0.1 with their own X-Forwarded-For. Every socket is closed at the end."""
    tally = FloodTally(attempts=attempts, others=others, forwarded=forwarded, max_open=max_open)
    held: list[RawSocket] = []
    metrics0 = server.metrics()
    gate = asyncio.Semaphore(concurrency)

    async def one(source: str, headers: dict[str, str] | None = None) -> RawSocket | int:
        async with gate:
            result = await _admitted(server, source, headers)
        if isinstance(result, RawSocket):
            held.append(result)
        return result

    started = time.monotonic()
    try:
        for result in await asyncio.gather(*(one(address) for _ in range(attempts))):
            if isinstance(result, RawSocket):
                tally.admitted += 1
            elif result == -1:
                tally.failed += 1
            else:
                tally.refused[result] += 1
        tally.seconds = time.monotonic() - started
        other = await asyncio.gather(*(one(f"127.0.3.{i + 1}") for i in range(others)))
        tally.others_admitted = sum(isinstance(r, RawSocket) for r in other)
        behind = await asyncio.gather(
            *(one("127.0.0.1", {"X-Forwarded-For": f"10.9.{i // 250}.{i % 250 + 1}"}) for i in range(forwarded))
        )
        tally.forwarded_admitted = sum(isinstance(r, RawSocket) for r in behind)
        metrics1 = server.metrics()
        key = ("jobpulse_http_events_total", 'what="ws_address_limit"')
        tally.limit_metric = int(metrics1.get(key, 0) - metrics0.get(key, 0))
    finally:
        for sock in held:
            sock.write(frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            sock.close()
    gauge = ("jobpulse_clients", "")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tally.clients_after = int(server.metrics()[gauge] - metrics0[gauge])
        if tally.clients_after == 0:
            break
        await asyncio.sleep(0.2)
    return tally


@dataclass
class Report:
    """Everything one run measured, and the properties that must hold (`failures`)."""

    frames: int
    redis_messages: int
    ws: WsTally = field(default_factory=WsTally)
    redis: RedisTally = field(default_factory=RedisTally)
    ws_state_diff: list[str] = field(default_factory=list)
    redis_state_diff: list[str] = field(default_factory=list)
    ws_metrics: Counter[str] = field(default_factory=Counter)  # jobpulse_ws_bad_frames_total delta, by reason
    health_rejected: Counter[str] = field(default_factory=Counter)  # health widget / api/stats delta
    metrics_rejected: Counter[str] = field(default_factory=Counter)  # jobpulse_events_rejected_total delta
    target_events: int = 0
    control_events: int = 0
    control_rejected: int = 0
    flood: FloodTally = field(default_factory=FloodTally)
    rss: dict[str, int] = field(default_factory=dict)
    alive: bool = False
    crashes: int = -1
    compared: int = 0
    notes: list[str] = field(default_factory=list)  # what went wrong on the way

    def failures(self) -> list[str]:
        ws = self.ws
        problems = list(self.notes)
        if not self.alive or self.crashes != 0:
            problems.append(f"server alive {self.alive}, aggregator crashes {self.crashes}")
        if ws.sent != self.frames or ws.answered != ws.sent:
            problems.append(f"websocket: {ws.answered} of {ws.sent} frames answered (of {self.frames}); "
                            f"unanswered e.g. {ws.unanswered[:3]}")  # fmt: skip
        if ws.undocumented:
            problems.append(f"undocumented close codes: {ws.undocumented[:5]}")
        if ws.mismatched:
            problems.append(f"{len(ws.mismatched)} frames answered otherwise than documented: {ws.mismatched[:3]}")
        if ws.early_policy_closes:
            problems.append(f"{ws.early_policy_closes} 1008 closes before JOBPULSE_WS_BAD_FRAMES bad frames")
        if +ws.counted != +self.ws_metrics:
            problems.append(f"bad frames counted in /metrics {dict(self.ws_metrics)} != sent {dict(ws.counted)}")
        if self.ws_state_diff:
            problems.append(f"widgets changed by the websocket fuzz: {self.ws_state_diff}")
        if self.redis_state_diff:
            problems.append(f"target != control after the Redis fuzz: {self.redis_state_diff}")
        if +self.health_rejected != +self.redis.rejected or +self.metrics_rejected != +self.redis.rejected:
            problems.append(f"rejections: health {dict(self.health_rejected)}, metrics {dict(self.metrics_rejected)},"
                            f" published {dict(self.redis.rejected)}")  # fmt: skip
        flood = self.flood
        if flood.attempts and (
            flood.admitted != min(flood.attempts, flood.max_open)
            or set(flood.refused) - {4429}
            or flood.limit_metric != flood.refused[4429]
            or flood.others_admitted != flood.others
            or flood.forwarded_admitted != flood.forwarded
            or flood.clients_after != 0
        ):
            problems.append(f"connection flood: {flood}")
        if self.target_events != self.control_events or self.control_rejected:
            problems.append(f"events folded: target {self.target_events}, control {self.control_events} "
                            f"(control rejected {self.control_rejected})")  # fmt: skip
        return problems


def _family(metrics: dict[tuple[str, str], float], name: str, label: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for (family, labels), value in metrics.items():
        if family == name:
            found = re.search(rf'{label}="([^"]*)"', labels)
            if found:
                out[found.group(1)] += int(value)
    return out


async def run(
    target: Server, control: Server, redis_url: str, *, frames: int, redis_messages: int, seed: int = 6,
    connections: int = 8, message_max: int = 1_048_576, ws_max_frame: int = 65_536, bad_limit: int = 20,
    sources: list[str] | None = None, base_objects: int = 1500, flood_attempts: int = 1000,
    max_per_address: int = 200, log: Any = None,
) -> Report:  # fmt: skip
    """The whole hostile run against two servers on `redis_url`: `target` takes the fuzz, `control` only the
    valid messages. Returns the report; `report.failures()` lists what did not hold."""
    import redis.asyncio as aredis

    from server.streams.core.events import JobEvent, parse_message

    def say(line: str) -> None:
        if log is not None:
            log(line)

    report = Report(frames=frames, redis_messages=redis_messages)
    rng = random.Random(seed)
    fleet = Fleet(rng, tag=f"hx{seed}")
    client = aredis.Redis.from_url(redis_url)
    try:
        # 0. The known fleet, on both servers; its runners registered as a source registers them.
        for server in (target, control):
            await client.sadd(f"{server.prefix}:runners", *fleet.runners)
        pipe = client.pipeline(transaction=False)
        objects = [fleet.heartbeat(r) for r in fleet.runners] + [fleet.valid() for _ in range(base_objects)]
        objects.append(fleet.depth())
        seen_ids: set[str] = set()
        for obj in objects:
            data = _dumps(obj)
            if obj["type"] == "job":
                seen_ids.add(obj["id"])
            pipe.publish(f"{target.prefix}:events", data)
            pipe.publish(f"{control.prefix}:events", data)
        await pipe.execute()
        await settle([(target, len(objects)), (control, len(objects))])
        await asyncio.sleep(1.5)  # a clock tick and a reconcile after the last object
        keys = compared_keys(fleet)
        report.compared = len(keys)
        report.rss["start"] = target.rss()
        say(f"  known fleet: {len(objects)} objects on both servers; target RSS {report.rss['start'] / 2**20:.0f} MiB")

        # 1. Websocket fuzz against the target.
        before = await snapshot(target, keys)
        metrics0 = target.metrics()
        report.ws = await fuzz_websocket(target.host, target.port, frames, connections=connections, seed=seed,
                                         max_frame=ws_max_frame, bad_limit=bad_limit, sources=sources)  # fmt: skip
        await asyncio.sleep(1.5)
        after = await snapshot(target, keys)
        report.ws_state_diff = differences(before, after)
        metrics1 = target.metrics()
        report.ws_metrics = _family(metrics1, "jobpulse_ws_bad_frames_total", "reason")
        report.ws_metrics.subtract(_family(metrics0, "jobpulse_ws_bad_frames_total", "reason"))
        report.rss["after_ws"] = target.rss()
        say(f"  websocket: {report.ws.sent:,} frames in {report.ws.seconds:.1f} s over {report.ws.connections:,}"
            f" connections; target RSS {report.rss['after_ws'] / 2**20:.0f} MiB")  # fmt: skip

        # 2. Redis fuzz: the target gets every payload, the control what parse_message accepts of it.
        for server in (target, control):  # the runners only the absurd messages speak for
            await client.sadd(f"{server.prefix}:runners", *fleet.weird_runners)
        since0 = [await asyncio.to_thread(subscribed_since, s) for s in (target, control)]
        stats0 = [await asyncio.to_thread(s.stats) for s in (target, control)]
        done0 = [processed(s) for s in stats0]
        tally = report.redis
        accepted_seqs = dict(fleet.seqs)
        recent: deque[bytes] = deque(maxlen=200)
        want = list(done0)
        started = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for i in range(redis_messages):
            fleet.seqs = dict(accepted_seqs)
            kind, payload = redis_case(fleet, rng, message_max, recent)
            good, bad = parse_message(payload, message_max)
            tally.kinds[kind] += 1
            tally.bytes += len(payload)
            for rejected in bad:
                tally.rejected[rejected.reason] += 1
            pipe.publish(f"{target.prefix}:events", payload)
            for message, part in zip(good, valid_parts(payload, good, bad, message_max), strict=True):
                # The fold drops a job event it has seen (by id) before it looks at the seq; the rest move it on.
                if not isinstance(message, JobEvent) or message.id not in seen_ids:
                    accepted_seqs[message.src] = message.seq
                if isinstance(message, JobEvent) and message.id not in seen_ids:
                    seen_ids.add(message.id)
                    recent.append(part)
                pipe.publish(f"{control.prefix}:events", part)
            tally.valid_objects += len(good)
            want[0] += len(good) + len(bad)
            want[1] += len(good)
            if (i + 1) % 250 == 0 or i + 1 == redis_messages:
                await pipe.execute()
                pipe = client.pipeline(transaction=False)
                # Stay within a few thousand objects of the servers, so Redis never buffers much for them.
                await settle([(target, want[0] - 3000), (control, want[1] - 3000)], within=120)
        tally.published = redis_messages
        try:
            await settle([(target, want[0]), (control, want[1])], within=60)
        except TimeoutError as exc:
            report.notes.append(f"not every published object was dealt with: {exc}")
        for server, since in zip((target, control), since0, strict=True):
            if await asyncio.to_thread(subscribed_since, server) != since:
                # Pub/sub keeps nothing for a subscriber that is away: what was published meanwhile is lost to it.
                report.notes.append(f"{server.prefix} lost its subscription to Redis during the Redis fuzz")
        tally.seconds = time.monotonic() - started
        await asyncio.sleep(2.5)  # clock ticks and a reconcile on both, after the last message
        ours, theirs = await snapshot(target, keys), await snapshot(control, keys)
        report.redis_state_diff = differences(between_servers(theirs), between_servers(ours))
        stats1 = [await asyncio.to_thread(s.stats) for s in (target, control)]
        report.health_rejected = Counter(stats1[0]["intake"]["rejected"])
        report.health_rejected.subtract(Counter(stats0[0]["intake"]["rejected"]))
        metrics2 = target.metrics()
        report.metrics_rejected = _family(metrics2, "jobpulse_events_rejected_total", "reason")
        report.metrics_rejected.subtract(_family(metrics1, "jobpulse_events_rejected_total", "reason"))
        report.target_events = folded(stats1[0]) - folded(stats0[0])
        report.control_events = folded(stats1[1]) - folded(stats0[1])
        report.control_rejected = sum(stats1[1]["intake"]["rejected"].values()) - sum(
            stats0[1]["intake"]["rejected"].values()
        )
        report.rss["after_redis"] = target.rss()
        rss = report.rss["after_redis"] / 2**20
        say(f"  redis: {tally.published:,} messages ({tally.bytes / 2**20:.0f} MiB) in {tally.seconds:.1f} s,"
            f" {tally.valid_objects:,} valid objects; target RSS {rss:.0f} MiB")  # fmt: skip
        # 3. A connection flood from one address, beside other addresses and a trusted proxy's clients.
        if flood_attempts:
            report.flood = await flood(target, flood_attempts, max_per_address)
            f = report.flood
            say(f"  flood: {f.attempts:,} connects from one address in {f.seconds:.1f} s: {f.admitted} admitted,"
                f" {sum(f.refused.values()):,} refused; {f.others_admitted}/{f.others} other addresses and"
                f" {f.forwarded_admitted}/{f.forwarded} forwarded ones admitted meanwhile")  # fmt: skip
    finally:
        await client.aclose()
    report.alive = await asyncio.to_thread(target.alive)
    status, body = await asyncio.to_thread(target.get, "/readyz")
    report.crashes = int(json.loads(body).get("crashes", -1)) if status == 200 else -1
    return report


def summary(report: Report, server_log_tracebacks: int | None = None) -> str:
    """The table the script prints."""
    ws, rd = report.ws, report.redis
    mib = 2**20
    closes = ", ".join(f"{code}: {n:,}" for code, n in sorted(ws.closes.items())) or "-"
    rows: list[list[Any]] = [
        ["websocket frames sent", f"{ws.sent:,}", f"{ws.sent / ws.seconds:,.0f}/s" if ws.seconds else "-"],
        ["  answered (error, ack, pong) or closed with a documented code", f"{ws.answered:,}",
         f"{100 * ws.answered / max(1, ws.sent):.2f}%"],
        ["  connections (from loopback addresses)", f"{ws.connections:,}", f"{ws.connect_failures} failed to open"],
        ["  closes by code", closes, ""],
        ["  error frames by code", ", ".join(f"{k}: {v:,}" for k, v in sorted(ws.errors.items())), ""],
        ["  acks / pongs", f"{ws.acks:,} / {ws.pongs:,}", ""],
        ["  bad frames sent / counted in /metrics",
         f"{sum(ws.counted.values()):,} / {sum(report.ws_metrics.values()):,}",
         "equal" if +ws.counted == +report.ws_metrics else "DIFFERENT"],
        ["  unanswered / mismatched / undocumented closes",
         f"{len(ws.unanswered)} / {len(ws.mismatched)} / {len(ws.undocumented)}", ""],
        ["  widgets equal before and after", "yes" if not report.ws_state_diff else "NO", f"{report.compared} keys"],
        ["redis messages published", f"{rd.published:,}",
         f"{rd.published / rd.seconds:,.0f}/s" if rd.seconds else "-"],
        ["  valid objects in them (also sent to the control)", f"{rd.valid_objects:,}",
         f"{rd.bytes / mib:,.0f} MiB in all"],
        ["  rejections published / health / metrics",
         f"{sum(rd.rejected.values()):,} / {sum(report.health_rejected.values()):,} / "
         f"{sum(report.metrics_rejected.values()):,}",
         ", ".join(f"{k}: {v:,}" for k, v in sorted(rd.rejected.items()))],
        ["  events folded, target / control", f"{report.target_events:,} / {report.control_events:,}", ""],
        ["  target widgets equal the control's", "yes" if not report.redis_state_diff else "NO",
         f"{report.compared} keys"],
        ["connection flood from one address: connects in s", f"{report.flood.attempts:,}",
         f"{report.flood.seconds:.1f} s"],
        ["  admitted (JOBPULSE_MAX_CLIENTS_PER_ADDRESS) / refused by code",
         f"{report.flood.admitted} (limit {report.flood.max_open})",
         ", ".join(f"{k}: {v:,}" for k, v in sorted(report.flood.refused.items())) or "-"],
        ["  meanwhile admitted: other addresses / behind the trusted proxy",
         f"{report.flood.others_admitted}/{report.flood.others} / "
         f"{report.flood.forwarded_admitted}/{report.flood.forwarded}", ""],
        ["  refusals in /metrics; clients left after closing",
         f"{report.flood.limit_metric:,}; {report.flood.clients_after}", ""],
        ["server alive (healthz, readyz, no crash)", "yes" if report.alive and report.crashes == 0 else "NO",
         f"crashes {report.crashes}"],
        ["target RSS MiB: start / after ws / after redis",
         " / ".join(f"{report.rss.get(k, 0) / mib:.0f}" for k in ("start", "after_ws", "after_redis")), ""],
    ]  # fmt: skip
    if server_log_tracebacks is not None:
        rows.append(["tracebacks in the target's log", f"{server_log_tracebacks}", ""])
    return common.table(["what", "value", "note"], rows)


# -- orchestrator -----------------------------------------------------------------------------------


def _start_server(children: common.Children, args: argparse.Namespace, prefix: str, log: Any) -> Server:
    from server.redis_server import free_port

    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": args.redis_url, "JOBPULSE_PREFIX": prefix, "HOST": "127.0.0.1", "PORT": str(port),
        "JOBPULSE_LOG_LEVEL": "warning",
        # Sign-in happens once, at the upgrade; every frame after it takes the same path whoever sent it.
        "JOBPULSE_AUTH": "dev",
        # Let refused commands reach their validation instead of the per-user rate limit.
        "JOBPULSE_COMMAND_RATE": "1000000",
        "JOBPULSE_RECONCILE_S": "1",
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"], cwd=common.REPO, env=env, stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    children.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jobpulse exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/readyz", timeout=1) as response:
            if response.status == 200:
                return Server(url, prefix, proc.pid)
        time.sleep(0.1)
    raise TimeoutError("jobpulse not ready within 30 s")


def orchestrate(args: argparse.Namespace) -> int:
    from server.settings import Settings

    common.terminate_on_sigterm()
    facts = common.machine_facts()
    started = time.monotonic()
    settings = Settings.from_env()
    report: Report | None = None
    interrupted = None
    tracebacks = None
    prefixes = [common.unique_prefix("hostile"), common.unique_prefix("hostile-control")]
    with tempfile.TemporaryFile("w+") as target_log, tempfile.TemporaryFile("w+") as control_log:
        try:
            with common.session(args, facts, "jobpulse hostile input (issue #6)") as (children, origin):
                url = args.redis_url
                try:
                    print(f"redis {url} ({origin}, {facts.get('redis_version')}); {args.frames:,} websocket frames"
                          f" over {args.connections} parallel connections; {args.redis_messages:,} Redis messages;"
                          f" seed {args.seed}", flush=True)  # fmt: skip
                    target = _start_server(children, args, prefixes[0], target_log)
                    control = _start_server(children, args, prefixes[1], control_log)
                    coroutine = run(
                        target, control, url, frames=args.frames, redis_messages=args.redis_messages,
                        seed=args.seed, connections=args.connections, message_max=settings.message_max,
                        ws_max_frame=settings.ws_max_frame, bad_limit=settings.ws_bad_frames,
                        flood_attempts=args.flood, max_per_address=settings.max_clients_per_address,
                        log=lambda line: print(line, flush=True),
                    )  # fmt: skip
                    report = asyncio.run(coroutine)
                finally:
                    children.stop_all()
                    for prefix in prefixes:
                        common.delete_prefix(url, prefix)
        except common.HardTimeout as exc:
            interrupted = str(exc)
        target_log.seek(0)
        output = target_log.read()
        tracebacks = output.count("Traceback")
        if tracebacks or report is None or report.failures():
            print(f"the target's log, its end:\n{output[-6000:]}", file=sys.stderr)
    print()
    if report is not None:
        print(summary(report, tracebacks))
        problems = report.failures() + ([f"{tracebacks} tracebacks in the server's log"] if tracebacks else [])
        for problem in problems:
            print(f"FAILED: {problem}")
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"facts": facts, "args": vars(args), "report": _jsonable(report)}, out, indent=1)
            print(f"results written to {args.json}")
    print(f"Total {time.monotonic() - started:.0f} s.")
    if interrupted:
        print(f"INTERRUPTED: {interrupted}")
    return 1 if interrupted or report is None or report.failures() or tracebacks else 0


def _jsonable(value: Any) -> Any:
    """The report as plain JSON values (dataclasses.asdict would rebuild each Counter from its items)."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000, help="fuzzed websocket frames (default 100,000)")
    parser.add_argument("--redis-messages", type=int, default=100_000, help="Redis messages (default 100,000)")
    parser.add_argument("--connections", type=int, default=16, help="parallel websocket connections (default 16)")
    parser.add_argument("--flood", type=int, default=1000, help="connects from one address in the flood (1000)")
    parser.add_argument("--seed", type=int, default=6, help="random seed (default 6)")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL, else a private redis-server")
    parser.add_argument("--timeout", type=float, default=900.0, help="hard timeout of the whole run, s (default 900)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    try:
        return orchestrate(args)
    except KeyboardInterrupt:  # Ctrl-C: every `finally` has run
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
