"""A worker's decisions, apart from its sockets and threads: how much credit to ask for,
which run it belongs to, what it holds, and what it hands back when it leaves.

:class:`WorkerLogic` is fed decoded records from the distributor and says what to send
(:attr:`WorkerLogic.to_distributor`); the worker classes in :mod:`zmqpipeline.worker` own
the sockets and run user code. Unit tests drive it directly.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from typing import Any

from .. import protocol
from ..errors import SerializationError
from ..protocol.frames import frame_bytes
from ..protocol.tokens import TOKEN_BYTES

__all__ = [
    "BATCHES_UNSENT",
    "CreditWindow",
    "WorkerLogic",
    "worker_id",
]


class CreditWindow:
    """How many items a worker asks the distributor for.

    Enough to keep its ``slots`` (threads) busy for ``window_s`` at the measured time per
    item, between ``low`` and ``high`` beyond one per slot. A worker asks for credit with
    each batch of results it sends (``eager``), otherwise only once half the prefetch is
    used up, so items do not cost a CREDIT message each. With ``linger_s`` (the worker's
    longest result linger, ``RESULT_LINGER_S``), the window also covers two lingers of
    results (:func:`result_linger`) from the first item timed: credit asked once a batch
    must last two batches and the round trip, and a worker of many threads may not send a
    batch before its queue runs dry. A stage's source is told to hold its results less
    (its batches are small); its credit stays sized on ``linger_s`` and is asked for every
    quarter of the prefetch, not with each small batch.
    """

    __slots__ = ("high", "item_s", "linger_s", "low", "outstanding", "slots", "window_s")

    def __init__(
        self, slots: int, low: int, high: int, window_s: float, linger_s: float = 0.0
    ) -> None:
        self.slots = slots
        self.low = max(0, low)
        self.high = max(self.low, high)
        self.window_s = window_s
        self.linger_s = linger_s
        self.item_s: float | None = None  # moving average of one item's execution time
        self.outstanding = 0  # credit the distributor holds for us, not yet used

    @property
    def capacity(self) -> int:
        return self.slots + self.high

    def prefetch(self) -> int:
        if self.item_s is None:  # a second round for every thread, until items are timed
            return min(self.high, max(self.low, self.slots))
        window_s = self.window_s
        if self.linger_s:
            window_s += 2 * result_linger(self.item_s, self.linger_s)
        wanted = int(window_s * self.slots / max(self.item_s, 1e-6))
        return min(self.high, max(self.low, wanted))

    def observe(self, seconds: float) -> None:
        self.item_s = seconds if self.item_s is None else 0.8 * self.item_s + 0.2 * seconds

    def announce(self, held: int) -> int:
        """Credit to offer in READY; resets what the distributor is taken to hold."""
        self.outstanding = max(0, self.slots + self.prefetch() - held)
        return self.outstanding

    def received(self, n: int) -> None:
        self.outstanding = max(0, self.outstanding - n)

    def request(self, held: int, eager: bool = False) -> int:
        """Credit to ask for now (0: not worth a message yet); counted as outstanding.
        A message is worth it once half the prefetch is used up, or a quarter when
        ``eager`` (it rides in the same beat as a batch of results)."""
        prefetch = self.prefetch()
        want = self.slots + prefetch - held - self.outstanding
        if want < max(1, prefetch // (4 if eager else 2)):
            return 0
        self.outstanding += want
        return want


class WorkerLogic:
    """The state a worker keeps between messages.

    ``queue`` holds items received and not yet started (a multi-threaded worker moves
    them into its threads at once); ``busy`` counts items being executed. What is to be
    sent to the distributor is appended to :attr:`to_distributor`.
    """

    def __init__(self, task_type: str, codec: protocol.Codec, credit: CreditWindow) -> None:
        self.task_type = task_type
        self.codec = codec
        self.credit = credit
        self.run: int | None = None
        self.metadata: dict[str, Any] = {}
        self.accepted = False
        self.ended = False
        self.queue: deque[tuple[int, dict[str, Any]]] = deque()
        #: Each held item's token (DATA's: one per run of seqs), handed back beside its
        #: result (protocol.tokens).
        self.tokens: dict[int, bytes] = {}
        self.busy = 0
        self.to_distributor: deque[list[bytes]] = deque()
        self.recalled = 0  # items the distributor asked back (RECALL), not yet answered
        self.options: dict[str, Any] = {}  # from WELCOME: how this task's workers work

    @property
    def held(self) -> int:
        return len(self.queue) + self.busy

    def ready(self) -> None:
        """Introduce ourselves (again): READY with the credit we can take now."""
        free = self.credit.announce(self.held)
        self.to_distributor.append(
            self.codec.ready(self.task_type, self.credit.capacity, free, self.credit.slots)
        )

    def on_message(self, msg: Any) -> bool:
        """Apply one record from the distributor; ``True`` if it was a WELCOME to a run
        (the caller initialises user code once)."""
        kind = type(msg)
        if kind is protocol.Data:
            if msg.run == self.run and self.accepted:
                self.credit.received(len(msg.items))
                self.queue.extend((seq, payload) for seq, payload in msg.items)
                if len(msg.tokens) == TOKEN_BYTES and len(msg.items) == 1:
                    self.tokens[msg.items[0][0]] = msg.tokens  # a lone item (decoding checked)
                    return False
                tokens = protocol.tokens
                for token in tokens.split(msg.tokens):  # they cover the items (decoding checked)
                    self.tokens.update(dict.fromkeys(tokens.seqs_of(token), token))
        elif kind is protocol.Welcome:
            if msg.run != self.run:
                self.queue.clear()  # items of a run that is over
                self.tokens.clear()
            self.run, self.metadata, self.accepted = msg.run, msg.metadata, True
            self.options = msg.options
            self.to_distributor.append(self.codec.credit(0))  # the handshake's last step
            return True
        elif kind is protocol.Reset:
            self.queue.clear()
            self.tokens.clear()
            self.accepted = False
            self.ready()
        elif kind is protocol.End:
            self.ended = True
        elif kind is protocol.Recall:
            self.recalled = msg.n
        return False

    def answer_recall(self, unstarted: list[int]) -> None:
        """HANDBACK up to the recalled number of items no one has started: ``unstarted``
        (taken from threads' queue) first, then the last ones queued here."""
        seqs = unstarted[: self.recalled]
        while len(seqs) < self.recalled and self.queue:
            seqs.append(self.queue.pop()[0])
        self.recalled = 0
        for seq in seqs:
            self.tokens.pop(seq, None)
        self.to_distributor.append(self.codec.hand_back(seqs))

    def ask_for_more(self, eager: bool = False) -> None:
        want = self.credit.request(self.held, eager)
        if want:
            self.to_distributor.append(self.codec.credit(want))

    def finished(self, seconds: float) -> None:
        """An item took ``seconds``; it no longer counts as held."""
        self.busy -= 1
        self.credit.observe(seconds)

    def fail(self, seq: int, error: str, exc_types: list[str]) -> None:
        self.tokens.pop(seq, None)
        self.to_distributor.append(self.codec.fail(seq, error, exc_types))

    def hand_back(self, more: list[int]) -> list[bytes]:
        """Leave: the BYE that gives the queued items (and ``more``) back."""
        seqs = [seq for seq, _ in self.queue] + more
        self.queue.clear()
        return self.codec.bye(seqs)


#: A worker holds at most this many batches' worth of big results sent and not yet
#: written out (:mod:`zmqpipeline.worker.unsent`): half of ``max_in_flight_bytes`` in all.
BATCHES_UNSENT = 16
#: The shortest linger: below it a message per handful of results costs more than it saves.
MIN_LINGER_S = 0.002
#: A result lingers this many items' time (see :func:`result_linger`).
LINGER_ITEMS = 10.0


def result_linger(item_s: float | None, max_linger_s: float) -> float:
    """How long the oldest held result may wait: :data:`LINGER_ITEMS` items' time, but at
    least :data:`MIN_LINGER_S` (microsecond items batch by count, not by a linger of
    microseconds) and at most ``max_linger_s``; 0 until items are timed."""
    if item_s is None:
        return 0.0
    return min(max_linger_s, max(MIN_LINGER_S, LINGER_ITEMS * item_s))


class ResultBatch:
    """Results held to go to the collector together, with the credit they free.

    A batch is due when the worker is idle (a lone item is never held back), when it
    holds ``max_items`` (the worker makes that at most half its credit: credit is asked
    for once a batch, and must cover two), or when its oldest result would otherwise
    wait past the linger (:meth:`linger`: microsecond items hardly linger, 10 ms items up
    to 100 ms). From the first result holding big values on, every result is weighed,
    and the batch is also due once its big values reach ``max_bytes`` (a result of
    8 MiB goes at once; results of 64 KiB still go a batch at a time). Results are held
    as returned and packed when the batch is sent
    (:meth:`zmqpipeline.protocol.Codec.results`).
    """

    __slots__ = (
        "big",
        "deadline",
        "items",
        "max_bytes",
        "max_items",
        "max_linger_s",
        "nbytes",
        "run",
    )

    def __init__(self, max_items: int, max_linger_s: float, max_bytes: int = 0) -> None:
        self.max_items = max(1, max_items)
        self.max_linger_s = max_linger_s
        self.max_bytes = max_bytes  # of big values held (0: due at the first)
        self.nbytes = 0
        self.items: list[tuple[int, Any]] = []
        self.deadline = 0.0  # when the held results are due by the linger
        self.run: int | None = None  # the run the held results belong to
        #: Results with big values were seen: each is weighed (:meth:`add`), none is
        #: appended in place (the single-threaded worker's fast path).
        self.big = False

    def __len__(self) -> int:
        return len(self.items)

    def linger(self, item_s: float | None) -> float:
        """How long the oldest result may wait (:func:`result_linger`)."""
        return result_linger(item_s, self.max_linger_s)

    def add(self, seq: int, result: Any, now: float, run: int, item_s: float | None) -> bool:
        """Hold one result of ``run`` (the caller sends what it holds of another first);
        ``True`` if the batch is due by its size or its linger. ``item_s``: the expected
        time of the next item, which the oldest result would wait on top of its age."""
        items = self.items
        if not items:
            self.deadline = now + self.linger(item_s) - (item_s or 0.0)
            self.run = run
        items.append((seq, result))
        if result:
            nbytes = _weight(result)
            if nbytes:
                self.big = True  # from now on every result is weighed here
                self.nbytes += nbytes
                if self.nbytes >= self.max_bytes:
                    return True
        return len(items) >= self.max_items or now >= self.deadline

    def due(self, now: float, idle: bool) -> bool:
        """Send now? (idle: the worker has nothing else to do.)"""
        if not self.items:
            return False
        return idle or now >= self.deadline or len(self.items) >= self.max_items

    def wait_s(self, now: float) -> float | None:
        """Seconds until the batch is due by its linger (``None``: nothing held)."""
        if not self.items:
            return None
        return max(0.0, self.deadline - now)

    def take(self) -> list[tuple[int, Any]]:
        items, self.items, self.nbytes = self.items, [], 0
        return items


def _weight(result: Any) -> int:
    """The bytes of the result's big values (a key no receiver decodes: 0, the codec
    fails it)."""
    try:
        return frame_bytes(result)
    except SerializationError:
        return 0


def worker_id() -> bytes:
    """``host:pid:random``: readable in logs, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}".encode()
