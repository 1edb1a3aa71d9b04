"""Over plain tcp nothing bounds a many-part message (libzmq builds it whole before a role
sees it: documented in docs/security.md). Under CURVE a stranger — with no key, or with a
key that is not authorised — gets no message in at all: 30 parts of 60 MB sent to a
secured collector's results endpoint leave it under 100 MiB. Real processes, tcp on
127.0.0.1."""

from __future__ import annotations

import os
import signal
import time

import pytest
import zmq
from support.hostile import HwmWatch, curve_client, logging_to, read_text, wait_for_log
from support.pipelines import make_collector

from zmqpipeline.security import (
    ENV_AUTHORIZED_KEYS,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
    generate_keys,
)

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024


def _many_parts(endpoint: str, key: tuple[str, str] | None) -> None:
    part = zmq.Frame(b"\0" * (60 * MIB))
    ctx = zmq.Context()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # each link is refused: connect and send again
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        if key is not None:
            curve_client(sock, *key)
        sock.connect(endpoint)
        try:
            sock.send_multipart([part] * 30, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        time.sleep(0.5)  # pacing the attack
        sock.close()
    ctx.term()


@pytest.mark.parametrize("transport", ["tcp"], indirect=True)
@pytest.mark.parametrize("stranger", ["no key", "unauthorised key"])
def test_many_part_messages_from_strangers_never_reach_a_secured_collector(
    procs, endpoints, transport, stranger, tmp_path
):
    folder = tmp_path / "keys"
    server_public, _ = generate_keys(folder, "server")
    generate_keys(folder, "rogue")
    (folder / "authorized" / "workers").mkdir(parents=True)
    env = {
        ENV_SECRET_KEY: str(folder / "server.key_secret"),
        ENV_SERVER_KEY: str(server_public),
        ENV_AUTHORIZED_KEYS: str(folder / "authorized"),
    }
    log = tmp_path / "collector.log"
    collector = make_collector(endpoints)

    def secured() -> None:
        os.environ.update(env)
        collector().run()

    watch = HwmWatch(procs)
    procs.start("collector", logging_to(log, secured))
    key = None if stranger == "no key" else (folder / "rogue.key_secret", server_public)
    procs.start("attacker", lambda: _many_parts(endpoints.collector, key))
    procs.started["attacker"].join(30)
    if key is not None:  # the authenticator's one line for an unknown key
        assert wait_for_log(log, ["is not authorised"], 10), read_text(log)
    procs.kill("collector", signal.SIGTERM)
    procs.started["collector"].join(20)
    peak = watch.stop()
    assert peak["collector"] < 100, peak
