"""The websocket protocol between jobpulse and browsers (docs/protocol.md section 3), in one place.

Pure layer: standard library and msgspec only. Holds the version, the close
codes, every client frame type with its decoder, and the encoders of server
frames. Server frames are built from pre-encoded parts so that a widget's patch
is encoded once per tick and the same bytes go into every client's batch.
"""

from __future__ import annotations

import enum
import re
import zlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

import msgspec
from msgspec import Meta, Struct

PROTOCOL_VERSION = 1

WidgetName = Annotated[str, Meta(min_length=1, max_length=400)]
WidgetList = Annotated[list[WidgetName], Meta(max_length=64)]


class CloseCode(enum.IntEnum):
    """Websocket close codes jobpulse uses (values match starlette.status.WS_10xx where standard)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002  # sent by the websocket layer (a frame that breaks RFC 6455), never by jobpulse's code
    INVALID_DATA = 1007  # sent by the websocket layer (a text frame that is not UTF-8)
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNSUPPORTED_VERSION = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN_ORIGIN = 4403
    TOO_SLOW = 4408
    TOO_MANY_CONNECTIONS = 4429  # this client address has JOBPULSE_MAX_CLIENTS_PER_ADDRESS open, or connects too often


class ErrorCode(enum.StrEnum):
    """The `code` of an `error` frame."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    BAD_VERSION = "bad_version"
    UNKNOWN_WIDGET = "unknown_widget"
    BINARY = "binary"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    RATE = "rate"
    FORBIDDEN = "forbidden"


class ProtocolError(Exception):
    """A client frame that cannot be accepted; becomes an `error` frame."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None, kind: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.kind = kind  # the frame's type, when it had a known one


# -- widget keys ---------------------------------------------------------------------------------

# A widget key names a widget and, for a parametrized view, its parameters: "fleet?region=eu-west&status=stale".
# Parameters are sorted by name and each value encoded as JavaScript's encodeURIComponent does, so the page
# and the server spell the same view the same way and every client of it shares one feed (web/js/views.js).
MAX_KEY = 400
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_URI_SAFE = "-_.!~*'()"


def view_key(name: str, params: Mapping[str, str] | None = None) -> str:
    """The canonical key of widget `name` with `params` (empty values are left out)."""
    items = sorted((k, v) for k, v in (params or {}).items() if v != "")
    if not items:
        return name
    return name + "?" + "&".join(f"{k}={quote(v, safe=_URI_SAFE)}" for k, v in items)


def parse_view_key(key: str) -> tuple[str, dict[str, str]]:
    """Split a widget key into its name and parameters.

    Raises:
        ProtocolError: a key too long, a bad name, a repeated parameter, or a key not in canonical form.
    """
    if len(key) > MAX_KEY:
        raise ProtocolError(ErrorCode.UNKNOWN_WIDGET, f"widget key longer than {MAX_KEY} characters")
    name, _, query = key.partition("?")
    if not _NAME.match(name):
        raise ProtocolError(ErrorCode.UNKNOWN_WIDGET, f"bad widget name {name[:40]!r}")
    params: dict[str, str] = {}
    if query:
        for part in query.split("&"):
            pname, eq, raw = part.partition("=")
            if not eq or not _NAME.match(pname) or pname in params:
                raise ProtocolError(ErrorCode.UNKNOWN_WIDGET, f"bad parameter {part[:40]!r} in widget key")
            params[pname] = unquote(raw)
    canonical = view_key(name, params)
    if canonical != key:
        raise ProtocolError(ErrorCode.UNKNOWN_WIDGET, f"widget key is not canonical; write it as {canonical!r}")
    return name, params


# -- client to server ---------------------------------------------------------------------------


class Hello(Struct, frozen=True, forbid_unknown_fields=True, tag="hello", tag_field="type"):
    """First frame: protocol version, widgets wanted, and the epoch and seqs the client already holds."""

    v: int
    widgets: WidgetList = []
    epoch: Annotated[str, Meta(max_length=64)] | None = None
    resume: Annotated[dict[WidgetName, Annotated[int, Meta(ge=0)]], Meta(max_length=64)] = {}


class Sub(Struct, frozen=True, forbid_unknown_fields=True, tag="sub", tag_field="type"):
    """Add widgets; `resume` as in `hello`."""

    widgets: WidgetList
    resume: Annotated[dict[WidgetName, Annotated[int, Meta(ge=0)]], Meta(max_length=64)] = {}


class Unsub(Struct, frozen=True, forbid_unknown_fields=True, tag="unsub", tag_field="type"):
    """Stop receiving these widgets."""

    widgets: WidgetList


class Ping(Struct, frozen=True, forbid_unknown_fields=True, tag="ping", tag_field="type"):
    """Ask for a `pong` carrying the same `t`."""

    t: float | int = 0


class Cmd(Struct, frozen=True, forbid_unknown_fields=True, tag="cmd", tag_field="type"):
    """An operator command (docs/protocol.md section 4.2); answered by exactly one `ack`."""

    id: Annotated[str, Meta(min_length=1, max_length=100)]
    action: Annotated[str, Meta(min_length=1, max_length=64)]
    args: dict[str, Any] = {}
    phase: Literal["execute", "preview"] = "execute"
    confirm: Annotated[str, Meta(max_length=1000)] | None = None


ClientFrame = Hello | Sub | Unsub | Ping | Cmd
CLIENT_TYPES = frozenset({"hello", "sub", "unsub", "ping", "cmd"})

_client = msgspec.json.Decoder(ClientFrame)
_any = msgspec.json.Decoder()


def decode_client(text: str | bytes) -> ClientFrame:
    """Decode one client frame.

    Raises:
        ProtocolError: `bad_json` when it is not JSON, `bad_frame` (naming the problem) when it is not a valid frame.
    """
    try:
        frame: ClientFrame = _client.decode(text)
        return frame
    except msgspec.ValidationError as exc:
        error = exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not JSON: {exc}") from None
    except RecursionError:
        # msgspec raises RecursionError (not DecodeError) past its nesting limit: a 2 KB frame of `[[[[...` did,
        # and escaped the websocket handler as an unhandled exception (found by bench/hostile.py).
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is nested too deeply") from None
    try:
        obj = _any.decode(text)
    except msgspec.DecodeError as exc:  # the typed decode may stop at a bad `type` before it reaches the rest
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not a JSON object")
    ref = obj.get("id") if isinstance(obj.get("id"), str) and 0 < len(obj["id"]) <= 100 else None
    kind = obj.get("type")
    # A `type` that is an object or a list is unhashable: `in` a frozenset would raise TypeError (found by
    # bench/hostile.py, out of the websocket handler).
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown frame type {str(kind)[:40]!r}", ref)
    raise ProtocolError(ErrorCode.BAD_FRAME, f"{kind}: {error}", ref, kind=str(kind))


# -- server to client ---------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """Compact JSON of a value."""
    return _encoder.encode(value)


def welcome(
    epoch: str,
    now: float,
    tick_ms: int,
    beat_s: float,
    widgets: tuple[str, ...],
    source: str,
    user: dict[str, str] | None = None,
    actions: dict[str, dict[str, Any]] | None = None,
) -> bytes:
    from server import __version__

    return encode(
        {
            "user": user,
            "actions": actions or {},
            "type": "welcome",
            "v": PROTOCOL_VERSION,
            "epoch": epoch,
            "now": now,
            "tick_ms": tick_ms,
            "beat_s": beat_s,
            "widgets": list(widgets),
            "server": f"jobpulse/{__version__}",
            "source": source,
        }
    )


def widget_frame(kind: str, widget: str, seq: int, data: bytes) -> bytes:
    """A `snapshot` or `patch` frame around already-encoded `data`."""
    return b'{"type":"%s","w":"%s","seq":%d,"data":%s}' % (kind.encode(), widget.encode(), seq, data)


def batch(now: float, frames: list[bytes]) -> bytes:
    """One websocket message carrying several widget frames."""
    return b'{"type":"batch","now":%s,"frames":[%s]}' % (encode(now), b",".join(frames))


def text_frame(payload: bytes) -> bytes:
    """The whole RFC 6455 frame of a server-to-client text message (FIN, unmasked, no extensions).

    Built once per message so the same bytes can be written to every client's socket.
    """
    return _frame(0x81, payload)


def deflated_text_frame(payload: bytes, window_bits: int) -> bytes:
    """The frame of a text message compressed on its own (RFC 7692 permessage-deflate, RSV1 set), with a window of
    2**window_bits bytes: it decodes on any connection that negotiated a server window at least that big, whatever
    it was sent before, so one compression serves every such client."""
    compressor = zlib.compressobj(wbits=-window_bits, memLevel=5)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # RFC 7692 7.2.1: the sync flush's empty block (00 00 ff ff) is left off; the receiver adds it back.
    return _frame(0xC1, data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data)


def _frame(first: int, payload: bytes) -> bytes:
    head = bytes((first,))
    n = len(payload)
    if n < 126:
        return head + bytes((n,)) + payload
    if n < 65536:
        return head + b"\x7e" + n.to_bytes(2, "big") + payload
    return head + b"\x7f" + n.to_bytes(8, "big") + payload


def beat(now: float) -> bytes:
    return b'{"type":"beat","now":%s}' % encode(now)


def pong(t: float | int, now: float) -> bytes:
    return encode({"type": "pong", "t": t, "now": now})


def ack(frame: dict[str, Any]) -> bytes:
    """An `ack` (docs/protocol.md 4.2): `frame` holds id, ok and the rest."""
    return encode({"type": "ack", **frame})


def error(code: ErrorCode, message: str, ref: str | None = None) -> bytes:
    return encode({"type": "error", "code": code.value, "message": message, "ref": ref})
