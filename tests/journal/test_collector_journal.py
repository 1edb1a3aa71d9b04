"""The collector's crash journal: a restarted collector handles no id twice."""

from __future__ import annotations

import logging
import os

from support import acks
from support.scheduling import SETTINGS

from zmqpipeline import protocol
from zmqpipeline.collector import CollectorLogic
from zmqpipeline.journal.collector import CollectorJournal
from zmqpipeline.runtime.transport import DropCounter

# -- the collector's journal -----------------------------------------------------------------


def _logic(journal):
    handled: list[int] = []

    def collect(task_type, seq, result):
        handled.append(seq)
        return None

    drops = DropCounter(logging.getLogger("t"), "t")
    return CollectorLogic(SETTINGS, collect, drops, journal), handled


def _start(logic, run):
    logic.on_distributor(b"d", protocol.Ping(run), 0.0)
    logic.on_distributor(b"d", protocol.Start(run, {}, ["T"], [], []), 0.0)


def test_restarted_collector_does_not_handle_an_id_twice(tmp_path):
    path = tmp_path / "c.sqlite"
    logic, handled = _logic(CollectorJournal(path))
    _start(logic, 5)
    for seq in (0, 1, 2, 5):
        logic.on_result(protocol.Result(5, "T", b"w", [[seq, {}]]))
    logic.journal.commit()
    logic.journal.close()
    assert handled == [0, 1, 2, 5]

    logic, handled = _logic(CollectorJournal(path))
    logic.on_result(protocol.Result(5, "T", b"w", [[1, {}]]))  # before START: buffered
    _start(logic, 5)
    for seq in (2, 3, 5, 6):
        logic.on_result(protocol.Result(5, "T", b"w", [[seq, {}]]))
    assert handled == [3, 6]
    logic.flush()
    sent = [protocol.decode(frames) for _, frames in logic.outbox]
    # The one held before START is ACKed at START, the others together after.
    re_acked = [e for m in sent if isinstance(m, protocol.Ack) for e in acks.entries(m.groups)]
    assert sorted(e[1] for e in re_acked) == [1, 2, 3, 5, 6]
    logic.journal.close()

    journal = CollectorJournal(path)  # killed before its batch was folded in: none lost
    logic, handled = _logic(journal)
    _start(logic, 5)
    logic.on_result(protocol.Result(5, "T", b"w", [[4, {}]]))
    assert handled == [4]
    os.close(journal._log)
    journal._store.close()
    logic, handled = _logic(CollectorJournal(path))
    _start(logic, 5)
    for seq in range(8):
        logic.on_result(protocol.Result(5, "T", b"w", [[seq, {}]]))
    assert handled == [7]
    logic.journal.close()

    # Another run over a journal whose run 5 never ended: refused unless fresh (a lost
    # distributor journal must not make the collector forget the ids it handled).
    logic, handled = _logic(CollectorJournal(path, fresh=True))
    _start(logic, 6)  # another run, asked for: a clean slate
    logic.on_result(protocol.Result(6, "T", b"w", [[1, {}]]))
    assert handled == [1]
    logic.journal.close()
