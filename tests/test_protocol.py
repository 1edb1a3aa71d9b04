"""The wire protocol and the serializer, without sockets."""

from __future__ import annotations

import datetime as dt

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmqpipeline import SerializationError, protocol
from zmqpipeline.errors import MessageTooLarge, ProtocolError
from zmqpipeline.protocol import Codec, decode
from zmqpipeline.utils import messages
from zmqpipeline.utils.serializer import deserialize, serialize

codec = Codec(1 << 20)

BUILT = {
    "ready": (codec.ready("CALC", 3, 2), protocol.READY, ["CALC", 3, 2]),
    "welcome": (codec.welcome(7, {"a": 1}), protocol.WELCOME, [7, {"a": 1}]),
    "data": (
        codec.data(7, [[0, {"x": 1}], [1, {}]], "CALC"),
        protocol.DATA,
        [7, [[0, {"x": 1}], [1, {}]]],
    ),
    "credit": (codec.credit(2), protocol.CREDIT, [2]),
    "fail": (codec.fail(4, "boom"), protocol.FAIL, [4, "boom"]),
    "beat-worker": (codec.heartbeat(b"w1"), protocol.HEARTBEAT, [b"w1"]),
    "beat": (codec.heartbeat(), protocol.HEARTBEAT, []),
    "reset": (codec.reset(), protocol.RESET, []),
    "bye": (codec.bye([1, 2]), protocol.BYE, [[1, 2]]),
    "end": (codec.end(7, {"ok": True}), protocol.END, [7, {"ok": True}]),
    "result": (codec.result(7, "CALC", 3, None), protocol.RESULT, [7, "CALC", 3, None]),
    "start": (codec.start(7, {}, ["CALC"]), protocol.START, [7, {}, ["CALC"]]),
    "skip": (codec.skip(7, "CALC", 3), protocol.SKIP, [7, "CALC", 3]),
    "ack": (
        codec.ack(7, [["CALC", 3, None, None], ["CALC", 4, {"n": 1}, "err"]]),
        protocol.ACK,
        [7, [["CALC", 3, None, None], ["CALC", 4, {"n": 1}, "err"]]],
    ),
    "finished": (codec.finished(7), protocol.FINISHED, [7]),
    "meta": (codec.meta({"m": 1}), protocol.META, [{"m": 1}]),
    "meta-receipt": (codec.meta(), protocol.META, []),
}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_every_built_message_decodes_to_what_was_built(name):
    frames, kind, body = BUILT[name]
    assert len(frames) == 2 and frames[0] == bytes((protocol.VERSION, kind))
    assert decode(frames) == (kind, body)


@pytest.mark.parametrize(
    "frames, category",
    [
        ([b"\x01\x0a"], "frame count"),
        ([b"\x01\x0a", b"", b""], "frame count"),
        ([b"\x01", msgpack.packb([])], "bad header"),
        ([b"\x02\x04", msgpack.packb([1])], "wrong version"),
        ([b"\x01\x7f", msgpack.packb([])], "unknown kind"),
        ([b"\x01\x04", b"\xc1"], "undecodable body"),
        ([b"\x01\x04", msgpack.packb([1])[:-1] + b"\xdc"], "undecodable body"),
        ([b"\x01\x04", msgpack.packb(["one"])], "malformed body"),
        ([b"\x01\x04", msgpack.packb({"n": 1})], "malformed body"),
        ([b"\x01\x03", msgpack.packb([1, [[1]]])], "malformed body"),
        ([b"\x01\x03", msgpack.packb([1, [["x", {}]]])], "malformed body"),
        ([b"\x01\x0d", msgpack.packb([1, [["T", 1, 5, None]]])], "malformed body"),
        ([b"\x01\x04", msgpack.packb([True])], "malformed body"),  # a bool is no credit
    ],
)
def test_malformed_frames_raise_protocol_error_naming_the_fault(frames, category):
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.category == category
    assert info.value.frames == frames  # the raw bytes are kept for diagnosis


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_random_frames_never_escape_as_anything_but_protocol_error(frames):
    try:
        kind, body = decode(frames)
    except ProtocolError:
        return
    assert kind in protocol.KIND_NAMES and isinstance(body, list)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(BUILT)), st.data())
def test_mutated_valid_messages_decode_or_raise_protocol_error(name, data):
    frames = [bytearray(f) for f in BUILT[name][0]]
    index = data.draw(st.integers(0, 1))
    if frames[index]:
        pos = data.draw(st.integers(0, len(frames[index]) - 1))
        frames[index][pos] = data.draw(st.integers(0, 255))
    try:
        decode([bytes(f) for f in frames])
    except ProtocolError:
        pass


def test_oversized_message_fails_at_the_sender_naming_the_task_type():
    small = Codec(100)
    with pytest.raises(MessageTooLarge, match=r"DATA message for task type 'CALC' is \d+ bytes"):
        small.data(1, [[0, {"blob": "x" * 200}]], "CALC")


def test_unpackable_value_is_a_type_error_naming_task_type_and_key():
    with pytest.raises(TypeError) as info:
        codec.result(1, "CALC", 0, {"ok": 1, "bad": object()})
    assert isinstance(info.value, SerializationError)
    assert "'CALC'" in str(info.value) and "['bad']" in str(info.value)
    # the packer is still usable afterwards
    assert decode(codec.credit(1)) == (protocol.CREDIT, [1])


def test_nested_unpackable_value_is_located():
    with pytest.raises(SerializationError, match=r"\['outer'\]\[1\]\['deep'\] \(set\)"):
        serialize({"outer": [1, {"deep": {1, 2}}]})


def test_serializer_round_trips_dates_times_and_durations():
    value = {
        "when": dt.datetime(2014, 5, 6, 7, 8, 9, 123456),
        "aware": dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "day": dt.date(2014, 5, 6),
        "took": dt.timedelta(days=1, seconds=2, microseconds=3),
        "nested": [{"d": dt.date(2000, 1, 1)}],
        "plain": [1, 2.5, "s", b"b", None, True],
    }
    assert deserialize(serialize(value)) == value


def test_no_pickle_on_the_wire():
    class Thing:
        pass

    with pytest.raises(TypeError):
        serialize({"thing": Thing()})


def test_old_message_helpers_keep_working():
    msg = messages.create_data("CALC", {"x": 1})
    assert messages.get(msg, "msgtype") == messages.MESSAGE_TYPE_DATA
    assert messages.get(msg, "data") == {"x": 1}
    assert messages.create_ack()["msgtype"] == "ACK"
    assert {messages.MESSAGE_TYPE_SUCCESS, messages.MESSAGE_TYPE_END} <= messages.MESSAGE_TYPES
    with pytest.raises(ValueError, match="unknown message type"):
        messages.create("NOPE")


def test_a_kind_not_accepted_where_it_arrives_is_a_wrong_direction():
    frames = Codec(1024).credit(3)
    assert decode(frames, {protocol.CREDIT}, "from a worker") == (protocol.CREDIT, [3])
    with pytest.raises(ProtocolError) as info:
        decode(frames, {protocol.DATA, protocol.END}, "from the distributor")
    assert info.value.category == "wrong direction"
    assert str(info.value.reason) == "CREDIT is not expected from the distributor"
