"""Item tokens: proof, in a RESULT, that the distributor handed those items to that worker.

The results endpoint is a PULL socket: it cannot tell who sent a message, and every
worker learns the run number. So the distributor makes a secret key for each run
(:func:`new_key`) and gives it to the collector in START, on the channel between those two
alone. A token vouches for a run of consecutive seqs handed out together: it is a record
of :data:`TOKEN_BYTES` bytes, the run's first seq and length and a keyed BLAKE2b of them
with the task type and the worker's id (8 bytes). DATA carries the tokens of its items
(one for a batch of fresh items, which are consecutive; one per run of a batch of
re-issued ones); the worker hands back, beside the results of a RESULT, the tokens that
cover them, and the collector checks them with the same key: a result for an item not
handed out, or handed out to another worker, is covered by no valid token and refused.

The collector keeps no list of what was handed out to whom (a token it checked is
remembered, a bounded number of them), and no side sends a message more than before:
the cost is a keyed hash per batch, not per item, and a range check per result; a lone
item's hash is made ahead, while its role would wait (:meth:`ItemTokens.prepare`).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from typing import Any

__all__ = [
    "KEY_BYTES",
    "TOKEN_BYTES",
    "ItemTokens",
    "covered",
    "new_key",
    "runs",
    "seqs_of",
    "split",
    "token_runs",
]

#: Bytes of a run's key (START carries it).
KEY_BYTES = 16
_RUN = struct.Struct("<qI")  # a token's first seq and number of seqs
_MAC_BYTES = 8
_RUNS = struct.Struct("<qI8x")  # a token's run, its hash skipped
#: Bytes of a token: first seq, length, keyed hash.
TOKEN_BYTES = _RUN.size + _MAC_BYTES
_SEQ_RANGE = (-(1 << 63), 1 << 63)
_KEPT = 4096  # tokens remembered as checked, and (task type, worker) hash set-ups kept


def new_key() -> bytes:
    """A fresh random key for one run's tokens."""
    return os.urandom(KEY_BYTES)


def token_runs(seqs: list[int]) -> list[tuple[int, int]]:
    """``seqs`` (distinct, as a batch's are) as runs of consecutive seqs: ``(first, n)``.
    A batch of fresh items is one run: found without a loop."""
    if not seqs:
        return []
    low, high = min(seqs), max(seqs)
    if high - low + 1 == len(seqs):
        return [(low, len(seqs))]
    runs: list[tuple[int, int]] = []
    ordered = sorted(seqs)
    first = last = ordered[0]
    for seq in ordered[1:]:
        if seq != last + 1:
            runs.append((first, last - first + 1))
            first = seq
        last = seq
    runs.append((first, last - first + 1))
    return runs


def covered(seqs: list[int], spans: list[tuple[int, int]]) -> bool:
    """Whether every seq of ``seqs`` lies in one of ``spans`` (``(first, end)``, end
    excluded). One span: a min and a max; more: a bisection per span, not a loop per seq."""
    if not seqs:
        return True
    if len(spans) == 1:
        first, end = spans[0]
        return first <= min(seqs) and max(seqs) < end
    ordered = sorted(seqs)
    inside, reach = 0, _SEQ_RANGE[0]
    for first, end in sorted(spans):
        first = max(first, reach)  # overlapping spans count their seqs once
        if first < end:
            inside += bisect.bisect_left(ordered, end) - bisect.bisect_left(ordered, first)
            reach = end
    return inside == len(ordered)


class ItemTokens:
    """Makes (distributor) and checks (collector) the tokens of one run's key."""

    __slots__ = ("_ahead", "_bases", "_checked", "_next", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._bases: dict[tuple[str, bytes], Any] = {}
        self._checked: dict[tuple[str, bytes, bytes], tuple[int, int]] = {}
        # Per worker: the seq of its likely next lone item, that item's one-seq token (made
        # ahead by prepare) and the step between its last two lone items.
        self._ahead: dict[tuple[str, bytes], tuple[int, bytes, int]] = {}
        self._next: tuple[str, bytes, int, int] | None = None  # what prepare makes next

    # A lone item's token is made and checked in a process just woken, its caches cold:
    # there every call and every object counts (a cold call costs a microsecond or more).
    # So the one-seq paths are short, and the hash of a worker's likely next lone item (its
    # last seq plus the step between its last two: 1 for one worker, n for n taking turns)
    # is made ahead by prepare(), which each role calls once its messages are out, before
    # it waits: that item's token is then made, or checked, by a lookup. A wrong guess
    # costs one warm hash, off the round trip.

    def _guess(self, key: tuple[str, bytes], seq: int) -> None:
        """After a lone item ``seq`` of ``key``'s worker (made or checked the long way):
        what prepare makes next."""
        made = self._ahead.get(key)
        step = seq - (made[0] - made[2]) if made is not None else 1
        step = step if 0 < step <= _KEPT else 1
        self._next = (key[0], key[1], seq + step, step)

    def prepare(self) -> None:
        """Make the token of the lone item most likely next (see above), now."""
        if self._next is not None:
            task_type, worker_id, seq, step = self._next
            self._next = None
            run = _RUN.pack(seq, 1)
            if len(self._ahead) >= _KEPT:
                self._ahead.clear()
            token = run + self._mac(task_type, worker_id, run)
            self._ahead[(task_type, worker_id)] = (seq, token, step)

    def _mac(self, task_type: str, worker_id: bytes, run: bytes) -> bytes:
        base = self._bases.get((task_type, worker_id)) or self._base(task_type, worker_id)
        h = base.copy()
        h.update(run)
        digest: bytes = h.digest()
        return digest

    def _base(self, task_type: str, worker_id: bytes) -> Any:
        """The hash set up with the key, the task type and the worker's id."""
        base = hashlib.blake2b(key=self.key, digest_size=_MAC_BYTES)
        name = task_type.encode()
        base.update(len(name).to_bytes(4, "little") + name + worker_id)
        if len(self._bases) >= _KEPT:
            self._bases.clear()  # a peer inventing worker ids costs a rebuild, no memory
        self._bases[(task_type, worker_id)] = base
        return base

    def tokens(self, task_type: str, worker_id: bytes, seqs: list[int]) -> list[bytes]:
        """The tokens of ``seqs`` (distinct), all handed to ``worker_id``: one per run of
        consecutive seqs."""
        if len(seqs) == 1:
            seq, key = seqs[0], (task_type, worker_id)
            made = self._ahead.get(key)
            if made is not None and made[0] == seq:
                self._next = (task_type, worker_id, seq + made[2], made[2])
                return [made[1]]
            self._guess(key, seq)
            run = _RUN.pack(seq, 1)
            return [run + self._mac(task_type, worker_id, run)]
        out = []
        for first, n in token_runs(seqs):
            run = _RUN.pack(first, n)
            out.append(run + self._mac(task_type, worker_id, run))
        return out

    def span(self, task_type: str, worker_id: bytes, token: bytes) -> tuple[int, int] | None:
        """The seqs ``token`` vouches for, ``(first, end)``, if this key made it for
        ``worker_id``; else ``None``."""
        key = (task_type, worker_id, token)
        span = self._checked.get(key)
        if span is None:
            if len(token) != TOKEN_BYTES:
                return None
            run = token[: _RUN.size]
            if not hmac.compare_digest(self._mac(task_type, worker_id, run), token[_RUN.size :]):
                return None
            first, n = _RUN.unpack(run)
            span = (first, first + n)
            if len(self._checked) >= _KEPT:
                self._checked.clear()
            self._checked[key] = span
        return span

    def vouches(self, task_type: str, worker_id: bytes, token: bytes, low: int, high: int) -> bool:
        """Whether ``token`` (of :data:`TOKEN_BYTES`) was made by this key for
        ``worker_id`` and covers every seq from ``low`` to ``high``: the check of a RESULT
        with one token (a lone item's: made ahead or hashed, not remembered; a batch's:
        checked once, by :meth:`span`, for all the RESULTs it covers)."""
        key = (task_type, worker_id)
        made = self._ahead.get(key)
        if made is not None and made[0] == low == high and hmac.compare_digest(made[1], token):
            self._next = (task_type, worker_id, low + made[2], made[2])
            return True
        first, n = _RUN.unpack_from(token)
        if n != 1 or low != high:
            span = self.span(task_type, worker_id, token)
            return span is not None and span[0] <= low and high < span[1]
        run, mac = token[: _RUN.size], token[_RUN.size :]
        if first != low or not hmac.compare_digest(self._mac(task_type, worker_id, run), mac):
            return False
        self._guess(key, low)
        return True


def runs(blob: bytes) -> Iterator[tuple[int, int]]:
    """The ``(first, n)`` runs the tokens of ``blob`` say they cover, checked or not (its
    length a multiple of :data:`TOKEN_BYTES`)."""
    return _RUNS.iter_unpack(blob)


def split(blob: bytes) -> list[bytes]:
    """A DATA's or RESULT's tokens, one by one (the blob's length was checked)."""
    return [blob[i : i + TOKEN_BYTES] for i in range(0, len(blob), TOKEN_BYTES)]


def seqs_of(token: bytes) -> range:
    """The seqs a token says it covers (checked or not: the worker trusts its DATA)."""
    first, n = _RUN.unpack_from(token)
    return range(first, first + n)
