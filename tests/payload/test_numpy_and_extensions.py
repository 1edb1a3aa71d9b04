"""NumPy arrays (skipped without numpy) and the msgpack extension hook: through the
codec and, for arrays, through a real pipeline of processes over ipc."""

from __future__ import annotations

import decimal
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

import zmqpipeline as zp
from zmqpipeline import protocol
from zmqpipeline.errors import ConfigurationError, SerializationError
from zmqpipeline.utils.extensions import register_extension

np = pytest.importorskip("numpy", reason="numpy is an optional extra (pip install numpy)")

pytestmark = pytest.mark.timeout(60)
codec = protocol.Codec(64 * 1024 * 1024)
signer = protocol.tokens.ItemTokens(protocol.tokens.new_key())
zp.TaskType.register_type("ARRAYS")


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="<i4").reshape(3, 4),  # small: inline in the body
        np.linspace(0, 1, 300_000, dtype=">f8").reshape(1000, 300),  # big: a frame
        np.arange(200_000, dtype=np.uint16)[::2],  # not contiguous: made so, then a frame
        np.zeros((0, 5), dtype=np.complex64),
    ],
)
def test_an_array_keeps_its_dtype_shape_and_values_through_the_codec(array):
    item = [[0, {"a": array, "nested": [{"b": array}]}]]
    frames = codec.data_framed(1, item, "ARRAYS", lambda s: signer.tokens("ARRAYS", b"w", s))
    [message] = frames
    item = protocol.decode(message).items[0][1]
    for got in (item["a"], item["nested"][0]["b"]):
        assert got.dtype == array.dtype and got.shape == array.shape
        assert np.array_equal(got, array)
    if array.nbytes >= 64 * 1024:
        assert len(message) == 4  # header, body and the two frames: no copy in the body


def test_an_array_of_python_objects_is_refused_naming_it():
    with pytest.raises(SerializationError, match="dtype object cannot travel"):
        codec.data(1, [[0, {"a": np.array([{}, None], dtype=object)}]], "ARRAYS")


def test_a_declared_extension_type_round_trips_and_clashes_are_refused():
    register_extension(
        decimal.Decimal, 40, lambda d: str(d).encode(), lambda b: decimal.Decimal(b.decode())
    )
    register_extension(  # declared again (a module imported twice): allowed
        decimal.Decimal, 40, lambda d: str(d).encode(), lambda b: decimal.Decimal(b.decode())
    )
    value = decimal.Decimal("3.14159265358979323846")
    item = protocol.decode(codec.data(1, [[0, {"d": value}]], "ARRAYS")).items[0][1]
    assert item == {"d": value} and type(item["d"]) is decimal.Decimal
    with pytest.raises(ConfigurationError, match="already declared for Decimal"):
        register_extension(complex, 40, str.encode, bytes.decode)
    with pytest.raises(ConfigurationError, match="from 32 to 127"):
        register_extension(complex, 3, str.encode, bytes.decode)


def test_arrays_round_trip_through_a_pipeline(procs, endpoints: SimpleNamespace, tmp_path):
    out = tmp_path / "seen.json"
    shapes = [(4,), (512, 512), (3, 100, 100)]

    class ArrayTask(zp.Task):
        task_type = zp.TaskType("ARRAYS")
        endpoint = zp.EndpointAddress(endpoints.worker)

        def initialize(self, metadata: Any = None) -> None:
            self.i = 0

        def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
            i, self.i = self.i, self.i + 1
            self.is_complete = self.i >= len(shapes)
            size = int(np.prod(shapes[i]))
            return {"i": i, "x": np.arange(size, dtype=np.float32).reshape(shapes[i])}

    class DoublingWorker(zp.SingleThreadedWorker):
        task_type = zp.TaskType("ARRAYS")
        endpoint = zp.EndpointAddress(endpoints.worker)
        collector_endpoint = zp.EndpointAddress(endpoints.collector)

        def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            x = data["x"]
            return {"i": data["i"], "y": (x * 2).astype(np.int64), "writable": x.flags.writeable}

    class ArrayCollector(zp.Collector):
        endpoint = zp.EndpointAddress(endpoints.collector)
        ack_endpoint = zp.EndpointAddress(endpoints.ack)
        seen: ClassVar[list[Any]] = []

        def handle_collection(self, data: Any, task_type: Any, msgtype: Any) -> None:
            y = data["y"]
            expected = np.arange(y.size, dtype=np.int64).reshape(y.shape) * 2
            self.seen.append(
                [data["i"], list(y.shape), y.dtype.str, bool(np.array_equal(y, expected))]
            )

        def handle_finished(self, data: Any, task_type: Any) -> None:
            out.write_text(json.dumps(self.seen))

    procs.start("collector", lambda: ArrayCollector().run())
    procs.start(
        "distributor",
        lambda: zp.Distributor(endpoints.collector, endpoints.ack, tasks=[ArrayTask]).run(),
    )
    procs.start("worker", lambda: DoublingWorker().run())
    assert set(procs.join(30).values()) == {0}
    seen = sorted(json.loads(Path(out).read_text()))
    assert seen == [[i, list(shape), "<i8", True] for i, shape in enumerate(shapes)]
