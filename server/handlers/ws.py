"""The websocket endpoint `/ws`: check, accept, welcome, read client frames, hand the socket to the hub.

Shell layer (Starlette). Refuses an upgrade from another site's page (4403) or
without a user (4401), decodes client frames with `server.protocol`, answers
bad ones with error frames (never a crash), counts them, and closes a client
that keeps sending them. Commands run as tasks (the socket keeps reading) and
their acks go out through the hub like everything else this module sends, so
they stay in order with the client's batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.protocol import Protocol as WebSocketsProtocol, State as WebSocketsState

from server import protocol
from server.commander import Commander
from server.protocol import CloseCode, ErrorCode, ProtocolError
from server.roles import Principal
from server.security import origin_allowed, principal_of
from server.streams.hub import Client, Hub

log = logging.getLogger("jobpulse.ws")

RAW_SEND = "jobpulse.raw_send"
BAD_FRAME_WINDOW = 10.0  # s


class StarlettePeer:
    """A Starlette websocket as the hub's `Peer`.

    When the ASGI server is uvicorn with the websockets-sansio or wsproto
    protocol, the raw `send` is a bound method of the protocol object, whose
    `writable` event and transport let the hub send inline without waiting and
    cut off a client that reads nothing. With websockets-sansio and no
    permessage-deflate, the hub may also write a frame it built once for all
    clients straight to the transport (`write`), which skips the per-client
    ASGI round and framing. Elsewhere `ready()` is False and every message goes
    through the client's writer task, which is always correct.
    """

    def __init__(self, websocket: WebSocket, raw_send: Any) -> None:
        self.websocket = websocket
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
        conn = getattr(proto, "conn", None)
        # Raw frames only where nothing transforms them per connection (no negotiated extensions).
        self._conn: WebSocketsProtocol | None = (
            conn if isinstance(conn, WebSocketsProtocol) and not conn.extensions and self._writable else None
        )

    def ready(self) -> bool:
        return self._writable is not None and self._writable.is_set() and not self._transport_closing()

    def write(self, frame: bytes) -> bool:
        conn = self._conn
        if conn is None or conn.state is not WebSocketsState.OPEN or not self.ready():
            return False
        assert self._transport is not None
        self._transport.write(frame)
        return True

    def _transport_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    async def send(self, message: str) -> None:
        await self.websocket.send_text(message)

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code, reason)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


async def live_ws(websocket: WebSocket) -> None:
    """The live feed and the operators' commands: one connection per page."""
    app_state = websocket.app.state
    hub: Hub = app_state.hub
    settings = app_state.settings
    # Refusals are a close after accept, so the page sees the code (a refused upgrade is an opaque failure).
    allowed = tuple(o.strip().lower().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip())
    if not origin_allowed(websocket.scope, allowed):
        app_state.counters["ws_bad_origin"] += 1
        await websocket.accept()
        await websocket.close(CloseCode.FORBIDDEN_ORIGIN, "origin not allowed")
        return
    principal = principal_of(websocket.scope)
    if principal is None:
        app_state.counters["ws_unauthorized"] += 1
        await websocket.accept()
        await websocket.close(CloseCode.UNAUTHORIZED, "sign in first")
        return
    if len(hub.clients) >= settings.max_clients:
        await websocket.accept()
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "server full")
        return
    await websocket.accept()
    client = hub.attach(StarlettePeer(websocket, websocket.scope.get(RAW_SEND)))
    commander: Commander = app_state.commander
    hub.send(
        client,
        protocol.welcome(
            hub.epoch,
            hub.clock(),
            settings.tick_ms,
            settings.beat_s,
            tuple(hub.feeds),
            app_state.aggregator.connector.name,
            principal.public(),
            commander.actions_for(principal),
        ),
    )
    address = websocket.client.host if websocket.client else ""
    commands: set[asyncio.Task[None]] = set()
    watch = asyncio.create_task(_watch_session(websocket, client, principal)) if principal.session else None
    bad: deque[float] = deque()
    try:
        while not client.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                frame = _handle(hub, client, message, settings.ws_max_frame)
                if frame is not None:
                    task = asyncio.create_task(_command(hub, client, commander, principal, frame, address))
                    commands.add(task)
                    task.add_done_callback(commands.discard)
            except ProtocolError as exc:
                app_state.counters["bad_frames"] += 1
                if exc.kind == "cmd" and exc.ref is not None:
                    # A command with an id always gets its ack (docs/protocol.md 4.2): answered like any refused
                    # command, it does not count toward closing the socket.
                    refusal = {"code": "bad_args", "message": exc.message}
                    hub.send(client, protocol.ack({"id": exc.ref, "ok": False, "error": refusal}))
                    continue
                hub.send(client, protocol.error(exc.code, exc.message, exc.ref))
                if exc.code is ErrorCode.BAD_VERSION:
                    await websocket.close(CloseCode.UNSUPPORTED_VERSION, "unsupported protocol version")
                    break
                if exc.code is ErrorCode.TOO_LARGE:
                    await asyncio.sleep(0)  # let the error frame go out before the close frame
                    await websocket.close(CloseCode.MESSAGE_TOO_BIG, "frame too large")
                    break
                now = time.monotonic()
                bad.append(now)
                while bad and bad[0] < now - BAD_FRAME_WINDOW:
                    bad.popleft()
                if len(bad) > settings.ws_bad_frames:
                    hub.send(client, protocol.error(ErrorCode.RATE, "too many bad frames"))
                    await asyncio.sleep(0)  # let the error frame go out before the close frame
                    await websocket.close(CloseCode.POLICY_VIOLATION, "too many bad frames")
                    break
    except WebSocketDisconnect:
        pass
    finally:
        if watch is not None:
            watch.cancel()
        # Commands already sent run to the end (and are audited); only their acks have nowhere to go.
        await hub.detach(client)


async def _command(
    hub: Hub, client: Client, commander: Commander, principal: Principal, cmd: protocol.Cmd, address: str
) -> None:
    ack = await commander.handle(principal, cmd, address)
    if not client.closed:
        hub.send(client, protocol.ack(ack))


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


def _handle(hub: Hub, client: Client, message: Mapping[str, Any], max_frame: int) -> protocol.Cmd | None:
    text = message.get("text")
    if text is None:
        raise ProtocolError(ErrorCode.BINARY, "binary frames are not accepted; send JSON text frames")
    if len(text) > max_frame:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frame of {len(text)} characters exceeds {max_frame}")
    frame = protocol.decode_client(text)
    if isinstance(frame, protocol.Hello):
        if frame.v != protocol.PROTOCOL_VERSION:
            raise ProtocolError(ErrorCode.BAD_VERSION, f"protocol version {frame.v} is not supported; this server: 1")
        _subscribe(hub, client, frame.widgets, frame.epoch, frame.resume)
    elif isinstance(frame, protocol.Sub):
        _subscribe(hub, client, frame.widgets, hub.epoch, frame.resume)
    elif isinstance(frame, protocol.Unsub):
        hub.unsubscribe(client, frame.widgets)
    elif isinstance(frame, protocol.Ping):
        hub.send(client, protocol.pong(frame.t, hub.clock()))
    else:
        return frame
    return None


def _subscribe(hub: Hub, client: Client, widgets: list[str], epoch: str | None, resume: dict[str, int]) -> None:
    for problem in hub.subscribe(client, list(dict.fromkeys(widgets)), epoch, resume):
        hub.send(client, protocol.error(problem.code, problem.message, problem.ref))
