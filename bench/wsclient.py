"""A minimal websocket client for the fan-out benchmark: many connections per process, little CPU per message.

An asyncio Protocol per connection: it sends the RFC 6455 upgrade request,
checks the 101, sends one text frame (`hello`), then parses the server's frames
straight from `data_received`: text messages (fragmented ones reassembled) go to
a callback with the time the bytes arrived; pings are answered with pongs; a
close frame is answered and the connection closed. With `deflate`, it offers
permessage-deflate without context takeover either way (what `jobpulse serve`
negotiates with JOBPULSE_WS_DEFLATE=true) and inflates compressed messages;
`wire` is then the last message's size as sent. Otherwise nothing is offered
and the server sends plain frames. It exists because the `websockets`
client's per-message machinery costs several times more CPU, and on a 2-core
machine the clients share the CPU with the server under test; frames are still
RFC 6455 frames (client frames masked), so any compliant server accepts it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
import zlib
from collections.abc import Callable
from typing import Any

OnMessage = Callable[["Connection", bytes, float], None]

DEFLATE_OFFER = (
    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame (clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    if n:
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        payload = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
    return head + mask + payload


class Connection(asyncio.Protocol):
    """One websocket client connection; `opened` resolves after the upgrade, `closed` when it ends."""

    def __init__(
        self, host: str, port: int, path: str, hello: bytes, on_message: OnMessage, deflate: bool = False
    ) -> None:
        offer = DEFLATE_OFFER if deflate else ""
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"{offer}\r\n"
        ).encode()
        self.deflated = False  # the server took the offer: frames with RSV1 set are compressed
        self.wire = 0  # the last message's payload bytes as they came (compressed ones compressed)
        self.hello = hello
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: list[bytes] = []
        self.compressed = False
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.state: Any = None  # the benchmark's per-connection state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(0x1, text))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(0x8, (1000).to_bytes(2, "big")))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        at = time.time()
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            if b" 101 " not in status:
                if not self.opened.done():  # done: connect() gave up waiting (its timeout cancelled the future)
                    self.opened.set_exception(ConnectionError(f"upgrade refused: {status!r}"))
                assert self.transport is not None
                self.transport.close()
                return
            headers = bytes(buffer[:end]).lower()
            self.deflated = b"\r\nsec-websocket-extensions: permessage-deflate" in headers
            del buffer[: end + 4]
            self.upgraded = True
            if not self.opened.done():
                self.opened.set_result(None)
            self.send_text(self.hello)
        i = 0
        size = len(buffer)
        while size - i >= 2:
            b0, b1 = buffer[i], buffer[i + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - i < 4:
                    break
                n = int.from_bytes(buffer[i + 2 : i + 4], "big")
                head = 4
            elif n == 127:
                if size - i < 10:
                    break
                n = int.from_bytes(buffer[i + 2 : i + 10], "big")
                head = 10
            if b1 & 0x80:  # a masked server frame is a protocol error; tolerate it (unmask)
                head += 4
            if size - i < head + n:
                break
            payload = bytes(buffer[i + head : i + head + n])
            if b1 & 0x80:
                mask = buffer[i + head - 4 : i + head]
                payload = bytes(b ^ mask[j & 3] for j, b in enumerate(payload))
            i += head + n
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x2, 0x0):
                if opcode and b0 & 0x40:  # RSV1 on a message's first frame: compressed (RFC 7692)
                    self.compressed = True
                if not b0 & 0x80:
                    self.fragments.append(payload)
                    continue
                if self.fragments:
                    payload = b"".join([*self.fragments, payload])
                    self.fragments.clear()
                self.wire = len(payload)
                if self.compressed:
                    self.compressed = False
                    # No context takeover: every message inflates on its own (a flushed, unfinished stream, which
                    # zlib.decompress refuses as truncated; a decompressor object takes it).
                    payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
                self.on_message(self, payload, at)
            elif opcode == 0x9:  # ping
                assert self.transport is not None
                self.transport.write(client_frame(0xA, payload))
            elif opcode == 0x8:  # close: answer and end
                self.close()
                break
        del buffer[:i]


async def connect(
    host: str,
    port: int,
    path: str,
    hello: bytes,
    on_message: OnMessage,
    open_timeout: float = 10.0,
    rcvbuf: int = 0,
    make: Callable[..., Connection] = Connection,
    deflate: bool = False,
) -> Connection:
    """Open one connection (`make` builds it); `rcvbuf` > 0 sets SO_RCVBUF before connecting (a slow reader's);
    `deflate` offers permessage-deflate."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(open_timeout):
        if rcvbuf:
            # Before connect, so the window the client advertises from the handshake on is the small one.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                sock.setblocking(False)
                await loop.sock_connect(sock, (host, port))
            except BaseException:
                sock.close()
                raise
            _, conn = await loop.create_connection(
                lambda: make(host, port, path, hello, on_message, deflate=deflate), sock=sock
            )
        else:
            _, conn = await loop.create_connection(
                lambda: make(host, port, path, hello, on_message, deflate=deflate), host, port
            )
        await conn.opened
    return conn
