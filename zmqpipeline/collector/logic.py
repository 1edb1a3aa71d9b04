"""``CollectorLogic``: everything the collector decides (no sockets): dedupe, which distributor
and run to follow, results that came before their run's START, ACK batching."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..protocol.tokens import TOKEN_BYTES
from ..runtime.runtime import UserCodeError
from ..runtime.seen import SeenSet
from ..runtime.transport import DropCounter
from ..settings import Settings

if TYPE_CHECKING:
    from ..journal.collector import CollectorJournal

__all__ = ["CollectFn", "CollectorLogic"]

logger = logging.getLogger("zmqpipeline.collector")

_BUFFER_LIMIT = 100_000  # results held while waiting for the distributor's START
_BUFFER_BYTES = 32 * 1024 * 1024  # ... and their size on the wire
_KEYS_KEPT = 4  # token keys of the current run (a restarted distributor makes a new one)
_UNSENT_LIMIT = 10_000  # ACK messages held for an unreachable distributor

#: ``collect(task_type, seq, result)`` returns the ACK's data or raises UserCodeError.
CollectFn = Callable[[str, int, dict[str, Any]], "dict[str, Any] | None"]


class CollectorLogic:
    """Everything the collector decides, fed decoded records and the time.

    It follows one distributor (identified by its routing id): the first to send START, or
    a new one once the current has been silent for ``liveness_s``; while it has one, no
    other gets an answer. START, SKIP and END count only from that distributor. ACKs,
    HELLOs and FINISHED go to :attr:`outbox` as ``(distributor id, frames)``.
    """

    def __init__(
        self,
        settings: Settings,
        collect: CollectFn,
        drops: DropCounter,
        journal: CollectorJournal | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal  # the ids handled, recorded before their ACK leaves
        self.collect = collect
        #: What collects the results the distributor served from its cache (default:
        #: ``collect``; the Collector's tells ``handle_collection`` where they came from).
        self.collect_cached = collect
        #: Called with a run's metadata at its START, before any of its results is
        #: collected (those that came early too): the Collector's ``metadata`` is the run's
        #: from its first ``handle_collection`` on.
        self.on_start: Callable[[dict[str, Any]], None] = lambda metadata: None
        self.drops = drops
        self.codec = protocol.Codec(settings.max_message_bytes)
        self.collector_id = os.urandom(16)
        self.distributor: bytes | None = None
        self.distributor_seen = 0.0
        self.run: int | None = None
        self.metadata: dict[str, Any] = {}
        self.seen: dict[str, SeenSet] = {}
        # Streaming stages (START says which): results of ``forward`` task types ride on
        # their first ACK to the distributor; ``quiet`` ones skip handle_collection.
        self.forward: frozenset[str] = frozenset()
        self.quiet: frozenset[str] = frozenset()
        self.early: list[protocol.Result] = []
        self.early_bytes = 0
        # The run's token keys (START's; the newest first): a result whose items were not
        # handed out to its worker is refused (protocol.tokens). None: a START without one.
        self.tokens: list[protocol.ItemTokens] = []
        self.forged = 0  # results refused for want of a valid token
        self.groups: list[list[Any]] = []  # ACK groups not yet sent
        self.outbox: deque[tuple[bytes, list[bytes]]] = deque()
        self.end: dict[str, Any] | None = None
        self.collected = 0
        self.duplicates = 0
        #: An ACK may have been lost (the distributor changed, an ACK was dropped, we
        #: resumed from a journal): duplicates carry their result again from now on.
        self.acks_lost = False

    # -- from workers -------------------------------------------------------------------

    def on_result(self, msg: protocol.Result, nbytes: int = 0) -> None:
        """A RESULT (``nbytes``: its size on the wire, what an early one costs to hold)."""
        if self.run is None:
            if len(self.early) < _BUFFER_LIMIT and self.early_bytes + nbytes <= _BUFFER_BYTES:
                self.early.append(msg)
                self.early_bytes += nbytes
            else:
                self.drops.drop("result before the run started, buffer full")
        elif msg.run != self.run:
            self.drops.drop("result of another run")
        else:
            self._collect(msg)

    def _collect(self, msg: protocol.Result, cached: bool = False) -> None:
        task_type, worker_id = msg.task_type, msg.worker_id
        seen = self.seen.get(task_type)
        if seen is None:
            self.drops.drop("unknown task type", repr(task_type))
            return
        if self.tokens and not cached and self._forged(msg):
            return
        collect, journal = self.collect_cached if cached else self.collect, self.journal
        forward, quiet = task_type in self.forward, task_type in self.quiet
        # One ACK group per RESULT: a column per field (see protocol.ack_group).
        seqs: list[int] = []
        acks: list[dict[str, Any] | None] = []
        errors: list[str | None] = []
        results: list[dict[str, Any] | None] = []
        firsts: list[bool] = []
        for seq, result in msg.items:
            ack_data = error = forwarded = None
            first = False  # handled in this ACK (not a duplicate, handle_collection ran)
            if seq in seen:
                # ACK it again: the first ACK may have been lost (a distributor restarted,
                # a link was cut); the distributor ignores ACKs of items it does not await.
                # With the result (of a task that feeds a stage) once an ACK may have been
                # lost: the distributor derives from a result when it takes the item off
                # its in-flight table, once, and may never have seen the first.
                self.duplicates += 1
                if self.acks_lost and forward:
                    forwarded = result or {}
            else:
                try:
                    if not quiet:
                        ack_data = collect(task_type, seq, result or {})
                except UserCodeError as exc:
                    error = exc.text  # not seen: the item is tried again
                else:
                    seen.add(seq)
                    if journal is not None:
                        journal.handled(task_type, seq)
                    forwarded = (result or {}) if forward else None
                    first = True
            seqs.append(seq)
            acks.append(ack_data)
            errors.append(error)
            results.append(forwarded)
            firsts.append(first)
        self.collected += firsts.count(True)
        group = protocol.ack_group(task_type, worker_id, seqs, acks, errors, results, firsts)
        self.groups.append(group)

    def _forged(self, msg: protocol.Result) -> bool:
        """Refuse (count and log once) a RESULT holding an item that was not handed out
        to its worker: a forging peer changes no result."""
        task_type, worker_id = msg.task_type, msg.worker_id
        items = msg.items
        if len(msg.tokens) == TOKEN_BYTES and items:  # one token: a lone result, a batch's
            if len(items) == 1:
                low = high = items[0][0]
            else:
                seqs = [item[0] for item in items]
                low, high = min(seqs), max(seqs)
            for tokens in self.tokens:
                if tokens.vouches(task_type, worker_id, msg.tokens, low, high):
                    return False
            return self._refuse(msg)
        spans = []
        for token in protocol.tokens.split(msg.tokens):
            for tokens in self.tokens:  # the run's keys, the newest first
                span = tokens.span(task_type, worker_id, token)
                if span is not None:
                    spans.append(span)
                    break
            else:
                break  # not made by our distributor
        else:
            if spans and protocol.tokens.covered([item[0] for item in msg.items], spans):
                return False
        return self._refuse(msg)

    def _refuse(self, msg: protocol.Result) -> bool:
        """Count and log (once) a forged RESULT; ``True``."""
        task_type, worker_id = msg.task_type, msg.worker_id
        self.forged += len(msg.items)
        self.drops.drop(
            "forged result",
            f"{len(msg.items)} result(s) of {task_type} claiming worker "
            f"{worker_id[:40]!r}, for items not handed out to it (no valid item token)",
        )
        return True

    def flush(self) -> None:
        """Turn the ACK groups gathered so far into one ACK message."""
        if self.groups and self.run is not None and self.distributor is not None:
            groups, self.groups = self.groups, []
            self._send(self.codec.ack(self.run, groups))

    # -- from the distributor ------------------------------------------------------------

    def on_distributor(self, sender: bytes, msg: Any, now: float) -> None:
        kind = type(msg)
        if sender != self.distributor:
            free = self.distributor is None or (
                now - self.distributor_seen >= self.settings.liveness_s
            )
            if not free or kind not in (protocol.Ping, protocol.Start):
                self.drops.drop("message from a peer that is not our distributor")
                return
            if kind is protocol.Ping:  # say we are up; it becomes ours by its START
                self._send(self.codec.hello(self.collector_id), sender)
                return
            if self.distributor is not None:
                logger.warning("the distributor went silent; following a new one")
                self.acks_lost = True
            self.distributor = sender
            self.outbox.clear()  # ACKs for a distributor that has gone
        self.distributor_seen = now
        if kind is protocol.Ping:
            self._send(self.codec.hello(self.collector_id))
        elif kind is protocol.Start:
            if msg.run != self.run:
                self._start(msg)
            elif msg.key and msg.key not in [tokens.key for tokens in self.tokens]:
                # Our distributor restarted (same run, new key): items of both are valid.
                self.tokens = [protocol.ItemTokens(msg.key), *self.tokens][:_KEYS_KEPT]
        elif kind is protocol.Skip:
            if msg.run == self.run and msg.task_type in self.seen:
                self.seen[msg.task_type].add(msg.seq)
                if self.journal is not None:
                    self.journal.handled(msg.task_type, msg.seq)
        elif kind is protocol.End and msg.run == self.run:
            self.end = msg.summary
            if self.journal is not None and not msg.summary.get("aborted"):
                self.journal.ended()  # a new run may start over this journal
        elif kind is protocol.Result and msg.run == self.run:
            # Results the distributor served from its cache (zmqpipeline.cache): collected
            # and ACKed like a worker's (ids handled are committed before the ACK leaves).
            self._collect(msg, cached=True)
            self.flush()
            if self.journal is not None:
                self.journal.commit()

    def _start(self, msg: protocol.Start) -> None:
        if self.run is not None:
            logger.warning("a new run started before the end of the current one: following it")
            self.groups.clear()  # ACKs of the old run
        self.run = msg.run
        self.metadata = msg.metadata
        self.on_start(msg.metadata)
        self.seen = {tt: SeenSet() for tt in msg.task_types}
        self.forward, self.quiet = frozenset(msg.forward), frozenset(msg.quiet)
        self.tokens = [protocol.ItemTokens(msg.key)] if msg.key else []
        logger.info("run started: task types %s", ", ".join(self.seen))
        if self.journal is not None and self.journal.follow(msg.run, self.seen):
            logger.warning("resuming: ids handled before the restart will not be handled again")
            self.acks_lost = True
        early, self.early, self.early_bytes = self.early, [], 0
        for result in early:
            self.on_result(result)
        if early:  # their ACK now (no more results may come to carry it), ids first
            self.flush()
            if self.journal is not None:
                self.journal.commit()

    def _send(self, frames: list[bytes], to: bytes | None = None) -> None:
        to = to or self.distributor
        assert to is not None
        if len(self.outbox) >= _UNSENT_LIMIT:
            # The distributor re-issues what it never heard of; we re-ACK duplicates.
            self.outbox.popleft()
            self.drops.drop("ACK for an unreachable distributor, queue full")
            self.acks_lost = True
        self.outbox.append((to, frames))

    def finished_message(self) -> None:
        if self.run is not None and self.distributor is not None:
            self._send(self.codec.finished(self.run))
