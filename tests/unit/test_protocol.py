"""The websocket protocol module: client frames in, server frames out."""

from __future__ import annotations

import json

import pytest

from server import protocol
from server.protocol import CloseCode, ErrorCode, ProtocolError


def test_client_frames_decode():
    """hello, sub, unsub, ping and cmd decode to their types."""
    frames = [
        '{"type":"hello","v":1,"widgets":["counters"],"epoch":"e1","resume":{"counters":3}}',
        '{"type":"sub","widgets":["runners"]}',
        '{"type":"unsub","widgets":["runners"]}',
        '{"type":"ping","t":5}',
        '{"type":"cmd","id":"c1","action":"purge","args":{"channel":"email"}}',
    ]
    kinds = [type(protocol.decode_client(f)).__name__ for f in frames]
    assert kinds == ["Hello", "Sub", "Unsub", "Ping", "Cmd"]


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("{", ErrorCode.BAD_JSON, "not JSON"),
        ("[1]", ErrorCode.BAD_FRAME, "not a JSON object"),
        ('{"type":"dance"}', ErrorCode.BAD_FRAME, "unknown frame type"),
        ('{"type":"hello"}', ErrorCode.BAD_FRAME, "`v`"),
        ('{"type":"sub","widgets":"counters"}', ErrorCode.BAD_FRAME, "widgets"),
        ('{"type":"sub","widgets":["x"],"extra":1}', ErrorCode.BAD_FRAME, "extra"),
        ('{"type":"hello","v":1,"resume":{"a":-1}}', ErrorCode.BAD_FRAME, "resume"),
        ('{"type":"cmd","id":"c9","action":""}', ErrorCode.BAD_FRAME, "action"),
    ],
)
def test_bad_client_frames_name_the_problem(text, code, words):
    """A bad frame raises ProtocolError with a code and a message naming the problem."""
    with pytest.raises(ProtocolError) as info:
        protocol.decode_client(text)
    assert info.value.code is code
    assert words in info.value.message


def test_bad_cmd_keeps_its_id_as_ref():
    """An error about a frame with an id refers to that id."""
    with pytest.raises(ProtocolError) as info:
        protocol.decode_client('{"type":"cmd","id":"c9","action":""}')
    assert info.value.ref == "c9"


def test_server_frames_are_valid_json():
    """batch, beat, pong, error and welcome encode to the documented JSON."""
    frame = protocol.widget_frame("patch", "counters", 7, b'{"pending":{"v":3}}')
    batch = json.loads(protocol.batch(12.5, [frame, frame]))
    assert batch == {"type": "batch", "now": 12.5, "frames": [
        {"type": "patch", "w": "counters", "seq": 7, "data": {"pending": {"v": 3}}}] * 2}  # fmt: skip
    assert json.loads(protocol.beat(1.0)) == {"type": "beat", "now": 1.0}
    assert json.loads(protocol.pong(3, 2.0)) == {"type": "pong", "t": 3, "now": 2.0}
    error = json.loads(protocol.error(ErrorCode.RATE, "slow down"))
    assert error == {"type": "error", "code": "rate", "message": "slow down", "ref": None}
    welcome = json.loads(protocol.welcome("ep", 1.0, 25, 2.0, ("counters",), "native"))
    assert welcome["v"] == protocol.PROTOCOL_VERSION and welcome["widgets"] == ["counters"]


def test_close_codes_match_starlette():
    """Standard close codes have the values Starlette uses."""
    from starlette import status

    assert CloseCode.POLICY_VIOLATION == status.WS_1008_POLICY_VIOLATION
    assert CloseCode.TRY_AGAIN_LATER == status.WS_1013_TRY_AGAIN_LATER
    assert CloseCode.MESSAGE_TOO_BIG == status.WS_1009_MESSAGE_TOO_BIG


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frames_parse_as_websocket_frames(size):
    """text_frame() builds frames that a websocket client parser reads back as the same text message."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    payload = b"x" * size
    reader = StreamReader()
    reader.feed_data(protocol.text_frame(payload))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        raise AssertionError("frame incomplete")
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload


@pytest.mark.parametrize("size", [10, 400, 5_000, 70_000])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_a_deflated_frame_decodes_on_its_own_as_rfc_7692_says(size, bits):
    """One compressed frame serves every client: it inflates alone (no context), with the negotiated window, by
    the websockets library's own permessage-deflate decoder as a client runs it."""
    import zlib

    from websockets.extensions.permessage_deflate import PerMessageDeflate
    from websockets.frames import Frame, Opcode

    payload = json.dumps({"type": "batch", "rows": ["x" * (i % 50) for i in range(size // 30)]}).encode()
    frame = protocol.deflated_text_frame(payload, bits)
    assert frame[0] == 0xC1  # FIN, RSV1 (compressed), text
    n = frame[1]
    start = 2 if n < 126 else (4 if n == 126 else 10)
    data = frame[start:]
    assert zlib.decompressobj(wbits=-bits).decompress(data + b"\x00\x00\xff\xff") == payload
    # As a client's extension decodes it, after another message (its context must not matter).
    client = PerMessageDeflate(True, False, bits, 15)
    for _ in range(2):
        decoded = client.decode(Frame(Opcode.TEXT, data, rsv1=True), max_size=None)
        assert decoded.data == payload
