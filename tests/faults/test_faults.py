"""Nothing lost, nothing hung: killed workers, failing user code, garbage on every socket,
signals to every role, a replaced collector and a restarted distributor."""

from __future__ import annotations

import logging
import random
import signal
import socket
import time
from types import SimpleNamespace

import pytest
import zmq
from support.pipelines import load, make_collector, make_task, make_worker, run_distributor
from support.procs import FORK

from zmqpipeline import MetaDataWorker, Settings, protocol

pytestmark = pytest.mark.timeout(90)


def _exactly_once(items, n):
    ids = sorted(item[1]["i"] for item in items)
    assert ids == list(range(1, n + 1))


def _distributor_logging_to(path):
    def run(ep, tasks, **kw):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(created)f %(message)s"))
        logger = logging.getLogger("zmqpipeline.distributor")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        run_distributor(ep, tasks, **kw)

    return run


def test_killed_workers_lose_no_item(procs, endpoints, transport, tmp_path):
    """SIGKILL one of two workers three times in one run: every id collected exactly once."""
    n = 400
    marks = {count: FORK.Event() for count in (60, 160, 260)}
    task = make_task(endpoints.worker, n, delay=0.005)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, milestones=marks)
    log = tmp_path / "distributor.log"
    procs.start("collector", lambda: collector().run())
    procs.start("steady", lambda: worker().run())
    procs.start("victim0", lambda: worker().run())
    procs.start("distributor", lambda: _distributor_logging_to(log)(endpoints, [task]))
    killed_at = []
    for k, count in enumerate(sorted(marks)):
        assert marks[count].wait(60), f"no progress to {count}"
        procs.kill(f"victim{k}", signal.SIGKILL)
        killed_at.append(time.time())
        procs.start(f"victim{k + 1}", lambda: worker().run())
    codes = procs.join(60)
    assert [codes[f"victim{k}"] for k in range(3)] == [-signal.SIGKILL] * 3
    assert {
        name: c for name, c in codes.items() if not name.startswith("victim") or name == "victim3"
    } == {"collector": 0, "steady": 0, "distributor": 0, "victim3": 0}
    results, report = load(endpoints.results), load(endpoints.report)
    _exactly_once(results["items"], n)
    assert report["collected"] == {"FIRST": n} and report["failed"] == []
    deaths = [
        float(line.split()[0]) for line in log.read_text().splitlines() if "re-issuing" in line
    ]
    assert len(deaths) == 3
    detection = [death - kill for death, kill in zip(deaths, killed_at, strict=True)]
    print(f"SIGKILL -> items re-issued after: {', '.join(f'{d * 1000:.0f} ms' for d in detection)}")
    assert all(0 <= d < 5 for d in detection), detection


@pytest.mark.parametrize("threads", [None, 4], ids=["single", "multi"])
def test_item_that_always_raises_fails_alone(procs, endpoints, threads):
    task = make_task(endpoints.worker, 40)
    worker = make_worker(endpoints.worker, endpoints.collector, threads=threads, fail_on={7})
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    procs.start("worker0", lambda: worker().run())
    procs.start("worker1", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert set(procs.join(60).values()) == {0}
    results, report = load(endpoints.results), load(endpoints.report)
    assert sorted(item[1]["i"] for item in results["items"]) == [i for i in range(1, 41) if i != 7]
    assert len(report["failed"]) == 1
    failure = report["failed"][0]
    assert failure["seq"] == 6 and failure["attempts"] == 3  # item 7 is seq 6
    assert "ValueError: item 7 is poison" in failure["error"]
    # handle_finished hears of it too, with the error's last line (END stays small)
    [told] = results["finished"]["failed"]
    assert told["item_id"] == failure["item_id"] == "FIRST/6"
    assert told["error"] == failure["error"].strip().splitlines()[-1]
    assert report["retries"] == 2


@pytest.mark.parametrize("threads", [None, 4], ids=["single", "multi"])
def test_results_that_cannot_travel_fail_alone_and_the_worker_goes_on(procs, endpoints, threads):
    """Results are packed when their batch is sent: one msgpack cannot carry, one that is
    not a dict and one over the worker's message limit each fail that item alone."""
    bad = {5: {"bad": {1, 2}}, 9: ["not", "a", "dict"], 13: {"blob": "x" * 300_000}}
    base = make_worker(endpoints.worker, endpoints.collector, threads=threads)
    small = Settings.from_env(max_message_bytes=256 * 1024)

    def odd(worker, data):
        return bad.get(data["i"], {"i": data["i"]})

    if threads:

        class Worker(base):
            def handle_thread_execution(self, data, index):
                return odd(self, data)

    else:

        class Worker(base):  # type: ignore[no-redef]
            def handle_execution(self, data, *args, **kwargs):
                return odd(self, data)

    task = make_task(endpoints.worker, 30)
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: Worker(settings=small).run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert set(procs.join(60).values()) == {0}
    results, report = load(endpoints.results), load(endpoints.report)
    good = [i for i in range(1, 31) if i not in bad]
    assert sorted(item[1]["i"] for item in results["items"]) == good
    errors = {f["seq"] + 1: f["error"] for f in report["failed"]}
    assert sorted(errors) == sorted(bad)
    assert "cannot serialize value at ['bad'] (set)" in errors[5]
    assert "must return a dict or None" in errors[9]
    assert "over the message limit of 262144" in errors[13]


def test_collector_exception_is_retried_then_failed(procs, endpoints):
    task = make_task(endpoints.worker, 20)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, fail_on={3})
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert set(procs.join(60).values()) == {0}
    report = load(endpoints.report)
    assert report["collected"] == {"FIRST": 19}
    assert [f["seq"] for f in report["failed"]] == [2]
    assert "collector refuses item 3" in report["failed"][0]["error"]


def _garbage(endpoints, stop, seed):
    """Send seeded random frames to every bound socket until ``stop`` is set."""
    rng = random.Random(seed)
    ctx = zmq.Context()
    targets = [ctx.socket(t) for t in (zmq.DEALER, zmq.PUSH, zmq.DEALER, zmq.DEALER)]
    addresses = [endpoints.worker, endpoints.collector, endpoints.meta, endpoints.ack]
    for sock, address in zip(targets, addresses, strict=True):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100)
        sock.connect(address)
    valid_headers = [bytes((protocol.VERSION, kind)) for kind in protocol.KIND_NAMES]
    try:
        while not stop.is_set():
            sock = rng.choice(targets)
            shape = rng.randrange(5)
            if shape == 0:  # random frames
                frames = [rng.randbytes(rng.randrange(40)) for _ in range(rng.randrange(1, 4))]
            elif shape == 1:  # valid header, random body
                frames = [rng.choice(valid_headers), rng.randbytes(rng.randrange(30))]
            elif shape == 2:  # wrong version
                frames = [b"\x09\x01", b"\x90"]
            elif shape == 3:  # well-formed messages that make no sense here
                codec = protocol.Codec(1 << 20)
                frames = rng.choice(
                    [
                        codec.credit(5),
                        codec.fail(99, "x", []),
                        codec.ack(1, []),
                        codec.result(1, "NOPE", 3, {}, b"w"),
                        codec.skip(1, "FIRST", 3),
                        codec.ping(1),
                        codec.end(1, {}),
                        codec.meta({"evil": True}),
                        codec.bye([1, 2]),
                    ]
                )
            else:  # too big for the configured limit
                frames = [valid_headers[0], b"\0" * (300 * 1024)]
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass
            if endpoints.kind == "tcp" and rng.random() < 0.05:
                host, port = endpoints.collector.rsplit("//", 1)[1].rsplit(":", 1)
                try:
                    with socket.create_connection((host, int(port)), timeout=1) as raw:
                        raw.sendall(rng.randbytes(64))
                except OSError:
                    pass  # not listening yet, or it hung up on us: both fine
            time.sleep(0.001)  # pacing the flood, not synchronisation
    finally:
        for sock in targets:
            sock.close()
        ctx.term()


def test_garbage_on_every_bound_socket_loses_nothing(procs, endpoints, transport, monkeypatch):
    monkeypatch.setenv("ZMQPIPELINE_MAX_MESSAGE_BYTES", str(256 * 1024))
    started, stop = FORK.Event(), FORK.Event()

    class Meta(MetaDataWorker):
        endpoint = endpoints.meta

        def get_metadata(self):
            return {"v": 1}

    n = 300
    task = make_task(endpoints.worker, n, delay=0.002)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, progress=started, progress_after=10)
    procs.start("garbage", lambda: _garbage(endpoints, stop, seed=1234))
    procs.start("collector", lambda: collector().run())
    procs.start("worker0", lambda: worker().run())
    procs.start("worker1", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task], metadata=True))
    procs.start("metadata", lambda: Meta().run())
    assert started.wait(60)
    procs.started["distributor"].join(60)
    stop.set()
    codes = procs.join(30)
    assert set(codes.values()) == {0}, codes
    results, report = load(endpoints.results), load(endpoints.report)
    _exactly_once(results["items"], n)
    assert report["failed"] == [] and report["dropped"], report["dropped"]


def test_sigterm_to_a_worker_hands_its_items_back(procs, endpoints):
    halfway = FORK.Event()
    n = 200
    task = make_task(endpoints.worker, n, delay=0.01)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, progress=halfway, progress_after=40)
    procs.start("collector", lambda: collector().run())
    procs.start("leaving", lambda: worker().run())
    procs.start("staying", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert halfway.wait(30)
    procs.kill("leaving", signal.SIGTERM)
    procs.started["leaving"].join(5)
    assert procs.started["leaving"].exitcode == 0
    assert set(procs.join(60).values()) == {0}
    results, report = load(endpoints.results), load(endpoints.report)
    _exactly_once(results["items"], n)
    assert report["retries"] == 0  # handed back, not failed


def test_replaced_collector_gets_the_rest_of_the_run(procs, endpoints, tmp_path):
    halfway = FORK.Event()
    n = 200
    task = make_task(endpoints.worker, n, delay=0.005)
    worker = make_worker(endpoints.worker, endpoints.collector)
    first = make_collector(endpoints, progress=halfway, progress_after=50)
    second_ep = SimpleNamespace(**{**vars(endpoints), "results": tmp_path / "second.json"})
    second = make_collector(second_ep)
    procs.start("first", lambda: first().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert halfway.wait(30)
    procs.kill("first", signal.SIGTERM)
    procs.started["first"].join(5)
    assert procs.started["first"].exitcode == 0
    before = load(endpoints.results)
    assert before["finished"]["aborted"] is True  # handle_finished ran on SIGTERM
    procs.start("second", lambda: second().run())
    assert set(procs.join(60).values()) == {0}
    after = load(second_ep.results)
    ids = {item[1]["i"] for item in before["items"] + after["items"]}
    assert ids == set(range(1, n + 1))
    assert len({item[1]["i"] for item in after["items"]}) == len(after["items"])
    assert load(endpoints.report)["collected"] == {"FIRST": n}


def test_worker_carries_on_with_a_restarted_distributor(procs, endpoints):
    halfway = FORK.Event()
    task = make_task(endpoints.worker, 300, delay=0.005)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, progress=halfway, progress_after=30)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("doomed", lambda: run_distributor(endpoints, [task]))
    assert halfway.wait(30)
    procs.kill("doomed", signal.SIGKILL)
    procs.started["doomed"].join(5)
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    codes = procs.join(60)
    assert codes == {"collector": 0, "worker": 0, "doomed": -signal.SIGKILL, "distributor": 0}
    assert load(endpoints.report)["collected"] == {"FIRST": 300}
