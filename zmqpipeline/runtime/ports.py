"""A free loopback port for a role to bind (``zmqpipeline run --secure``, over tcp):
drawn below the kernel's ephemeral range, so that no connection made between the probe
and the bind can take it as its local end — a port from ``bind(0)`` is of that range."""

from __future__ import annotations

import random
import socket

__all__ = ["ephemeral_ports", "free_port"]

_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_LINUX_DEFAULT = (32768, 60999)
_LOWEST = 20000  # below it, the ports services are known by
_given: set[int] = set()  # by this process (and the processes it forks)


def ephemeral_ports(path: str = _RANGE_FILE) -> tuple[int, int]:
    """The ports the kernel gives the local end of a connection (Linux's default if
    ``path`` cannot be read)."""
    try:
        with open(path) as f:
            low, high = (int(word) for word in f.read().split())
    except (OSError, ValueError):
        return _LINUX_DEFAULT
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A port of ``host`` nothing is bound to now, below the ephemeral range, never one
    this process gave before."""
    high = ephemeral_ports()[0]
    low = _LOWEST if high - _LOWEST >= 2000 else 1024
    for _ in range(10 * (high - low)):
        port = random.randrange(low, high)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise OSError(f"no free port on {host} in {low}-{high - 1}")
