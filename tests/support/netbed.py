"""A multi-host test bed: Linux network namespaces joined by veth pairs to one bridge.

Every bed owns namespaces named ``zpnb-<pid>-<n>-h<i>`` (hosts) and ``zpnb-<pid>-<n>-br`` (the
bridge), and a private ``10.X.Y.0/24`` (X = 200 + pid % 50, Y = n % 256) that exists only
inside them: the root namespace (the machine's real networking) is never touched. Host ``i`` is
``10.X.Y.(i+1)`` on its ``eth0``, whose peer ``h<i>`` is a port of bridge ``br0`` in the bridge
namespace.

Use the ``netbed`` fixture (``bed = netbed(2)``) or ``NetBed`` as a context manager. Importing
this module deletes beds left behind by a process that has died (matching prefix, dead pid).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

PREFIX = "zpnb"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-(\d+)-")
_counter = itertools.count()


def ip(*args: str) -> str:
    """Run ``ip ARGS`` and return its stdout; raise with its stderr if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def namespaces() -> list[str]:
    """Names of every network namespace (``ip netns list``)."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _end(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM each pid, then SIGKILL those still alive after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (for processes that are not our children)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _delete_netns(name: str) -> None:
    """End every process still inside namespace ``name`` (by pid), then delete it."""
    try:
        _end([int(p) for p in ip("netns", "pids", name).split()])
        ip("netns", "delete", name)
    except (RuntimeError, FileNotFoundError):
        pass


def clean_stale() -> None:
    """Delete namespaces of this module's naming whose creating process no longer exists."""
    if available():
        return
    for name in namespaces():
        match = _NAME.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            _delete_netns(name)


class Host:
    """One namespace with ``lo`` and ``eth0`` (``addr``/24) up."""

    def __init__(self, bed: NetBed, index: int) -> None:
        self.bed = bed
        self.index = index
        self.netns = f"{bed.name}-h{index}"
        self.addr = f"{bed.prefix}.{index + 1}"
        self.port = f"h{index}"  # the veth end on the bridge
        self.processes: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"Host({self.netns}, {self.addr})"

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside this host (``ip netns exec``), inheriting the environment.

        ``ip netns exec`` execs the command, so the Popen's pid is the command's own pid. It is
        ended by pid when the bed closes (SIGTERM, SIGKILL after 2 s).
        """
        process = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **kw)
        self.processes.append(process)
        return process

    def run_python(self, code: str, *args: str, **kw: Any) -> subprocess.Popen[Any]:
        """``popen`` of ``python -c CODE ARGS...`` with this interpreter (sys.argv[1:] = args)."""
        return self.popen([sys.executable, "-c", code, *args], **kw)

    def isolate(self) -> None:
        """Cut this host off from every other host: its bridge port ``h<i>`` is set down.

        The host's ``eth0`` loses carrier but keeps its address and routes. Measured on a live
        TCP connection: ``send`` still succeeds (data is buffered), nothing arrives on either
        side and no error or reset is seen; after ``rejoin`` the connection resumes (the data
        is retransmitted) as long as TCP has not given up (``tcp_retries2``, ~15 min). A new
        connect from the isolated host fails with EHOSTUNREACH ("No route to host") after ~1 s,
        when ARP gets no answer.
        """
        ip("-n", self.bed.bridge_ns, "link", "set", self.port, "down")

    def rejoin(self) -> None:
        """Undo ``isolate``: set the bridge port up again (it forwards at once: no STP)."""
        ip("-n", self.bed.bridge_ns, "link", "set", self.port, "up")

    def close(self) -> None:
        """End the processes started here by pid: SIGTERM, then SIGKILL after 2 s."""
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


class NetBed:
    """``n`` hosts on one bridge, with per-pair partitions and per-host isolation."""

    def __init__(self, n: int = 2) -> None:
        number = next(_counter)
        self.name = f"{PREFIX}-{os.getpid()}-{number}"
        self.prefix = f"10.{200 + os.getpid() % 50}.{number % 256}"
        self.subnet = f"{self.prefix}.0/24"
        self.bridge_ns = f"{self.name}-br"
        self.hosts: list[Host] = []
        self._created: list[str] = []
        try:
            self._build(n)
        except BaseException:
            self.close()
            raise

    def _build(self, n: int) -> None:
        br = self.bridge_ns
        self._add_netns(br)
        ip("-n", br, "link", "add", "br0", "type", "bridge")
        ip("-n", br, "link", "set", "br0", "up")
        for index in range(n):
            host = Host(self, index)
            self.hosts.append(host)
            self._add_netns(host.netns)
            veth = ["add", host.port, "type", "veth", "peer", "eth0", "netns", host.netns]
            ip("-n", br, "link", *veth)
            ip("-n", br, "link", "set", host.port, "master", "br0", "up")
            ip("-n", host.netns, "addr", "add", f"{host.addr}/24", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
            # The local table's rule (pref 0) would match before any partition rule: move it.
            ip("-n", host.netns, "rule", "add", "pref", "100", "lookup", "local")
            ip("-n", host.netns, "rule", "del", "pref", "0", "lookup", "local")

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._created.append(name)

    def __enter__(self) -> NetBed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def partition(self, a: Host, b: Host) -> None:
        """Drop every packet between ``a`` and ``b`` in both directions; others are untouched.

        Each of the two namespaces gets ``ip rule add pref 10 from <other>/32 iif eth0
        blackhole`` (the local table's rule is moved to pref 100 so this one is seen first):
        packets from the other host are discarded on input, and the ICMP error the kernel
        answers with is discarded by the other side's rule in turn. Outgoing packets still
        leave, so no host sees a local error. Measured on a live TCP connection: ``send``
        succeeds, nothing arrives on either side, no error or reset; after ``heal`` the
        connection resumes (retransmission, within ~2 s) unless TCP gave up first
        (``tcp_retries2``, ~15 min). New connects between the two hang (SYNs dropped) until
        their own timeout; they do not fail at once. ARP still works.
        """
        for here, there in ((a, b), (b, a)):
            ip("-n", here.netns, "rule", "add", *self._rule(there))

    def heal(self, a: Host, b: Host) -> None:
        """Undo ``partition(a, b)``."""
        for here, there in ((a, b), (b, a)):
            ip("-n", here.netns, "rule", "del", *self._rule(there))

    @staticmethod
    def _rule(there: Host) -> list[str]:
        return ["pref", "10", "from", f"{there.addr}/32", "iif", "eth0", "blackhole"]

    def close(self) -> None:
        """End every process (by pid) and delete the namespaces (their veths and bridge go too)."""
        try:
            for host in self.hosts:
                host.close()
        finally:
            for name in reversed(self._created):
                _delete_netns(name)
            self._created.clear()


def available() -> str | None:
    """None if beds can be built here, else why not."""
    if os.geteuid() != 0:
        return "netbed needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "netbed needs the `ip` command (iproute2)"
    return None


@pytest.fixture
def netbed() -> Iterator[Callable[[int], NetBed]]:
    """Yield ``make(n) -> NetBed``; every bed made is closed at teardown, pass or fail."""
    reason = available()
    if reason:
        pytest.skip(reason)
    beds: list[NetBed] = []

    def make(n: int = 2) -> NetBed:
        try:
            bed = NetBed(n)
        except RuntimeError as error:
            if "netns add" not in str(error):
                raise
            pytest.skip(f"netbed cannot create namespaces here: {error}")
        beds.append(bed)
        return bed

    try:
        yield make
    finally:
        for bed in beds:
            bed.close()


clean_stale()
