"""Parsing what a source publishes: valid messages, batches, and every kind of bad input."""

from __future__ import annotations

import json

import msgspec
import pytest

from server.streams.core.events import MAX_COUNT, MAX_TIME, Depth, Heartbeat, JobEvent, RunnerStopped, parse_message

JOB = {"v": 1, "type": "job", "id": "e1", "src": "r1", "seq": 1, "ts": 1.5, "event": "queued", "job": "j1",
       "channel": "email", "fn": "mail.send", "attempt": 1}  # fmt: skip
BEAT = {"v": 1, "type": "heartbeat", "src": "r1", "seq": 2, "ts": 2.0, "boot": 1.0, "interval": 2.0}


def parse(obj: object) -> tuple[list, list]:
    return parse_message(json.dumps(obj).encode(), 1 << 20)


def test_each_message_type_parses():
    """Every documented message type parses into its event class."""
    stopped = {"v": 1, "type": "runner.stopped", "src": "r1", "seq": 3, "ts": 3.0}
    depth = {"v": 1, "type": "depth", "src": "b", "seq": 1, "ts": 1.0, "channels": {"email": {"queued": 3}}}
    kinds = [type(parse(m)[0][0]) for m in (JOB, BEAT, stopped, depth)]
    assert kinds == [JobEvent, Heartbeat, RunnerStopped, Depth]


def test_unknown_fields_are_ignored():
    """A sender may add its own fields."""
    messages, rejects = parse({**JOB, "x-trace": "abc"})
    assert len(messages) == 1 and not rejects


def test_payload_is_kept_raw():
    """The payload is kept as raw JSON, not parsed."""
    messages, _ = parse({**JOB, "payload": {"a": [1, 2]}})
    assert isinstance(messages[0].payload, msgspec.Raw) and bytes(messages[0].payload) == b'{"a": [1, 2]}'


def test_a_batch_folds_good_objects_and_rejects_bad_ones_one_by_one():
    """In a batch, each object is judged alone: good ones pass, each bad one is one rejection with its reason."""
    batch = [JOB, {"v": 1, "type": "job"}, {**JOB, "v": 7}, {"type": "weird", "v": 1}, 5, BEAT]
    messages, rejects = parse(batch)
    assert [type(m) for m in messages] == [JobEvent, Heartbeat]
    assert [r.reason for r in rejects] == ["schema", "version", "unknown_type", "schema"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "json"),
        (b"", "json"),
        (b"\xff\xfe", "json"),
        (b"[1, 2", "json"),
        (b'"a string"', "schema"),
        (json.dumps({**JOB, "event": "exploded"}).encode(), "schema"),
        (json.dumps({**JOB, "seq": -1}).encode(), "schema"),
        (json.dumps({**JOB, "channel": "bad channel!"}).encode(), "schema"),
        (json.dumps({**JOB, "job": ""}).encode(), "schema"),
        (json.dumps({**BEAT, "interval": 0}).encode(), "schema"),
        (json.dumps({**JOB, "v": 2}).encode(), "version"),
        (json.dumps({"v": 1, "type": "gossip"}).encode(), "unknown_type"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(data, reason):
    """Malformed input is rejected, never raised, and the reason names what is wrong."""
    messages, rejects = parse_message(data, 1 << 20)
    assert messages == []
    assert [r.reason for r in rejects] == [reason]


def test_oversized_message_is_rejected_whole():
    """A message over the size limit is rejected before it is parsed."""
    messages, rejects = parse_message(json.dumps([JOB] * 50).encode(), 1000)
    assert messages == [] and rejects[0].reason == "too_large"


def test_a_batch_over_the_object_limit_is_rejected():
    """More than 1,000 objects in one message is refused whole."""
    messages, rejects = parse_message(json.dumps([JOB] * 1001).encode(), 1 << 24)
    assert messages == [] and rejects[0].reason == "batch"


HUGE = int("9" * 4300)
DEPTH = {"v": 1, "type": "depth", "src": "b", "seq": 1, "ts": 1.0, "channels": {"email": {"queued": 3}}}


@pytest.mark.parametrize(
    "message",
    [
        {**JOB, "seq": HUGE}, {**JOB, "seq": MAX_COUNT + 1}, {**JOB, "seq": -1}, {**JOB, "attempt": HUGE},
        {**JOB, "ts": 1e300}, {**JOB, "ts": -1.0}, {**JOB, "duration": 1e12}, {**JOB, "queued_at": 1e200},
        {**JOB, "max_attempts": HUGE}, {**BEAT, "boot": 1e300}, {**BEAT, "processed": HUGE}, {**BEAT, "pid": HUGE},
        {**BEAT, "active": [{"job": "j", "channel": "c", "fn": "f", "started": 1e300}]},
        {**DEPTH, "channels": {"email": {"queued": HUGE}}}, {**DEPTH, "channels": {"email": {"oldest": 1e300}}},
        {**DEPTH, "channels": {"email": {"inflight": MAX_COUNT + 1}}},
    ],
)  # fmt: skip
def test_numbers_out_of_their_range_reject_the_object(message):
    """Counts and seqs within 0..2^53-1, times and durations within 0..10^11 (docs/protocol.md 1.1)."""
    good, bad = parse(message)
    assert good == [] and [r.reason for r in bad] == ["schema"]


def test_numbers_at_the_edges_of_their_range_pass():
    good, bad = parse([{**JOB, "seq": MAX_COUNT, "ts": MAX_TIME}, {**BEAT, "seq": 0, "processed": MAX_COUNT}])
    assert bad == [] and len(good) == 2
