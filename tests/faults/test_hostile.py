"""Peers that misbehave: port probes and thieves on the collector's ACK endpoint, spoofed
SKIPs, greedy READYs, huge and many-part messages, msgpack bombs, a second distributor on
the same ipc path, a worker whose collector is gone. Each run must still collect every id
exactly once, end, and leave every process gone; peak memory of every role is sampled."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq
from support.pipelines import load, make_collector, make_task, make_worker, run_distributor
from support.procs import FORK

from zmqpipeline import ConfigurationError, Distributor, protocol

pytestmark = pytest.mark.timeout(90)


N = 3000


RSS_LIMIT_MIB = 100


class RssSampler:
    """Samples the resident memory of the processes in ``procs`` every 50 ms."""

    def __init__(self, procs: Any) -> None:
        self.procs = procs
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, process in list(self.procs.started.items()):
                try:
                    with open(f"/proc/{process.pid}/status") as status:
                        for line in status:
                            if line.startswith("VmRSS:"):
                                mib = int(line.split()[1]) / 1024
                                self.peak[name] = max(self.peak.get(name, 0.0), mib)
                except (OSError, ValueError, TypeError):
                    pass

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_pipeline(procs, endpoints, attack: Callable[[], Any] | None, n=N, delay=0.0, workers=2):
    """Collector, ``workers`` workers, an optional attacker process, the distributor; wait
    for all; return (results, report, peak RSS per role)."""
    task = make_task(endpoints.worker, n, delay=delay)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    sampler = RssSampler(procs)
    procs.start("collector", lambda: collector().run())
    for i in range(workers):
        procs.start(f"worker{i}", lambda: worker().run())
    if attack is not None:
        procs.start("attacker", attack)
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    names = ["collector", "distributor", *(f"worker{i}" for i in range(workers))]
    deadline = time.monotonic() + 60
    for name in names:
        procs.started[name].join(max(0.1, deadline - time.monotonic()))
    codes = {name: procs.started[name].exitcode for name in names}
    peak = sampler.stop()
    print(f"peak RSS (MiB): {', '.join(f'{k} {v:.1f}' for k, v in sorted(peak.items()))}")
    if attack is not None:
        procs.kill("attacker", signal.SIGKILL)
    assert codes == dict.fromkeys(names, 0), codes
    return load(endpoints.results), load(endpoints.report), peak


def assert_every_id_once(results, n=N):
    ids = sorted(item[1]["i"] for item in results["items"])
    assert ids == list(range(1, n + 1)), "ids lost or collected twice"


def assert_bounded(peak):
    assert peak and max(peak.values()) < RSS_LIMIT_MIB, peak


def _host_port(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    return host, int(port)


# -- the collector's ACK endpoint: only the distributor gets ACKs --------------------


def _pull_thief(endpoint: str) -> None:
    ctx = zmq.Context()
    thief = ctx.socket(zmq.PULL)
    thief.connect(endpoint)
    while True:  # takes whatever is pushed to it, until killed
        if thief.poll(100):
            thief.recv_multipart()


def _raw_thief(endpoint: str, payload: bytes, hold_s: float) -> None:
    while True:
        try:
            with socket.create_connection(_host_port(endpoint), timeout=2) as raw:
                raw.sendall(payload)
                raw.settimeout(hold_s)
                try:
                    while raw.recv(65536):
                        pass
                except OSError:
                    pass
        except OSError:
            time.sleep(0.05)  # not listening yet: pacing the retries


THIEVES = {
    "pyzmq PULL": lambda ep: _pull_thief(ep),
    "ZMTP/1.0 bytes": lambda ep: _raw_thief(ep, b"\x01\x00", 5.0),
    "HTTP probe": lambda ep: _raw_thief(ep, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 0.5),
}


@pytest.mark.parametrize("transport", ["tcp"])
@pytest.mark.parametrize("thief", sorted(THIEVES))
def test_a_stranger_on_the_ack_endpoint_takes_no_ack(procs, endpoints, transport, thief):
    attack = THIEVES[thief]
    results, report, peak = run_pipeline(procs, endpoints, lambda: attack(endpoints.ack))
    assert_every_id_once(results)
    assert report["collected"] == {"FIRST": N} and not report["failed"]
    assert_bounded(peak)


# -- SKIP only from the distributor ------------------------------------------------------


def _spoof_skips(endpoints) -> None:
    """Join as a worker that wants nothing, learn the run id, then SKIP 1000 ids at the
    collector through every door it has."""
    ctx = zmq.Context()
    codec = protocol.Codec(1 << 20)
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoints.worker)
    dealer.send_multipart(codec.ready("FIRST", 1, 0))
    run = None
    while run is None:
        if dealer.poll(200):
            msg = protocol.decode(dealer.recv_multipart())
            if type(msg) is protocol.Welcome:
                run = msg.run
        else:
            dealer.send_multipart(codec.ready("FIRST", 1, 0))
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoints.collector)
    fake = ctx.socket(zmq.DEALER)
    fake.connect(endpoints.ack)
    for seq in range(1000):
        push.send_multipart(codec.skip(run, "FIRST", seq))
        fake.send_multipart(codec.skip(run, "FIRST", seq))
    fake.send_multipart(codec.end(run, {"forged": True}))
    while True:
        dealer.poll(1000)


def test_a_spoofed_skip_loses_nothing(procs, endpoints):
    results, _, peak = run_pipeline(
        procs, endpoints, lambda: _spoof_skips(endpoints), n=1000, delay=0.002
    )
    assert_every_id_once(results, n=1000)
    assert "forged" not in results["finished"]
    assert_bounded(peak)


# -- a worker gets only its share ------------------------------------------------------------


def _greedy_peers(endpoint: str, n_peers: int = 3) -> None:
    """Peers that complete the handshake asking for 100 000 items, never deliver, never
    beat, and join again each time they are told to."""
    ctx = zmq.Context()
    codec = protocol.Codec(1 << 20)
    peers = []
    for i in range(n_peers):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, f"greedy-{i}".encode())
        sock.connect(endpoint)
        sock.send_multipart(codec.ready("FIRST", 100_000, 100_000))
        peers.append(sock)
    poller = zmq.Poller()
    for sock in peers:
        poller.register(sock, zmq.POLLIN)
    while True:
        for sock in dict(poller.poll(1000)):
            msg = protocol.decode(sock.recv_multipart())
            if type(msg) is protocol.Welcome:
                sock.send_multipart(codec.credit(0))
            elif type(msg) is protocol.Reset:
                sock.send_multipart(codec.ready("FIRST", 100_000, 100_000))


def test_greedy_silent_peers_cannot_make_items_fail(procs, endpoints):
    results, report, peak = run_pipeline(
        procs, endpoints, lambda: _greedy_peers(endpoints.worker), delay=0.0005
    )
    assert_every_id_once(results)
    assert not report["failed"], report["failed"][:3]
    held_by_greedy = [w for w in report["workers"] if w["id"].startswith("greedy")]
    assert held_by_greedy and all(w["collected"] == 0 for w in held_by_greedy)
    assert_bounded(peak)


# -- bounded decoding --------------------------------------------------------------------


def _send_forever(endpoint: str, frames_fn: Callable[[], list[Any]]) -> None:
    ctx = zmq.Context()
    while True:  # each message ends the link; connect again and send again
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send_multipart(frames_fn(), copy=False)
        time.sleep(0.5)  # pacing the attack
        sock.close()


def _many_parts() -> list[Any]:
    part = zmq.Frame(b"\0" * (60 * 1024 * 1024))
    return [part] * 30


def _bomb() -> list[Any]:
    n = 20 * 1024 * 1024
    body = b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n
    return [bytes((protocol.VERSION, protocol.READY)), body]


@pytest.mark.parametrize("attack", [_many_parts, _bomb], ids=["30 parts of 60 MB", "bomb"])
def test_huge_messages_neither_bloat_nor_stall_the_distributor(procs, endpoints, attack):
    results, report, peak = run_pipeline(
        procs, endpoints, lambda: _send_forever(endpoints.worker, attack), delay=0.001
    )
    assert_every_id_once(results)
    assert report["retries"] == 0  # no worker was thought dead while we were busy
    assert peak["distributor"] < RSS_LIMIT_MIB, peak


# -- one distributor per endpoint --------------------------------------------------------


def test_a_second_distributor_on_the_same_ipc_path_is_refused(procs, endpoints):
    started = FORK.Event()
    task = make_task(endpoints.worker, 200, delay=0.01)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, progress=started, progress_after=1)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert started.wait(30)
    second = Distributor(endpoints.collector, endpoints.ack, tasks=[task])
    with pytest.raises(ConfigurationError, match="another live process is serving it"):
        second.run()
    assert set(procs.join(60).values()) == {0}
    results = load(endpoints.results)
    assert sorted(item[1]["i"] for item in results["items"]) == list(range(1, 201))


def test_a_stale_ipc_file_of_a_dead_process_is_replaced(procs, endpoints):
    path = endpoints.worker.removeprefix("ipc://")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # a file nobody listens on, as a killed process leaves it
    stale.close()
    assert os.path.exists(path)
    results, _, _ = run_pipeline(procs, endpoints, None, n=50)
    assert_every_id_once(results, n=50)


# -- no role blocks forever in a send ----------------------------------------------------


def test_a_worker_whose_collector_is_gone_stops_on_sigterm(procs, endpoints):
    started = FORK.Event()
    task = make_task(endpoints.worker, 100_000)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, progress=started, progress_after=100)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert started.wait(30)
    procs.kill("collector", signal.SIGKILL)  # its results now pile up at the worker
    procs.started["collector"].join(5)
    procs.kill("worker", signal.SIGTERM)
    procs.started["worker"].join(10)
    assert procs.started["worker"].exitcode == 0
    procs.kill("distributor", signal.SIGTERM)
    procs.started["distributor"].join(10)
    assert procs.started["distributor"].exitcode == 0
    for address in (endpoints.collector, endpoints.ack):  # the killed collector's files
        os.unlink(address.removeprefix("ipc://"))
