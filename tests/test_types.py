"""TaskType, EndpointAddress and the class-definition checks of the public API."""

from __future__ import annotations

import pytest

import zmqpipeline
from zmqpipeline import (
    Collector,
    ConfigurationError,
    Distributor,
    EndpointAddress,
    MetaDataWorker,
    MultiThreadedWorker,
    SingleThreadedWorker,
    Task,
    TaskType,
)

TaskType.register_type("TYPES_A")


def test_unregistered_task_type_is_a_type_error():
    with pytest.raises(TypeError, match="not registered"):
        TaskType("NEVER_REGISTERED")
    assert TaskType("TYPES_A") == "TYPES_A" and isinstance(TaskType("TYPES_A"), str)


@pytest.mark.parametrize(
    "good",
    [
        "tcp://localhost:5558",
        "tcp://*:5558",
        "tcp://0.0.0.0:1",
        "tcp://127.0.0.1:65535",
        "tcp://[::1]:5",
        "ipc://worker.ipc",
        "ipc:///tmp/x/y.ipc",
        "inproc://name",
    ],
)
def test_valid_endpoints(good):
    assert EndpointAddress(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "localhost:5558",
        "udp://h:1",
        "tcp://host",
        "tcp://host:",
        "tcp://host:port",
        "tcp://:5558",
        "tcp://h:0",
        "tcp://h:70000",
        "ipc://",
        "inproc://",
    ],
)
def test_invalid_endpoints_raise_value_and_attribute_error(bad):
    with pytest.raises(ValueError):
        EndpointAddress(bad)
    with pytest.raises(AttributeError):  # what the 2014 library raised
        EndpointAddress(bad)


def test_non_string_endpoint_is_refused():
    with pytest.raises(ValueError):
        EndpointAddress(5558)  # type: ignore[arg-type]


def test_task_attributes_are_checked_when_the_class_is_defined():
    with pytest.raises(TypeError, match="dependencies"):

        class BadDeps(Task):
            dependencies = "TYPES_A"

    with pytest.raises(TypeError, match="not registered"):

        class BadType(Task):
            task_type = "NOT_A_TYPE"

    with pytest.raises(TypeError, match="endpoint must be an EndpointAddress"):

        class BadEndpoint(Task):
            endpoint = 5

    with pytest.raises(ValueError):

        class Malformed(Task):
            endpoint = "tcp://nowhere"


def test_plain_strings_are_coerced_to_the_api_types():
    class Coerced(Task):
        task_type = "TYPES_A"
        endpoint = "ipc://x.ipc"
        dependencies = ["TYPES_A"]  # noqa: RUF012 - the API is a plain class attribute

        def handle(self, data, address, msgtype):
            return None

    assert isinstance(Coerced.task_type, TaskType)
    assert isinstance(Coerced.endpoint, EndpointAddress)
    assert isinstance(Coerced.dependencies[0], TaskType)


def test_n_threads_must_be_a_positive_int():
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(TypeError, match="n_threads"):
            type("W", (MultiThreadedWorker,), {"n_threads": bad})


def test_roles_without_their_endpoints_cannot_be_built():
    class NoEndpoint(SingleThreadedWorker):
        task_type = TaskType("TYPES_A")

    with pytest.raises(TypeError, match="has no endpoint"):
        NoEndpoint()

    class NoAck(Collector):
        endpoint = EndpointAddress("ipc://c.ipc")

    with pytest.raises(TypeError, match="ack_endpoint"):
        NoAck()


def test_metadata_worker_must_return_a_dict():
    class BadMeta(MetaDataWorker):
        endpoint = EndpointAddress("ipc://never-bound.ipc")

        def get_metadata(self):
            return ["not", "a", "dict"]

    with pytest.raises(TypeError, match="must return a dict"):
        BadMeta().run()
    assert zmqpipeline.worker.MetaDataWorker is MetaDataWorker


def test_receive_metadata_without_endpoint_is_a_clear_error():
    class T(Task):
        task_type = TaskType("TYPES_A")
        endpoint = EndpointAddress("ipc://t.ipc")

        def handle(self, data, address, msgtype):
            return None

    with pytest.raises(ConfigurationError, match="metadata_endpoint"):
        Distributor("ipc://c.ipc", "ipc://a.ipc", receive_metadata=True, tasks=[T])


def test_distributor_without_tasks_is_refused():
    with pytest.raises(ConfigurationError, match="no task registered"):
        Distributor("ipc://c.ipc", "ipc://a.ipc")


def test_register_task_refuses_non_tasks():
    with pytest.raises(TypeError):
        Distributor.register_task(int)  # type: ignore[arg-type]


def test_library_installs_no_handler():
    """Not even a NullHandler: with no logging configured, Python's last-resort handler
    prints the library's warnings on stderr (a role waiting for a silent peer says so)."""
    import logging

    handlers = logging.getLogger("zmqpipeline").handlers
    assert [type(h) for h in handlers] == []


# -- what a new user trips over (issue 13) --------------------------------------------------


def test_dependencies_none_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="dependencies"):

        class NoDeps(Task):
            task_type = TaskType("TYPES_A")
            dependencies = None

            def handle(self, data, address, msgtype):
                return None


def test_n_items_must_be_a_non_negative_int():
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(TypeError, match="n_items"):
            type("T", (Task,), {"n_items": bad})
    assert Task.n_items is None


WORKER_ATTRS = {
    "task_type": "TYPES_A",
    "endpoint": "ipc://w.ipc",
    "collector_endpoint": "ipc://c.ipc",
}


@pytest.mark.parametrize(
    ("base", "attrs", "required"),
    [
        (SingleThreadedWorker, WORKER_ATTRS, "handle_execution"),
        (MultiThreadedWorker, WORKER_ATTRS, "handle_thread_execution"),
        (
            Collector,
            {"endpoint": "ipc://c.ipc", "ack_endpoint": "ipc://a.ipc"},
            "handle_collection",
        ),
        (Task, {"task_type": "TYPES_A", "endpoint": "ipc://t.ipc"}, "handle"),
        (MetaDataWorker, {"endpoint": "ipc://m.ipc"}, "get_metadata"),
    ],
)
def test_concrete_class_without_its_required_method_is_refused(base, attrs, required):
    with pytest.raises(TypeError, match=rf"does not define {required}\(\)"):
        type("Concrete", (base,), dict(attrs))
    # a user base class (no endpoints yet) is fine, and so is its concrete subclass
    user_base = type("UserBase", (base,), {"helper": lambda self: 1})
    type("Concrete", (user_base,), {**attrs, required: lambda self, *a: {}})


@pytest.mark.parametrize(
    ("base", "typo", "meant"),
    [
        (SingleThreadedWorker, "collector_endpiont", "collector_endpoint"),
        (SingleThreadedWorker, "handle_exection", "handle_execution"),
        (MultiThreadedWorker, "handle_thread_exection", "handle_thread_execution"),
        (MultiThreadedWorker, "n_thread", "n_threads"),
        (Collector, "handle_colection", "handle_collection"),
        (Collector, "ack_endpiont", "ack_endpoint"),
        (Task, "is_available_for_handeling", "is_available_for_handling"),
        (Task, "initialise", "initialize"),
        (MetaDataWorker, "get_meta_data", "get_metadata"),
    ],
)
def test_name_close_to_a_known_one_is_refused_naming_it(base, typo, meant):
    with pytest.raises(TypeError, match=rf"{typo}.*did you mean '{meant}'"):
        type("Typo", (base,), {typo: "ipc://x.ipc"})


def test_user_names_far_from_known_ones_are_accepted():
    class Counting(Task):
        task_type = TaskType("TYPES_A")
        endpoint = EndpointAddress("ipc://t.ipc")
        count = 0
        labels = ("a", "b")

        def handle(self, data, address, msgtype):
            return None

        def next_label(self):
            return self.labels[0]

    assert Counting.count == 0


def test_old_messages_get_returns_data_task_type_and_msgtype():
    from zmqpipeline.utils import messages

    msg = messages.create_data("TYPES_A", {"x": 1})
    assert messages.get(msg) == ({"x": 1}, "TYPES_A", messages.MESSAGE_TYPE_DATA)
    data, task_type, msgtype = messages.get(messages.create_ack("TYPES_A"))
    assert (data, task_type, msgtype) == ({}, "TYPES_A", "ACK")
    assert messages.get(msg, "data") == {"x": 1}  # the keyed form still works
