"""Item tokens: proof, in a RESULT, that the distributor handed that item to that worker.

The results endpoint is a PULL socket: it cannot tell who sent a message, and every
worker learns the run number. So the distributor makes a secret key for each run
(:func:`new_key`) and gives it to the collector in START, on the channel between those two
alone. It puts in DATA, beside each item, a token: a keyed BLAKE2b of the item's task
type, the worker's id and the item's seq (8 bytes). The worker hands the token back
beside the item's result, and the collector checks it with the same key: a result for an
item not handed out, or handed out to another worker, carries no valid token and is
refused. The collector keeps no state for it (no list of what was handed out to whom),
and neither side sends a message more than before; the cost is one keyed hash per item
on each side (about half a microsecond) and 8 bytes per item on the wire (the tokens of a
message travel as one byte string after its items).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

__all__ = ["KEY_BYTES", "TOKEN_BYTES", "ItemTokens", "new_key"]

#: Bytes of a run's key (START carries it), and of an item's token (DATA and RESULT).
KEY_BYTES = 16
TOKEN_BYTES = 8
_BASES_LIMIT = 4096  # (task type, worker) pairs whose keyed hash is kept ready


def new_key() -> bytes:
    """A fresh random key for one run's tokens."""
    return os.urandom(KEY_BYTES)


class ItemTokens:
    """Makes (distributor) and checks (collector) the tokens of one run's key."""

    __slots__ = ("_bases", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._bases: dict[tuple[str, bytes], Any] = {}

    def _base(self, task_type: str, worker_id: bytes) -> Any:
        base = self._bases.get((task_type, worker_id))
        if base is None:
            base = hashlib.blake2b(key=self.key, digest_size=TOKEN_BYTES)
            name = task_type.encode()
            base.update(len(name).to_bytes(4, "little") + name + worker_id)
            if len(self._bases) >= _BASES_LIMIT:
                self._bases.clear()  # a peer inventing worker ids costs a rebuild, no memory
            self._bases[(task_type, worker_id)] = base
        return base

    def token(self, task_type: str, worker_id: bytes, seq: int) -> bytes:
        """The token of item ``seq`` of ``task_type`` handed to ``worker_id``."""
        h = self._base(task_type, worker_id).copy()
        h.update(seq.to_bytes(8, "little", signed=True))
        digest: bytes = h.digest()
        return digest

    def tokens(self, task_type: str, worker_id: bytes, seqs: list[int]) -> list[bytes]:
        """The tokens of ``seqs``, all handed to ``worker_id`` (one hash set-up for all)."""
        copy = self._base(task_type, worker_id).copy
        out = []
        for seq in seqs:
            h = copy()
            h.update(seq.to_bytes(8, "little", signed=True))
            out.append(h.digest())
        return out

    def forged(self, task_type: str, worker_id: bytes, items: list[list[Any]], blob: bytes) -> bool:
        """Whether any of ``items`` (a RESULT's ``[seq, result]`` entries, their tokens in
        ``blob``, 8 bytes each in order) was not handed out to ``worker_id``: its token is
        missing or wrong. Stops at the first."""
        if len(blob) != TOKEN_BYTES * len(items):
            return True
        copy = self._base(task_type, worker_id).copy
        equal = hmac.compare_digest
        for i, item in enumerate(items):
            seq = item[0]
            if not -(1 << 63) <= seq < 1 << 63:
                return True
            h = copy()
            h.update(seq.to_bytes(8, "little", signed=True))
            if not equal(h.digest(), blob[TOKEN_BYTES * i : TOKEN_BYTES * (i + 1)]):
                return True
        return False
