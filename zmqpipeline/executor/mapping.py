"""``Executor.map``: how it cuts its input into items (:class:`MapFeed`: chunks, or
adaptive batches of quick calls), reads their results in order (:func:`map_results`),
and, with ``progress=True``, draws its calls with the progress code of ``zmqpipeline
run`` (:class:`zmqpipeline.cli.progress.Progress`: a bar with an ETA when the inputs
have a ``len()``, else a spinner with counts and rate; ``tqdm`` when it is installed and
the output a terminal, a line every few seconds when it is not)."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TextIO

from .batch import unpack

__all__ = [
    "BATCH_TARGET_S",
    "ITEMS_OUT_PER_THREAD",
    "MAP_BYTES_AHEAD",
    "OUT_S",
    "TAIL_MIN_S",
    "TAIL_PARTS",
    "MapFeed",
    "MapProgress",
    "argument_columns",
    "map_results",
    "size_of",
]

#: How often the bar is redrawn at most (a map may resolve 100 000 calls a second).
REDRAW_S = 0.1


def size_of(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The calls ``map`` makes over ``iterables`` (the shortest), if each has a ``len()``."""
    try:
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class MapProgress:
    """Counts one map's calls (submitted, resolved, failed) and shows them as a task
    named after the function."""

    def __init__(self, name: str, size: int | None, stream: TextIO | None = None) -> None:
        from ..cli.progress import Progress  # the command line's code, only when asked

        self.progress = Progress(stream or sys.stderr, quiet=False, interval_s=REDRAW_S)
        self.name = name
        self.size = size
        self.submitted = self.done = self.failed = 0
        self.drawn_at = 0.0

    def update(self, submitted: int, done: int, failed: int = 0) -> None:
        """The map's counts now; redrawn at most every :data:`REDRAW_S`."""
        self.submitted, self.done, self.failed = submitted, done, failed
        now = time.monotonic()
        if now - self.drawn_at >= REDRAW_S:
            self.drawn_at = now
            self.draw()

    def draw(self) -> None:
        self.progress.show(
            {
                self.name: {
                    "collected": self.done,
                    "failed": self.failed,
                    "in_flight": self.submitted - self.done - self.failed,
                    "handed_out": self.submitted,
                    "size": self.size,
                }
            }
        )

    def close(self) -> None:
        """The last counts, then the bar is removed."""
        self.draw()
        self.progress.clear()


#: Work an adaptive batch of ``map`` calls aims at on its worker: quick calls travel many
#: to an item (the caller's cost per item is what limits them), 10 ms calls ten to an
#: item (a worker's cost per item, some 0.1 ms, is then well under 1 % of its work),
#: calls of 0.1 s or more one to an item. The tail and the out limit keep such items
#: from making the workers end apart.
BATCH_TARGET_S = 0.1
#: When the map's size is known, its last calls go in smaller batches (guided
#: scheduling): at most what is left over this many items per worker thread, so the
#: workers end together rather than one finishing a big batch while the others idle.
TAIL_PARTS = 4
#: ... but none of less work than this: smaller, they would cost more (a message each)
#: than the workers' uneven end they save.
TAIL_MIN_S = 0.005
#: What of a map is out at once, once its calls' time is known (see MapFeed.out_limit):
#: this many items per worker thread, and beyond them calls to keep each busy this long.
OUT_S = 0.1
ITEMS_OUT_PER_THREAD = 3
#: Results of a map submitted and not yet read, at most, without a ``buffersize``: big
#: results are fewer calls ahead (the calls' count bounds small ones).
MAP_BYTES_AHEAD = 64 << 20
#: Items a map hands out at first, per worker thread, before its calls' time is known.
FIRST_ITEMS_PER_THREAD = 4
#: Weight of the latest batch in the estimate of a call's time.
_EWMA = 0.3

#: ``submit(columns, single)``: one item of the calls whose arguments are ``columns``
#: (one list per argument position, a value per call); ``single``: one call, sent alone.
Submit = Callable[[list[list[Any]], bool], "Future[Any]"]


def argument_columns(iterables: tuple[Iterable[Any], ...]) -> Callable[[int], list[list[Any]]]:
    """``take(n)``: the arguments of the next ``n`` calls (at most) over ``iterables``,
    in step, as columns (one list per iterable; ``[]`` once the shortest is exhausted). One
    iterable, the common case, is cut without a tuple per call."""
    if len(iterables) == 1:
        values = iter(iterables[0])

        def take_one(n: int) -> list[list[Any]]:
            column = list(itertools.islice(values, n))
            return [column] if column else []

        return take_one
    rows = zip(*iterables, strict=False)

    def take(n: int) -> list[list[Any]]:
        return [list(column) for column in zip(*itertools.islice(rows, n), strict=True)]

    return take


@dataclass
class MapFeed:
    """How ``map`` cuts its input into items and keeps a bounded window of them out.

    ``adaptive`` (without retries): items of as many calls as take about
    :data:`BATCH_TARGET_S` on a worker, from the time the worker reports for the last
    batches, and smaller ones at the end when ``total`` is known (:data:`TAIL_PARTS`);
    never fewer than ``chunksize``, and ``chunksize`` until the time is known.
    Otherwise items of ``chunksize`` calls (one: sent alone). The window: at most
    ``ahead_calls`` calls (fewer for big results: :meth:`window_calls`) and
    ``ahead_items`` items submitted and not yet read; and, for
    long items, a few out at once (:meth:`out_limit`). ``take``: the input, cut by
    :func:`argument_columns`."""

    take: Callable[[int], list[list[Any]]]
    submit: Submit
    chunksize: int
    adaptive: bool
    ahead_calls: int
    ahead_items: int
    threads: int
    pending: deque[tuple[Future[Any], int]] = field(default_factory=deque)
    calls_ahead: int = 0
    submitted: int = 0
    exhausted: bool = False
    call_s: float | None = None
    total: int | None = None  # the map's calls, when its inputs have a len()
    throttled: bool = False  # the last fill stopped at the out limit, not the window
    bytes_ahead: int | None = None  # results not yet read, at most (see window_calls)
    call_bytes: float | None = None  # a call's packed result, on average
    batch_timed: bool = False  # call_s comes from a batch's calls, not from lone calls

    def size(self) -> int:
        """Calls in the next item."""
        if not self.adaptive or self.call_s is None:
            return self.chunksize
        k = int(BATCH_TARGET_S / max(self.call_s, 1e-9))
        window = self.window_calls()
        spread = window // (FIRST_ITEMS_PER_THREAD * self.threads)  # all busy
        k = min(k, spread, window - self.calls_ahead)
        if self.total is not None:  # the tail in smaller items (see TAIL_PARTS)
            tail = -(-(self.total - self.submitted) // (TAIL_PARTS * self.threads))
            k = min(k, max(tail, int(TAIL_MIN_S / max(self.call_s, 1e-9))))
        return max(self.chunksize, k)

    def items_ahead(self, first: bool) -> int:
        """Items out at once: the window (adaptive batches: a first few, until their
        calls' time is known)."""
        if self.adaptive and first:
            return FIRST_ITEMS_PER_THREAD * self.threads
        return self.ahead_items

    def out_limit(self) -> tuple[int, int] | None:
        """``(items, calls)``: what may be out (submitted, not resolved) at once, once
        the calls' time is known: :data:`ITEMS_OUT_PER_THREAD` items per worker thread,
        and beyond them as many calls as keep every thread busy for :data:`OUT_S`. The
        rest waits here, so long items wait in the distributor to go to whichever worker
        frees first, not queued at one worker (``None``: no limit but the window).
        Counted in calls, not items: the items out are bigger than the next one (the
        tail shrinks), and a worker may hold several of them."""
        if not self.adaptive or self.call_s is None:
            return None
        items = self.threads * ITEMS_OUT_PER_THREAD
        if not self.batch_timed and self.call_s * self.size() >= TAIL_MIN_S:
            # Timed on the first lone calls only, which may be quicker than the rest (a
            # word count's first files were three times so): a few batches per thread,
            # not the whole map queued at whichever worker asked first. (Batches of
            # quick calls go out at once: queued, they cost the workers little.)
            return items, 0
        return items, int(self.threads * OUT_S / max(self.call_s, 1e-9))

    def fill(self, first: bool = False) -> None:
        """Submit items until the window is full (``first``: the opening few) or, for
        long items, enough are out (:meth:`out_limit`: then :attr:`throttled`)."""
        items = self.items_ahead(first)
        limit = self.out_limit()
        out: tuple[int, int] | None = None  # (items, calls) out, counted once
        self.throttled = False
        window = self.window_calls()
        while not self.exhausted and self.calls_ahead < window:
            if len(self.pending) >= items:
                return
            size = self.size()
            if limit is not None:
                if out is None:
                    running = [n for future, n in self.pending if not future.done()]
                    out = (len(running), sum(running))
                if out[0] >= limit[0] and out[1] + size > limit[1]:
                    self.throttled = True
                    return
            single = self.chunksize == 1 and not self.adaptive
            columns = self.take(1 if single else size)
            if not columns:
                self.exhausted = True
                return
            n = len(columns[0])
            future = self.submit(columns, single)
            self.pending.append((future, n))
            self.calls_ahead += n
            self.submitted += n
            if out is not None:
                out = (out[0] + 1, out[1] + n)

    def window_calls(self) -> int:
        """Calls submitted and not yet read at most: ``ahead_calls``, and, with
        ``bytes_ahead``, as many as hold that much of results at their size so far (a
        few per worker thread at least)."""
        if self.bytes_ahead is None or not self.call_bytes:
            return self.ahead_calls
        fit = int(self.bytes_ahead / self.call_bytes)
        return min(self.ahead_calls, max(FIRST_ITEMS_PER_THREAD * self.threads, fit))

    def learn(self, values: list[Any], spent: float, nbytes: int = 0) -> None:
        """A batch came back: ``spent`` seconds of its worker's time and ``nbytes`` of
        packed results for ``values``."""
        if values and nbytes:
            size, last = nbytes / len(values), self.call_bytes
            self.call_bytes = size if last is None else last + _EWMA * (size - last)
        if values and spent > 0:
            per_call = spent / len(values)
            last = None if len(values) > 1 and not self.batch_timed else self.call_s
            self.batch_timed = self.batch_timed or len(values) > 1  # the first batch: anew
            self.call_s = per_call if last is None else last + _EWMA * (per_call - last)


def map_results(feed: MapFeed, end: float | None, shown: MapProgress | None) -> Iterator[Any]:
    """The results of ``feed``'s calls, in order, refilling its window as they are read;
    what is still waiting is cancelled when the iterator is closed."""
    done = 0
    pending = feed.pending
    try:
        while pending:
            future, n = pending[0]
            left = None if end is None else end - time.monotonic()
            if feed.throttled and not future.done() and (left is None or left > 0):
                # Long items, a few out: refill as any of them resolves, not only the
                # oldest (a long first call would leave the other workers dry).
                out = [later for later, _ in pending if not later.done()]  # the oldest too
                cf.wait(out, left, cf.FIRST_COMPLETED)
                feed.fill()
                continue
            pending.popleft()
            feed.calls_ahead -= n
            try:
                result = future.result(left)
            except Exception as exc:
                if shown is not None and not isinstance(exc, TimeoutError):
                    shown.update(feed.submitted, done, 1)
                raise
            if feed.chunksize == 1 and not feed.adaptive:
                feed.fill()
                done += 1
                if shown is not None:
                    shown.update(feed.submitted, done)
                yield result
                continue
            packed, error, spent = result
            values = unpack(packed) if packed else []
            feed.learn(values, spent, len(packed))
            feed.fill()
            done += len(values)
            if shown is not None:
                shown.update(feed.submitted, done, error is not None)
            yield from values
            if error is not None:
                raise error
    finally:
        for future, _ in pending:
            future.cancel()
        if shown is not None:
            shown.close()
