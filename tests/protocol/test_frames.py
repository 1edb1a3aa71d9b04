"""Big values out of a body (protocol.frames): found however long the container around
them, without walking containers that cannot hold one."""

from __future__ import annotations

import pytest

from zmqpipeline.errors import SerializationError
from zmqpipeline.protocol.frames import FRAME_MIN_BYTES, frame_bytes, split_frames

BIG = b"x" * FRAME_MIN_BYTES


@pytest.mark.parametrize("n", [3, 17, 5000])  # below and above the length looked at in C
def test_a_big_value_is_found_in_a_container_of_any_length(n):
    counts = {f"w{i}": i for i in range(n)}
    nested = {"counts": counts, "rows": [*range(n), {"blob": BIG}], "t": (*range(n), BIG)}
    frames: list = []
    body = split_frames(nested, frames)
    assert frames == [BIG, BIG] and frame_bytes(nested) == 2 * len(BIG)
    assert body["counts"] is counts  # nothing big in it: not copied
    assert body["rows"][:n] == list(range(n)) and body["rows"][n]["blob"] != BIG
    assert nested["rows"][n]["blob"] is BIG  # the item itself is never changed


@pytest.mark.parametrize("n", [3, 5000])
def test_a_container_with_nothing_big_is_the_same_object_and_weighs_nothing(n):
    plain = {"counts": {f"w{i}": i for i in range(n)}, "xs": [1.5] * n, "s": "y" * 100}
    assert split_frames(plain, []) is plain and frame_bytes(plain) == 0


@pytest.mark.parametrize("n", [3, 5000])
def test_a_dict_key_no_receiver_decodes_is_named_however_long_the_dict(n):
    bad = {"counts": {**{f"w{i}": i for i in range(n)}, 7: "seven"}}
    for walk in (lambda: split_frames(bad, []), lambda: frame_bytes(bad)):
        with pytest.raises(SerializationError, match=r"a dict key of type int \(7\) at the top"):
            walk()


def test_plain_values_beside_big_ones_and_objects_of_other_types_stay_in_the_body():
    # The walk skips str, int, float, bool and None without looking further; any other
    # value is looked at (a user's type travels as an extension type, in the body).
    from decimal import Decimal

    small = b"y" * (FRAME_MIN_BYTES - 1)
    item = {"d": Decimal("1.5"), "flag": True, "none": None, "x": 2.5, "small": small}
    item["blob"], item["rows"] = memoryview(BIG), [1, "a", None, (False, bytearray(BIG))]
    frames: list = []
    body = split_frames(item, frames)
    assert [bytes(f) for f in frames] == [BIG, BIG] and frame_bytes(item) == 2 * len(BIG)
    assert body["d"] is item["d"] and body["small"] is small and body["flag"] is True
    assert body["rows"][:3] == [1, "a", None] and body["rows"][3][0] is False
