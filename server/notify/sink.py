"""`jobpulse alert-sink`: a webhook receiver that prints the alerts it gets, for the demo and for trying a setup.

It answers jobpulse's generic webhook (docs/protocol.md 8.2) as a careful
receiver should: the signature checked (when it has the secret) with the
replay window, copies dropped by `X-Jobpulse-Delivery`, bodies over 64 KiB
refused. One line per notification on stdout. A plain asyncio HTTP/1.1 server:
one request per connection, nothing to install.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import OrderedDict
from typing import TextIO

from server.notify.targets import MARK, verify

MAX_BODY = 65_536
MAX_HEAD = 8_192
REMEMBERED = 10_000  # delivery ids kept to drop copies
READ_TIMEOUT_S = 10.0


class Sink:
    """The receiver's state: the secret, the delivery ids seen, what it printed."""

    def __init__(self, secret: str = "", out: TextIO | None = None) -> None:
        self.secret = secret
        self.out = out or sys.stdout
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.received = 0

    def handle(self, headers: dict[str, str], body: bytes, now: float) -> tuple[int, str]:
        """The answer (status, text) to one POST, printing what it says."""
        if self.secret and not verify(self.secret, headers.get("x-jobpulse-signature", ""), body, now):
            self._say(f"refused a request: bad or missing signature ({len(body)} bytes)")
            return 401, "bad signature"
        try:
            note = json.loads(body)
            alert = note["alert"]
            kind, delivery = str(note["kind"]), str(note["id"])
        except (ValueError, KeyError, TypeError):
            self._say("refused a request: not a jobpulse notification")
            return 400, "not a jobpulse notification"
        if delivery in self.seen:
            return 200, "already had it"
        self.seen[delivery] = None
        while len(self.seen) > REMEMBERED:
            self.seen.popitem(last=False)
        self.received += 1
        mark = MARK.get(kind, kind.upper())[:12]
        severity = str(alert.get("severity", ""))[:10]
        title = str(alert.get("title", ""))[:200]
        detail = str(alert.get("detail", ""))[:300]
        self._say(
            f"{mark:<8} {severity:<8} {str(alert.get('id', ''))[:120]}: {title}" + (f" ({detail})" if detail else "")
        )
        return 200, "ok"

    def _say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.out.write(f"alert-sink {stamp} {text}\n")
        self.out.flush()

    async def serve(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self._connection, host, port)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, text = 400, "bad request"
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_HEAD:
                    raise ValueError("head too large")
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ", 1)[0]
                headers = {}
                for line in lines[1:]:
                    name, colon, value = line.partition(":")
                    if colon:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if method != "POST":
                    status, text = 405, "POST only"
                elif not 0 <= length <= MAX_BODY:
                    status, text = 413, "body too large"
                else:
                    body = await reader.readexactly(length)
                    status, text = self.handle(headers, body, time.time())
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError, ConnectionError):
            pass
        try:
            data = text.encode()
            reason = b"OK" if status == 200 else b"Refused"
            head = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            writer.write(head % (status, reason, len(data)) + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def run(host: str, port: int, secret: str) -> None:
    sink = Sink(secret)
    server = await sink.serve(host, port)
    bound = server.sockets[0].getsockname()
    signed = "checking signatures" if secret else "not checking signatures (no secret)"
    sink._say(f"listening on http://{bound[0]}:{bound[1]}/ , {signed}")
    async with server:
        await server.serve_forever()
