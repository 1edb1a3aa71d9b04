"""A free port for a local run over tcp (``zmqpipeline run --secure``) and for the tests:
never one the kernel may give meanwhile as the local end of a connection. ``bind(0)``
gave ports of the ephemeral range, so a connection made between the probe and zmq's
bind could take the port ("Address already in use")."""

from __future__ import annotations

import socket

import pytest

from zmqpipeline.runtime.ports import ephemeral_ports, free_port


def test_the_ephemeral_range_is_the_kernels():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = map(int, f.read().split())
    assert ephemeral_ports() == (low, high)


def test_a_free_port_is_below_the_ephemeral_range_bindable_and_never_given_twice():
    low, _ = ephemeral_ports()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(1024 <= port < low for port in ports), ports
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_given():
    low, _ = ephemeral_ports()
    held = []
    try:
        for port in range(low - 200, low):  # hold the top of the range the draw is from
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        taken = {sock.getsockname()[1] for sock in held}
        assert not taken & {free_port() for _ in range(200)}
    finally:
        for sock in held:
            sock.close()


def test_the_address_the_local_run_gives_a_tcp_role_is_below_the_ephemeral_range(tmp_path):
    from zmqpipeline.cli.addresses import _free_port

    assert _free_port() < ephemeral_ports()[0]


@pytest.mark.parametrize("text", ["", "garbage", "40000"])
def test_an_unreadable_range_falls_back_to_linuxs_default(tmp_path, text):
    path = tmp_path / "range"
    path.write_text(text)
    assert ephemeral_ports(str(path)) == (32768, 60999)
