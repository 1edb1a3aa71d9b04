"""ACKs an item at a time, for tests: the wire carries them in groups (protocol.ack_group).

An entry is ``[task_type, seq, ack_data, error, worker_id, result, first]``."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from zmqpipeline import protocol


def groups(entries: list[list[Any]]) -> list[list[Any]]:
    """The ACK groups of ``entries``: a group per run of one task type and worker."""
    out = []
    for (task_type, by), run in groupby(entries, key=lambda e: (e[0], e[4])):
        rows = list(run)
        out.append(
            protocol.ack_group(
                task_type,
                by,
                [e[1] for e in rows],
                [e[2] for e in rows],
                [e[3] for e in rows],
                [e[5] for e in rows],
                [e[6] for e in rows],
            )
        )
    return out


def entries(groups: list[list[Any]]) -> list[list[Any]]:
    """The entries of ACK ``groups``, in order."""
    out = []
    for task_type, by, seqs, ack_data, errors, results, firsts in groups:
        n = len(seqs)
        assert all(c is None or len(c) == n for c in (ack_data, errors, results, firsts))
        for i, seq in enumerate(seqs):
            out.append(
                [
                    task_type,
                    seq,
                    ack_data[i] if ack_data else None,
                    errors[i] if errors else None,
                    by,
                    results[i] if results else None,
                    firsts[i] if firsts else True,
                ]
            )
    return out


def plain(task_type: str, seqs: list[int], by: bytes = b"w1") -> list[list[Any]]:
    """The ACK groups of ``seqs`` collected for the first time, with no ACK data."""
    return groups([[task_type, seq, None, None, by, None, True] for seq in seqs])
