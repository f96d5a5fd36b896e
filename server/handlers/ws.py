"""The websocket endpoint `/ws`: check, accept, welcome, read client frames, hand the socket to the hub.

Shell layer (Starlette). Refuses an upgrade from another site's page (4403) or
without a user (4401), decodes client frames with `server.protocol`, answers
bad ones with error frames (never a crash), counts them by reason, and closes
a client that keeps sending them. Refuses (4429) a client address that has too
many sockets open or connects too often (`AddressLimits`). Commands run as tasks
(the socket keeps reading) and their acks go out through the hub like
everything else this module sends, so they stay in order with the client's
batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
import time
import weakref
from collections import Counter
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import Protocol as WebSocketsProtocol, State as WebSocketsState

from server import protocol
from server.commander import Commander
from server.protocol import CloseCode, ErrorCode, ProtocolError
from server.roles import Principal
from server.security import origin_allowed, principal_of
from server.streams.hub import Client, Hub
from server.streams.hubcore import Outgoing

log = logging.getLogger("jobpulse.ws")
# Commands under way, every connection's (a task needs a strong reference until it ends): one set for the process
# rather than one per connection. They run to the end even when their page goes (and are audited).
_COMMANDS: set[asyncio.Task[None]] = set()


class _ClientUtf8(logging.Filter):
    """uvicorn (websockets-sansio) logs a client's text frame that is not UTF-8 as an ERROR with a traceback,
    then closes the socket with 1007 (docs/protocol.md 3.6). It is the client's fault, already answered, and a
    hostile client could fill the log with tracebacks one connection at a time (bench/hostile.py did): one
    warning line each is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Invalid UTF-8 sequence received from client.":
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("uvicorn.error").addFilter(_ClientUtf8())

RAW_SEND = "jobpulse.raw_send"
BAD_FRAME_WINDOW = 10.0  # s
ADDRESS_WINDOW = 10.0  # s, the window of JOBPULSE_CONNECTS_PER_ADDRESS
# Key prefix in app.state.counters of bad client frames by reason (server/metrics.py: jobpulse_ws_bad_frames).
BAD_FRAME = "bad_frame."
# What the wall's read-only link may subscribe to: the widgets of web/templates/wall.html and every page's health
# (tests/unit/test_view_keys.py holds the two together).
WALL_WIDGETS = frozenset({"counters", "service", "fleet_summary", "pulse", "hot_issues", "backlogs", "published",
                          "health"})  # fmt: skip
# A frame that breaks RFC 6455, a text frame that is not UTF-8 or one over uvicorn's --ws-max-size never reaches
# this handler: the websocket layer closes the connection itself, and all the handler sees is the close code.
LAYER_CLOSES = {
    CloseCode.PROTOCOL_ERROR: "protocol_error",
    CloseCode.INVALID_DATA: "invalid_utf8",
    CloseCode.MESSAGE_TOO_BIG: ErrorCode.TOO_LARGE.value,
}


class AddressLimits:
    """Websockets open and connects per client address, for JOBPULSE_MAX_CLIENTS_PER_ADDRESS and _CONNECTS_.

    The address is the scope's client: the peer's, or the X-Forwarded-For one when the peer is in
    JOBPULSE_TRUSTED_PROXIES (security.apply_forwarded); connects that bring no user count under a key of their
    own (`anonymous:<address>`). Connects are counted over a sliding 10 s window,
    estimated from two fixed windows (this one, and the last one weighted by how much of it still overlaps), so
    memory is two dicts of the addresses seen in the last 20 s however many connect; `opened` holds only
    addresses with a socket open. A limit of 0 is no limit.
    """

    def __init__(self, max_open: int, max_connects: int, window: float = ADDRESS_WINDOW) -> None:
        self.max_open = max_open
        self.max_connects = max_connects
        self.window = window
        self.opened: dict[str, int] = {}
        self._slot = 0
        self._connects: dict[str, int] = {}
        self._previous: dict[str, int] = {}

    def admit(self, address: str, now: float) -> str | None:
        """Count a connect from `address`. None: it may open a socket (`release` it when it ends); else why not."""
        if not address:
            return None  # no address (a unix socket): nothing to tell clients apart by
        slot = int(now // self.window)
        if slot != self._slot:
            self._previous = self._connects if slot == self._slot + 1 else {}
            self._connects, self._slot = {}, slot
        connects = self._connects[address] = self._connects.get(address, 0) + 1
        if self.max_connects:
            overlap = 1.0 - (now / self.window - slot)
            if connects + self._previous.get(address, 0) * overlap > self.max_connects:
                return f"more than {self.max_connects} connects from your address in {self.window:.0f} s"
        opened = self.opened.get(address, 0)
        if self.max_open and opened >= self.max_open:
            return f"{opened} connections open from your address"
        self.opened[address] = opened + 1
        return None

    def release(self, address: str) -> None:
        left = self.opened.get(address, 0) - 1
        if left > 0:
            self.opened[address] = left
        else:
            self.opened.pop(address, None)


def address_limits(app_state: Any) -> AddressLimits:
    """This app's AddressLimits, made on first use (the handler is its only user)."""
    limits: AddressLimits | None = getattr(app_state, "address_limits", None)
    if limits is None:
        settings = app_state.settings
        limits = AddressLimits(settings.max_clients_per_address, settings.connects_per_address)
        app_state.address_limits = limits
    return limits


class StarlettePeer:
    """A Starlette websocket as the hub's `Peer`.

    When the ASGI server is uvicorn with the websockets-sansio or wsproto
    protocol, the raw `send` is a bound method of the protocol object, whose
    `writable` event and transport let the hub send inline without waiting and
    cut off a client that reads nothing. With websockets-sansio, and either no
    permessage-deflate or the one without context takeover that `jobpulse
    serve` negotiates (server/wsdeflate.py), the hub may also write a frame it
    built (and compressed) once for all clients straight to the transport
    (`write`), which skips the per-client ASGI round, framing and compression.
    Elsewhere `ready()` is False and every message goes
    through the client's writer task, which is always correct.
    """

    __slots__ = (
        "_conn",
        "_deflate_bits",
        "_fd",
        "_pinger",
        "_pongs",
        "_transport",
        "_writable",
        "_written",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, raw_send: Any, sndbuf: int = 0) -> None:
        self.websocket = websocket
        self._written = 0
        proto = getattr(raw_send, "__self__", None)
        writable = getattr(proto, "writable", None)
        transport = getattr(proto, "transport", None)
        # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
        if isinstance(writable, asyncio.Event) and hasattr(transport, "abort") and hasattr(transport, "is_closing"):
            self._writable: asyncio.Event | None = writable
            self._transport: asyncio.Transport | None = transport
        else:
            self._writable = None
            self._transport = None
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is not None and sndbuf:
            # The kernel grows a socket's send buffer to several MB (4 MB on loopback), where a client that stopped
            # reading hides for minutes before the transport pushes back; bounded, the hub sees it within seconds
            # and its outbox, resync and stall rules apply (docs/protocol.md 3.5).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        # The kernel's queue for this socket (Linux says how much it holds): a slow reader's bytes leave it.
        self._fd = sock.fileno() if sock is not None else -1
        conn = getattr(proto, "conn", None)
        # Pings go through the connection's own framing (control frames are never compressed); its pongs are heard.
        self._pinger = conn if isinstance(conn, WebSocketsProtocol) and self._writable is not None else None
        self._pongs = _hear_pongs(proto) if self._pinger is not None else None
        # Raw frames only where nothing transforms them per connection: no negotiated extension, or permessage-deflate
        # with no context takeover on our side (server/wsdeflate.py), where one frame compressed for all decodes
        # on this connection too. With context takeover the connection's own compressor must frame every message.
        self._deflate_bits: int | None = None
        self._conn = None
        extensions = self._pinger.extensions if self._pinger is not None else None
        if extensions == []:
            self._conn = self._pinger
        elif extensions and len(extensions) == 1 and isinstance(extensions[0], PerMessageDeflate):
            deflate = extensions[0]
            if deflate.local_no_context_takeover:
                self._conn = self._pinger
                self._deflate_bits = deflate.local_max_window_bits

    def ready(self) -> bool:
        return self._writable is not None and self._writable.is_set() and not self._transport_closing()

    def write(self, message: Outgoing) -> bool:
        conn = self._conn
        if conn is None or conn.state is not WebSocketsState.OPEN or not self.ready():
            return False
        assert self._transport is not None
        bits = self._deflate_bits
        frame = message.frame if bits is None else message.deflated(bits)
        self._transport.write(frame)
        self._written += len(frame)
        return True

    def _transport_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    async def send(self, message: str) -> None:
        # Counted as it is handed over, with its frame's header; text that is not ASCII is a little longer in UTF-8
        # (an undercount can only hide a slow reader's progress for a check, not invent it).
        n = len(message)
        self._written += n + (2 if n < 126 else 4 if n < 65536 else 10)
        await self.websocket.send_text(message)

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, reason)

    def abort(self) -> None:
        # Once closing, the transport is uvicorn's to finish (the client answered the close frame), and the
        # socket's descriptor may already belong to another connection.
        if self._transport is not None and not self._transport.is_closing():
            sock = self._transport.get_extra_info("socket")
            if sock is not None:
                # A reset, not a FIN queued behind everything the client never read: the kernel frees the socket's
                # buffers now (a closed socket would stay an orphan holding them while it probes a zero window).
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._transport.abort()

    def pending(self) -> int | None:
        transport = self._transport
        if transport is None:
            return None
        unsent = transport.get_write_buffer_size()
        if self._fd >= 0 and not transport.is_closing():
            with contextlib.suppress(OSError):
                unsent += _kernel_unsent(self._fd)
        return unsent

    def written(self) -> int:
        return self._written

    def ping(self, payload: bytes) -> bool:
        conn = self._pinger
        if conn is None or self._pongs is None or conn.state is not WebSocketsState.OPEN or self._transport_closing():
            return False
        assert self._transport is not None
        conn.send_ping(payload)
        frame = b"".join(conn.data_to_send())
        self._transport.write(frame)
        self._written += len(frame)
        return True

    def pong(self) -> bytes | None:
        return self._pongs.last if self._pongs is not None else None


class _Pongs:
    """The payload of the last pong a connection received (uvicorn keeps it only for its own keepalive's ping)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: bytes | None = None


def _hear_pongs(proto: Any) -> _Pongs | None:
    """Note every pong uvicorn's websockets-sansio protocol receives, then let it handle the pong as before.

    uvicorn reads the frames and hands the app only messages; the hub's stall rule needs the pongs. The protocol
    calls its `handle_pong` for each, so this instance gets a wrapper of its class's method (held weakly, so the
    connection is not kept alive by its own attribute). None where the protocol has no such method."""
    handle = getattr(type(proto), "handle_pong", None)
    if not callable(handle):
        return None
    pongs = _Pongs()
    ref = weakref.ref(proto)

    def handle_pong(event: Any) -> None:
        pongs.last = bytes(event.data)
        owner = ref()
        if owner is not None:
            handle(owner, event)

    proto.handle_pong = handle_pong
    return pongs


if sys.platform == "linux":
    import fcntl
    import termios

    def _kernel_unsent(fd: int) -> int:
        """Bytes the kernel holds for a TCP socket that its peer has not acknowledged (SIOCOUTQ)."""
        unsent: int = struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        return unsent

else:

    def _kernel_unsent(fd: int) -> int:
        """Elsewhere the kernel's queue is not known: only the transport's buffer counts."""
        return 0


async def live_ws(websocket: WebSocket) -> None:
    """The live feed and the operators' commands: one connection per page.

    The read loop is here, not in a helper: this coroutine's frame is what every idle connection holds while it
    waits for the client's next frame, and one nested frame less is ~0.4 KiB a connection (issue #17).
    """
    app_state = websocket.app.state
    address = websocket.client.host if websocket.client else ""
    limits = address_limits(app_state)
    # Connects that bring no user have a budget of their own: a flood of them from an address must not refuse
    # the signed-in pages that share it (an office behind one NAT, or the attacker's neighbour).
    budget = address if principal_of(websocket.scope) is not None or not address else f"anonymous:{address}"
    # First, before any other work: a flood from one address is refused as cheaply as it can be. Refusals are a
    # close after accept, so the page sees the code (a refused upgrade is an opaque failure).
    refused = limits.admit(budget, time.monotonic())
    if refused is not None:
        app_state.counters["ws_address_limit"] += 1
        await websocket.accept()
        await websocket.close(CloseCode.TOO_MANY_CONNECTIONS, refused)
        return
    try:
        opened = await _open(websocket)
        if opened is None:
            return
        client, principal = opened
        hub: Hub = app_state.hub
        watch = asyncio.create_task(_watch_session(websocket, client, principal)) if principal.session else None
        bad: list[float] = []  # times of its recent bad frames: a handful at most (a deque is 600 B a connection)
        try:
            while not client.closed:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    layer = LAYER_CLOSES.get(message.get("code", CloseCode.NORMAL))
                    if layer is not None:
                        app_state.counters[BAD_FRAME + layer] += 1
                    break
                if not await _on_frame(websocket, client, principal, message, address, bad):
                    break
                # Not kept while the connection idles until its next frame: ~0.2 KiB each (the hello, mostly).
                del message
        except WebSocketDisconnect:
            pass
        finally:
            if watch is not None:
                watch.cancel()
            # Commands already sent run to the end (and are audited); only their acks have nowhere to go.
            await hub.detach(client)
    finally:
        limits.release(budget)


async def _open(websocket: WebSocket) -> tuple[Client, Principal] | None:
    """Check the origin, the user and the room; accept, attach to the hub and send `welcome`. None when refused (the
    socket is closed with its code)."""
    app_state = websocket.app.state
    hub: Hub = app_state.hub
    settings = app_state.settings
    allowed = tuple(o.strip().lower().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip())
    if not origin_allowed(websocket.scope, allowed):
        app_state.counters["ws_bad_origin"] += 1
        await websocket.accept()
        await websocket.close(CloseCode.FORBIDDEN_ORIGIN, "origin not allowed")
        return None
    principal = principal_of(websocket.scope)
    if principal is None:
        app_state.counters["ws_unauthorized"] += 1
        await websocket.accept()
        await websocket.close(CloseCode.UNAUTHORIZED, "sign in first")
        return None
    if len(hub.clients) >= settings.max_clients:
        app_state.counters["ws_server_full"] += 1
        await websocket.accept()
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "server full")
        return None
    await websocket.accept()
    client = hub.attach(StarlettePeer(websocket, websocket.scope.get(RAW_SEND), settings.ws_sndbuf))
    commander: Commander = app_state.commander
    hub.send(
        client,
        protocol.welcome(
            hub.epoch,
            hub.clock(),
            settings.tick_ms,
            settings.beat_s,
            tuple(hub.feeds),
            app_state.aggregator.source_name,
            principal.public(),
            commander.actions_for(principal),
        ),
    )
    return client, principal


async def _on_frame(
    websocket: WebSocket,
    client: Client,
    principal: Principal,
    message: Mapping[str, Any],
    address: str,
    bad: list[float],
) -> bool:
    """Handle one frame from the client; False when the connection is to end (closed for a bad frame)."""
    app_state = websocket.app.state
    hub: Hub = app_state.hub
    settings = app_state.settings
    wall_only = WALL_WIDGETS if principal.auth == "wall" else None
    try:
        frame = _handle(hub, client, message, settings.ws_max_frame, app_state.counters, wall_only)
        if frame is not None:
            task = asyncio.create_task(_command(hub, client, app_state.commander, principal, frame, address))
            _COMMANDS.add(task)
            task.add_done_callback(_COMMANDS.discard)
        return True
    except ProtocolError as exc:
        app_state.counters[BAD_FRAME + exc.code.value] += 1
        if exc.kind == "cmd" and exc.ref is not None:
            # A command with an id always gets its ack (docs/protocol.md 4.2): answered like any refused
            # command, it does not count toward closing the socket.
            refusal = {"code": "bad_args", "message": exc.message}
            hub.send(client, protocol.ack({"id": exc.ref, "ok": False, "error": refusal}), keep=True)
            return True
        hub.send(client, protocol.error(exc.code, exc.message, exc.ref))
        if exc.code is ErrorCode.BAD_VERSION:
            await websocket.close(CloseCode.UNSUPPORTED_VERSION, "unsupported protocol version")
            return False
        if exc.code is ErrorCode.TOO_LARGE:
            await asyncio.sleep(0)  # let the error frame go out before the close frame
            await websocket.close(CloseCode.MESSAGE_TOO_BIG, "frame too large")
            return False
        now = time.monotonic()
        bad.append(now)
        while bad and bad[0] < now - BAD_FRAME_WINDOW:
            del bad[0]
        if len(bad) > settings.ws_bad_frames:
            hub.send(client, protocol.error(ErrorCode.RATE, "too many bad frames"))
            await asyncio.sleep(0)  # let the error frame go out before the close frame
            await websocket.close(CloseCode.POLICY_VIOLATION, "too many bad frames")
            return False
        return True


async def _command(
    hub: Hub, client: Client, commander: Commander, principal: Principal, cmd: protocol.Cmd, address: str
) -> None:
    ack = await commander.handle(principal, cmd, address)
    if not client.closed:
        hub.send(client, protocol.ack(ack), keep=True)


async def _watch_session(websocket: WebSocket, client: Client, principal: Principal) -> None:
    """Close the socket with 4401 once its session has ended (expired, signed out, revoked)."""
    state = websocket.app.state
    assert principal.session is not None
    while not client.closed:
        await asyncio.sleep(state.settings.session_check_s)
        # None: the store cannot say; do not sign everyone out because it is down.
        if await state.sessions.alive(principal.session) is False:
            await websocket.close(CloseCode.UNAUTHORIZED, "session ended")
            return


def _handle(
    hub: Hub,
    client: Client,
    message: Mapping[str, Any],
    max_frame: int,
    counters: Counter[str],
    allowed: frozenset[str] | None = None,
) -> protocol.Cmd | None:
    text = message.get("text")
    if text is None:
        raise ProtocolError(ErrorCode.BINARY, "binary frames are not accepted; send JSON text frames")
    if len(text) > max_frame:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frame of {len(text)} characters exceeds {max_frame}")
    frame = protocol.decode_client(text)
    if isinstance(frame, protocol.Hello):
        if frame.v != protocol.PROTOCOL_VERSION:
            raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {frame.v} is not supported; this server: 1")
        _subscribe(hub, client, frame.widgets, frame.epoch, frame.resume, counters, allowed)
    elif isinstance(frame, protocol.Sub):
        _subscribe(hub, client, frame.widgets, hub.epoch, frame.resume, counters, allowed)
    elif isinstance(frame, protocol.Unsub):
        hub.unsubscribe(client, frame.widgets)
    elif isinstance(frame, protocol.Ping):
        hub.send(client, protocol.pong(frame.t, hub.clock()))
    else:
        return frame
    return None


def _subscribe(
    hub: Hub,
    client: Client,
    widgets: list[str],
    epoch: str | None,
    resume: dict[str, int],
    counters: Counter[str],
    allowed: frozenset[str] | None = None,
) -> None:
    if allowed is not None:
        # The wall's read-only link sees what the wall shows and nothing else (not who did what: activity).
        refused = [key for key in widgets if key not in allowed]
        for key in refused:
            counters[BAD_FRAME + ErrorCode.FORBIDDEN.value] += 1
            hub.send(
                client, protocol.error(ErrorCode.FORBIDDEN, f"the wall link does not show {key[:100]!r}", key[:400])
            )
        widgets = [key for key in widgets if key in allowed]
    # A key the hub cannot serve is answered and counted, but not toward the 1008 close: the others are served.
    for problem in hub.subscribe(client, list(dict.fromkeys(widgets)), epoch, resume):
        counters[BAD_FRAME + problem.code.value] += 1
        hub.send(client, protocol.error(problem.code, problem.message, problem.ref))
