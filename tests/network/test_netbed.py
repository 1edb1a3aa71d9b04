"""Self-test of the multi-host bed: a pyzmq REQ/REP round trip across two namespaces, cut by a
partition and restored by heal; namespaces and processes gone at teardown, even on failure."""

from __future__ import annotations

import subprocess

import pytest
from support.netbed import NetBed, available, clean_stale, namespaces, netbed  # noqa: F401

pytestmark = pytest.mark.timeout(60)


PORT = 5555


REP = """
import sys, zmq
sock = zmq.Context().socket(zmq.REP)
sock.bind(f"tcp://{sys.argv[1]}:{sys.argv[2]}")
while True:
    sock.send(b"pong:" + sock.recv())
"""


REQ = """
import sys, zmq
sock = zmq.Context().socket(zmq.REQ)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(f"tcp://{sys.argv[1]}:{sys.argv[2]}")
sock.send(b"ping")
print(sock.recv().decode() if sock.poll(int(sys.argv[3])) else "timeout", flush=True)
"""


def round_trip(bed: NetBed, timeout_ms: int) -> str:
    """A fresh REQ in host 0 asks host 1's REP; its answer, or "timeout" after timeout_ms."""
    client, server = bed.hosts
    req = client.run_python(REQ, server.addr, str(PORT), str(timeout_ms), stdout=subprocess.PIPE)
    out, _ = req.communicate(timeout=timeout_ms / 1000 + 10)
    return out.decode().strip()


def test_partition_and_heal(netbed) -> None:  # noqa: F811
    bed = netbed(2)
    client, server = bed.hosts
    server.run_python(REP, server.addr, str(PORT))
    assert round_trip(bed, 10_000) == "pong:ping"  # waits for the REP to bind
    bed.partition(client, server)
    assert round_trip(bed, 1_000) == "timeout"
    bed.heal(client, server)
    assert round_trip(bed, 10_000) == "pong:ping"
    bed.close()
    assert not [name for name in namespaces() if name.startswith(bed.name)]
    assert all(p.poll() is not None for p in server.processes)


def test_teardown_on_failure() -> None:
    if available():
        pytest.skip(available())
    with pytest.raises(ZeroDivisionError), NetBed(3) as bed:
        sleeper = bed.hosts[2].popen(["sleep", "60"])
        1 / 0  # noqa: B018
    assert sleeper.returncode is not None
    assert not [name for name in namespaces() if name.startswith(bed.name)]


def test_stale_beds_are_removed() -> None:
    if available():
        pytest.skip(available())
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"zpnb-{dead.pid}-0-h0"
    subprocess.run(["ip", "netns", "add", name], check=True)
    clean_stale()
    assert name not in namespaces()
