"""The wire protocol and the serializer, without sockets."""

from __future__ import annotations

import datetime as dt
import pickle

import msgpack
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from zmqpipeline import SerializationError, protocol
from zmqpipeline.errors import MessageTooLarge, ProtocolError
from zmqpipeline.protocol import Codec, bounds, decode
from zmqpipeline.utils import messages
from zmqpipeline.utils.serializer import deserialize, serialize

codec = Codec(1 << 20)


WID = b"host:1:abc"


ACK_GROUPS = [
    protocol.ack_group("CALC", WID, [3, 4], [None, None], [None, None], [None, None], [True, True]),
    protocol.ack_group("C", WID, [5, 3], [{"n": 1}, None], ["e", None], [{}, None], [True, False]),
]


BUILT = {
    "ready": (codec.ready("CALC", 3, 2, 2), protocol.Ready("CALC", 3, 2, 2)),
    "recall": (codec.recall(3), protocol.Recall(3)),
    "hand-back": (codec.hand_back([4, 5]), protocol.HandBack([4, 5])),
    "welcome": (codec.welcome(7, {"a": 1}), protocol.Welcome(7, {"a": 1}, {})),
    "data": (
        codec.data(7, [[0, {"x": 1}], [1, {}]], "CALC"),
        protocol.Data(7, [[0, {"x": 1}], [1, {}]]),
    ),
    "credit": (codec.credit(2), protocol.Credit(2)),
    "fail": (codec.fail(4, "boom", ["ValueError"]), protocol.Fail(4, "boom", ["ValueError"])),
    "heartbeat": (codec.heartbeat(b"w1"), protocol.Heartbeat(b"w1")),
    "alive": (codec.alive(), protocol.Alive()),
    "reset": (codec.reset(), protocol.Reset()),
    "bye": (codec.bye([1, 2]), protocol.Bye([1, 2])),
    "end": (codec.end(7, {"ok": True}), protocol.End(7, {"ok": True})),
    "result": (codec.result(7, "CALC", 3, None, WID), protocol.Result(7, "CALC", WID, [[3, None]])),
    "ping": (codec.ping(7), protocol.Ping(7)),
    "hello": (codec.hello(b"c1"), protocol.Hello(b"c1")),
    "start": (codec.start(7, {}, ["CALC"]), protocol.Start(7, {}, ["CALC"], [], [])),
    "start-stages": (
        codec.start(7, {}, ["A", "B"], ["A"], ["A"]),
        protocol.Start(7, {}, ["A", "B"], ["A"], ["A"]),
    ),
    "skip": (codec.skip(7, "CALC", 3), protocol.Skip(7, "CALC", 3)),
    "ack": (
        codec.ack(7, ACK_GROUPS),
        protocol.Ack(7, ACK_GROUPS),
    ),
    "finished": (codec.finished(7), protocol.Finished(7)),
    "meta": (codec.meta({"m": 1}), protocol.Meta({"m": 1})),
    "meta-ok": (codec.meta_ok(), protocol.MetaOk()),
    "sready": (codec.sready("UP"), protocol.SReady("UP")),
    "request": (codec.request(1, "UP", {"t": "a"}), protocol.Request(1, "UP", {"t": "a"})),
    "job": (codec.job(b"c", 1, {"t": "a"}, "UP"), protocol.Job(b"c", 1, {"t": "a"})),
    "worker-reply": (codec.worker_reply(b"c", 1, [1], "UP"), protocol.WorkerReply(b"c", 1, [1])),
    "reply": (codec.reply(1, {"t": "A"}), protocol.Reply(1, {"t": "A"})),
    "worker-error": (codec.worker_error(b"c", 1, "e"), protocol.WorkerError(b"c", 1, "e")),
    "request-error": (codec.request_error(1, "e"), protocol.RequestError(1, "e")),
    "disconnect": (codec.disconnect(), protocol.Disconnect()),
    "control": (
        codec.control(5, "retry_failed", {"ids": ["A/1"]}),
        protocol.Control(5, "retry_failed", {"ids": ["A/1"]}),
    ),
    "control_reply": (
        codec.control_reply(5, False, {"error": "x"}),
        protocol.ControlReply(5, False, {"error": "x"}),
    ),
    "push": (codec.push(6, "URLS", [{"u": 1}]), protocol.Push(6, "URLS", [{"u": 1}])),
    "push_close": (codec.push_close(6, "URLS"), protocol.PushClose(6, "URLS")),
    "push_reply": (codec.push_reply(6, False, "shut", 0), protocol.PushReply(6, False, "shut", 0)),
}


def test_every_kind_has_a_builder_and_a_record():
    assert {protocol.kind_of(record) for _, record in BUILT.values()} == set(protocol.KIND_NAMES)


@pytest.mark.parametrize("name", sorted(BUILT))
def test_every_built_message_decodes_to_its_record(name):
    frames, record = BUILT[name]
    kind = protocol.kind_of(record)
    assert len(frames) == 2 and frames[0] == bytes((protocol.VERSION, kind))
    decoded = decode(frames)
    assert type(decoded) is type(record) and decoded == record


V = protocol.VERSION


@pytest.mark.parametrize(
    "frames, category",
    [
        ([bytes((V, 0x0A))], "frame count"),
        ([bytes((V, 0x01)), b"", b""], "frame count"),  # READY: no frames after its body
        ([bytes((V,)), msgpack.packb([])], "bad header"),
        ([b"\x01\x04", msgpack.packb([1])], "wrong version"),  # a peer of release 1
        ([bytes((V, 0x7F)), msgpack.packb([])], "unknown kind"),
        ([bytes((V, 0x04)), b"\xc1"], "undecodable body"),
        ([bytes((V, 0x04)), msgpack.packb([1])[:-1] + b"\xdc"], "undecodable body"),
        ([bytes((V, 0x04)), msgpack.packb(["one"])], "malformed body"),
        ([bytes((V, 0x04)), msgpack.packb({"n": 1})], "malformed body"),
        ([bytes((V, 0x03)), msgpack.packb([1, [[1]]])], "malformed body"),
        ([bytes((V, 0x03)), msgpack.packb([1, [["x", {}]]])], "malformed body"),
        ([bytes((V, 0x04)), msgpack.packb([True])], "malformed body"),  # a bool is no credit
        ([bytes((V, 0x06)), msgpack.packb([])], "malformed body"),  # HEARTBEAT names a worker
        *(  # ACK groups: [task_type, worker_id, seqs, ack_data, errors, results, firsts]
            ([bytes((V, 0x0D)), msgpack.packb([1, [group]])], "malformed body")
            for group in [
                ["T", b"w", [1], [5], None, None, None],  # ACK data is a dict
                ["T", b"w", [1], None, None],  # too short
                ["T", "w", [1], None, None, None, None],  # the worker id is bytes
                [7, b"w", [1], None, None, None, None],  # the task type is a str
                ["T", b"w", 1, None, None, None, None],  # seqs is a list
                ["T", b"w", [True], None, None, None, None],  # a bool is no seq
                ["T", b"w", ["1"], None, None, None, None],
                ["T", b"w", [1, 2], [None], None, None, None],  # a column as long as seqs
                ["T", b"w", [1], None, [3], None, None],  # an error is a str
                ["T", b"w", [1], None, None, [[1]], None],  # a result is a dict
                ["T", b"w", [1], None, None, None, [1]],  # ``first`` is a bool
                ["T", b"w", [1], None, None, None, True],  # firsts is a list
                ["T", 1, None, None, b"w", None, True],  # a version 4 entry
            ]
        ),
        ([bytes((V, 0x0A)), msgpack.packb([1, "T", b"w", [[1, 5]]])], "malformed body"),
        ([bytes((V, 0x0A)), msgpack.packb([1, "T", "w", [[1, None]]])], "malformed body"),
        ([bytes((V, 0x08)), msgpack.packb([[1, False]])], "malformed body"),  # BYE's seqs
        ([bytes((V, 0x15)), msgpack.packb([["1"]])], "malformed body"),  # HANDBACK's seqs
        ([bytes((V, 0x05)), msgpack.packb([1, "boom", [3]])], "malformed body"),  # FAIL's names
        ([bytes((V, 0x0B)), msgpack.packb([1, {}, ["A"], [], [2]])], "malformed body"),  # START
        ([bytes((V, 0x40)), msgpack.packb([1, "T", [{}, 3]])], "malformed body"),  # PUSH's items
        ([bytes((V, 0x21)), msgpack.packb([1, "T"])], "malformed body"),  # REQUEST: 3 fields
    ],
)
def test_malformed_frames_raise_protocol_error_naming_the_fault(frames, category):
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.category == category
    assert info.value.frames == frames  # the raw bytes are kept for diagnosis


def test_a_msgpack_bomb_is_refused_without_being_built():
    # 2 MB of empty maps in one array: 64 bytes each once built. READY's shape allows an
    # array of 3, so the first header refuses it; a control kind's byte limit refuses more.
    bomb = b"\xdd" + (2_000_000).to_bytes(4, "big") + b"\x80" * 2_000_000
    with pytest.raises(ProtocolError) as info:
        decode([bytes((V, protocol.READY)), bomb[:60_000]])
    assert info.value.category == "undecodable body"
    with pytest.raises(ProtocolError) as info:
        decode([bytes((V, protocol.READY)), bomb])
    assert info.value.category == "too large"
    nested = msgpack.packb([1, [[0, {"k": [[[]] * 10] * 10}]]])
    assert decode([bytes((V, protocol.DATA)), nested]).run == 1  # user data keeps its depth


def test_user_data_kinds_are_bounded_by_the_role_limit():
    frames = codec.result(7, "CALC", 3, {"blob": "x" * 5000}, WID)
    assert decode(frames, max_bytes=10_000).items[0][0] == 3
    with pytest.raises(ProtocolError) as info:
        decode(frames, max_bytes=1000)
    assert info.value.category == "too large"


def test_results_are_packed_into_as_few_messages_as_fit_and_bad_ones_fail_alone():
    entries = [(seq, {"n": seq} if seq % 2 else None) for seq in range(40)]
    messages, failed = codec.results(7, "CALC", WID, entries)
    assert failed == [] and len(messages) == 1
    assert decode(messages[0]) == protocol.Result(7, "CALC", WID, [list(e) for e in entries])
    small = Codec(300)
    big = [(seq, {"x": "y" * 100}) for seq in range(5)]
    bad = [(5, {"bad": {1, 2}}), (6, {"x": "y" * 400})]
    messages, failed = small.results(7, "CALC", WID, big[:2] + bad + big[2:])
    assert [seq for seq, _ in failed] == [5, 6]  # each fails alone, naming why
    assert isinstance(failed[0][1], SerializationError) and "['bad']" in str(failed[0][1])
    assert isinstance(failed[1][1], MessageTooLarge) and "item 6" in str(failed[1][1])
    assert len(messages) > 1 and all(len(m[1]) <= 300 for m in messages)
    got = [seq for m in messages for seq, _ in decode(m, max_bytes=300).items]
    assert got == [0, 1, 2, 3, 4]  # every good one, in order
    assert decode(codec.credit(1)) == protocol.Credit(1)  # the packer is still usable


def test_results_of_many_small_elements_go_in_messages_no_one_has_to_count():
    """A body no longer than the element limit cannot exceed it: results are cut into such
    messages (neither the worker nor the collector walks them, protocol.bounds); only a
    result longer than that is counted, and it travels alone."""
    limit = bounds.ELEMENT_LIMITS["RESULT"].max_elements
    words = [(seq, {f"w{seq}-{i}": i for i in range(3000)}) for seq in range(60)]  # ~40 KB each
    huge = (60, {f"h{i}": i for i in range(80_000)})  # over a megabyte, 160 001 elements
    messages, failed = codec.results(7, "CALC", WID, [*words[:30], huge, *words[30:]])
    assert failed == []
    bodies = [len(m[1]) for m in messages]
    alone = [m for m in messages if len(m[1]) > limit]
    assert len(alone) == 1 and [seq for seq, _ in decode(alone[0]).items] == [60]
    assert len(messages) > 4 and sum(b <= limit for b in bodies) == len(messages) - 1
    got = [item for m in messages for item in decode(m).items]
    assert got == [list(e) for e in [*words[:30], huge, *words[30:]]]  # all, in order


def test_a_result_whose_packing_raises_anything_fails_alone():
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(2000):  # deeper than msgpack's nesting limit
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    messages, failed = codec.results(7, "CALC", WID, [(0, None), (1, deep), (2, {"ok": 1})])
    assert [seq for seq, _ in failed] == [1]
    assert isinstance(failed[0][1], SerializationError) and "CALC" in str(failed[0][1])
    assert [seq for m in messages for seq, _ in decode(m).items] == [0, 2]
    with pytest.raises(SerializationError, match="for task type 'CALC'"):
        codec.data(7, [[0, deep]], "CALC")  # an item as deep: the distributor's path


def test_long_errors_are_clipped_keeping_both_ends():
    text = "Traceback start\n" + "x" * 100_000 + "\nValueError: the end"
    fail = decode(codec.fail(1, text, ["ValueError"]))
    assert len(fail.error) < 20_000
    assert fail.error.startswith("Traceback start") and fail.error.endswith("ValueError: the end")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_random_frames_never_escape_as_anything_but_protocol_error(frames):
    try:
        record = decode(frames)
    except ProtocolError:
        return
    assert protocol.kind_of(record) in protocol.KIND_NAMES


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
        codec.result(1, "CALC", 0, {"ok": 1, "bad": object()}, WID)
    assert isinstance(info.value, SerializationError)
    assert "'CALC'" in str(info.value) and "['bad']" in str(info.value)
    # the packer is still usable afterwards
    assert decode(codec.credit(1)) == protocol.Credit(1)


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
    """What crosses a real socket is msgpack: a picklable object is refused at the sender
    (nothing is sent), and the bytes that arrive never unpickle."""

    class Thing:  # picklable, but not a msgpack type
        pass

    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    try:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        with pytest.raises(TypeError):
            push.send_multipart(codec.result(1, "CALC", 0, {"thing": Thing()}, WID))
        when = dt.datetime(2014, 5, 6)
        push.send_multipart(codec.result(1, "CALC", 1, {"when": when}, WID))
        assert pull.poll(5000)
        wire = pull.recv_multipart()
        assert decode(wire).items[0][0] == 1  # the refused message never went out
        assert 0x90 <= wire[1][0] <= 0x9F  # a msgpack array, not pickle's PROTO opcode
        assert pickle.PROTO not in wire[1][:1]
        assert decode(wire).items[0][1] == {"when": when}
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()


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
    assert decode(frames, {protocol.CREDIT}, "from a worker") == protocol.Credit(3)
    with pytest.raises(ProtocolError) as info:
        decode(frames, {protocol.DATA, protocol.END}, "from the distributor")
    assert info.value.category == "wrong direction"
    assert str(info.value.reason) == "CREDIT is not expected from the distributor"


def test_an_ack_group_sends_a_column_only_when_a_value_in_it_is_not_the_default():
    plain = protocol.ack_group("T", WID, [1, 2], [None] * 2, [None] * 2, [None] * 2, [True] * 2)
    assert plain == ["T", WID, [1, 2], None, None, None, None]
    firsts = [True, False]
    mixed = protocol.ack_group("T", WID, [1, 2], [None, {"a": 1}], [None] * 2, [{}, None], firsts)
    assert mixed == ["T", WID, [1, 2], [None, {"a": 1}], None, [{}, None], firsts]
    assert decode(codec.ack(3, [plain, mixed])) == protocol.Ack(3, [plain, mixed])


def _elements(obj):
    """What protocol.bounds counts: every msgpack object, containers, keys and values."""
    if isinstance(obj, list):
        return 1 + sum(_elements(x) for x in obj)
    if isinstance(obj, dict):
        return 1 + sum(_elements(k) + _elements(v) for k, v in obj.items())
    return 1


_MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=5), inner, max_size=20)
    ),
    max_leaves=200,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_MSGPACK_VALUES)
def test_the_element_count_is_msgpacks_own_without_decoding(obj):
    raw = msgpack.packb(obj)
    n = _elements(obj)
    assert bounds.check_elements(raw, bounds.ElementLimit(n, 512)) == n
    if n > 1:
        with pytest.raises(bounds.TooManyElements, match="more than"):
            bounds.check_elements(raw, bounds.ElementLimit(n - 1, 512))
        with pytest.raises(bounds.TooManyElements, match="ends inside"):
            bounds.check_elements(raw[:-1] if raw[-1:] else raw, bounds.ElementLimit(n, 512))


def test_the_nesting_bound_counts_levels():
    deep = []
    for _ in range(9):
        deep = [deep]  # ten lists, one in another
    raw = msgpack.packb(deep)
    assert bounds.check_elements(raw, bounds.ElementLimit(100, 9)) == 10  # the empty one: no level
    with pytest.raises(bounds.TooManyElements, match="deeper than 8"):
        bounds.check_elements(raw, bounds.ElementLimit(100, 8))
