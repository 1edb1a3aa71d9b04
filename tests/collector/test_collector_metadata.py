"""A collector's ``handle_collection`` sees its run's metadata from the first result on,
whatever order START and the first results are read in. CI (Python 3.10) caught a result
handled with no metadata: read before START, or in the same poll, it was collected
before the Collector copied the run's metadata (once a loop, after the reads).

A real collector process over ipc; this test plays the distributor and a worker. The
collector is stopped (SIGSTOP) while a result and START are sent, so that it finds both
waiting when it runs again: read in the same poll, or the result first (held until
START). Either way round failed before; so did the ACK of a result held until START
(it waited for the next result, which never comes here). The deterministic checks of
both are in tests/collector/test_collector_logic.py."""

from __future__ import annotations

import os
import signal

import pytest
import zmq
from support.pipelines import load, make_collector

from zmqpipeline import protocol

pytestmark = pytest.mark.timeout(60)

RUN = 7
ROUNDS = 3


def _handshake(dealer: zmq.Socket, codec: protocol.Codec) -> None:
    """PING until the collector answers HELLO: it is up and reading."""
    for _ in range(100):
        dealer.send_multipart(codec.ping(RUN))
        if dealer.poll(200):
            assert isinstance(protocol.decode(dealer.recv_multipart()), protocol.Hello)
            return
    raise AssertionError("the collector never answered PING")


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_results_read_with_or_before_start_are_collected_with_the_runs_metadata(
    procs, endpoints, round_
):
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    codec = protocol.Codec(64 << 20)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    push = ctx.socket(zmq.PUSH)
    try:
        dealer.connect(endpoints.ack)
        push.connect(endpoints.collector)
        _handshake(dealer, codec)
        pid = procs.started["collector"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            push.send_multipart(codec.result(RUN, "T", 1, {"i": 1}, b"host:1:w"))
            dealer.send_multipart(codec.start(RUN, {"v": "meta-value"}, ["T"]))
        finally:
            os.kill(pid, signal.SIGCONT)
        for _ in range(100):  # until the result's ACK: collected
            assert dealer.poll(10_000), "no ACK from the collector in 10 s"
            if isinstance(protocol.decode(dealer.recv_multipart()), protocol.Ack):
                break
        dealer.send_multipart(codec.end(RUN, {"collected": {"T": 1}, "failed": []}))
        procs.started["collector"].join(20)
        assert procs.started["collector"].exitcode == 0
    finally:
        dealer.close(0)
        push.close(0)
        ctx.term()
    results = load(endpoints.results)
    assert [item[3] for item in results["items"]] == ["meta-value"]  # self.metadata's "v"
