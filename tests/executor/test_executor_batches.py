"""How ``map`` sends its calls, over real worker processes: a batch's arguments and
results travel packed (every type the serializer carries, big batches as frames, a
result that cannot travel named after the earlier ones); long calls are spread over the
workers (each runs about half, seen through the pids the calls return), also right
after quick calls and in chunks; and the sizes the adaptive batches are cut to."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import executor_funcs as f
import pytest

from zmqpipeline import Executor
from zmqpipeline.executor.mapping import (
    BATCH_TARGET_S,
    ITEMS_OUT_PER_THREAD,
    MAP_BYTES_AHEAD,
    OUT_S,
    TAIL_MIN_S,
    TAIL_PARTS,
    MapFeed,
    argument_columns,
)


@pytest.fixture(scope="module")
def ex() -> Iterator[Executor]:
    with Executor(workers=2) as executor:
        _both_joined(executor)
        yield executor


def _both_joined(ex: Executor) -> None:
    """Wait until both workers have run calls (the second may join a little later)."""
    deadline = time.monotonic() + 30
    while len(set(ex.map(f.pid_after, [0.02] * 4))) < 2:
        assert time.monotonic() < deadline, "the second worker never ran a call"


VALUES: list[Any] = [
    None,
    True,
    -(2**63),
    2**64 - 1,
    1.5,
    "text é",
    b"\x00bytes",
    [1, [2, [3]]],
    {"k": {"nested": [1, "x"]}},
    dt.datetime(2026, 12, 7, 1, 2, 3, 456),
    dt.date(2026, 12, 7),
    dt.timedelta(days=1, seconds=2, microseconds=3),
]


def test_a_batch_carries_every_type_the_serializer_does(ex: Executor) -> None:
    values = VALUES * 5
    assert list(ex.map(f.same, values, chunksize=7)) == values  # one argument
    assert list(ex.map(f.sleep_then, [0] * len(values), values, chunksize=4)) == values
    assert list(ex.map(f.same, values)) == values  # adaptive batches


def test_a_big_batch_travels_as_a_frame(ex: Executor) -> None:
    blobs = [bytes([i % 256]) * 4096 for i in range(200)]  # 400 KiB a batch, both ways
    assert list(ex.map(f.same, blobs, chunksize=100)) == blobs


def test_a_result_that_cannot_travel_fails_after_the_earlier_ones(ex: Executor) -> None:
    got = []
    with pytest.raises(TypeError, match="returned a object"):
        for value in ex.map(f.object_at, range(20), [13] * 20, chunksize=20):
            got.append(value)
    assert got == list(range(13))


def _even(pids: list[int]) -> Counter[int]:
    counts = Counter(pids)
    assert len(counts) == 2, f"the calls ran on {dict(counts)}"
    assert min(counts.values()) >= len(pids) // 4, f"one worker ran most: {dict(counts)}"
    return counts


def test_long_calls_are_spread_over_both_workers_after_quick_ones(ex: Executor) -> None:
    # The workers have just run quick calls (they would hold 32 more each); the chunks of
    # long calls still go half to each, not all to the first that asks.
    assert list(ex.map(f.square, range(20_000))) == [i * i for i in range(20_000)]
    _even(list(ex.map(f.pid_after, [0.05] * 24, chunksize=4)))  # 6 chunks of 0.2 s
    assert sum(ex.map(f.square, range(20_000), chunksize=1000)) > 0
    _even(list(ex.map(f.pid_after, [0.02] * 40)))  # adaptive: a few calls an item
    assert sum(ex.map(f.square, range(20_000))) > 0
    _even([fu.result(timeout=30) for fu in [ex.submit(f.pid_after, 0.02) for _ in range(40)]])


def _cut(total: int | None, call_s: float | None, n: int = 1000, chunksize: int = 1) -> list[int]:
    """The batch sizes an adaptive map cuts ``n`` calls of ``call_s`` into (the first
    8192, its window, when no result is read). The feed's
    own logic, driven directly: its ``submit`` records each batch instead of sending it
    and resolves it at once (cutting needs no socket), and the calls' time is set as the
    workers would report."""
    sizes: list[int] = []

    def submit(columns: list[list[Any]], single: bool) -> Future[Any]:
        sizes.append(len(columns[0]))
        done: Future[Any] = Future()
        done.set_result((b"", None, 0.0))  # resolved, not read: only the window binds
        return done

    feed = MapFeed(argument_columns((range(n),)), submit, chunksize, True, 8192, 8192, 2)
    feed.total, feed.call_s = total, call_s
    while not feed.exhausted and feed.calls_ahead < 8192:
        feed.fill()  # (long items: a few out at a time, and these resolve at once)
    assert sum(sizes) == min(n, 8192)
    return sizes


def test_adaptive_batches_aim_at_a_time_and_shrink_at_the_tail() -> None:
    sizes = _cut(1000, 0.01)
    per_item = int(BATCH_TARGET_S / 0.01)
    assert sizes[0] == per_item and max(sizes) == per_item
    assert sizes[-4:] == [1, 1, 1, 1]  # the last ones alone: the workers end together
    assert sizes == sorted(sizes, reverse=True)
    left = 1000 - sum(sizes[:-1])
    assert sizes[-1] <= max(1, -(-left // (TAIL_PARTS * 2)))
    assert set(_cut(None, 0.01)) == {per_item}  # no len(): no tail to shrink
    assert _cut(1000, 1.0) == [1] * 1000  # long calls: one an item
    assert max(_cut(100_000, 1e-7, n=100_000)) == 8192 // 8  # quick ones: the window's part
    assert set(_cut(8192, 1e-7, n=8192)) == {1024}  # and no smaller tail: it would cost more
    one_ms = _cut(1000, 0.001)  # 1 ms calls: items of 5 ms at least (but the very last)
    assert min(one_ms[:-1]) == int(TAIL_MIN_S / 0.001) and one_ms[-1] <= 5


def test_a_chunksize_is_the_least_a_batch_holds() -> None:
    assert set(_cut(1000, None, chunksize=10)) == {10}  # the time not known yet
    assert set(_cut(1000, 1.0, chunksize=10)) == {10}  # long calls: as asked, to the end
    quick = _cut(100_000, 1e-7, n=100_000, chunksize=10)
    assert min(quick) >= 10 and max(quick) == 8192 // 8  # quick calls: more to an item


def _held_submits() -> tuple[list[Future[Any]], Any]:
    """A feed's ``submit`` that keeps each item's future unresolved, and those futures."""
    out: list[Future[Any]] = []

    def submit(columns: list[list[Any]], single: bool) -> Future[Any]:
        out.append(Future())
        return out[-1]

    return out, submit


def test_long_items_wait_here_a_few_out_per_worker_thread() -> None:
    # Same direct drive: items of 0.1 s, 2 worker threads. Out at once: what keeps each
    # thread busy for OUT_S, 3 at least; one more goes out as soon as any one resolves
    # (not only the oldest), while done-but-unread ones do not count.
    out, submit = _held_submits()
    feed = MapFeed(argument_columns((range(1000),)), submit, 1, True, 8192, 8192, 2)
    feed.call_s, feed.batch_timed = 0.01, True  # timed on a batch's calls
    feed.fill()
    assert len(out) == 2 * ITEMS_OUT_PER_THREAD and feed.throttled
    out[3].set_result((b"", None, 0.05))  # a later one resolves first
    feed.fill()
    assert len(out) == 2 * ITEMS_OUT_PER_THREAD + 1 and feed.throttled
    feed.call_s = 1e-7  # quick calls: the window, not the out limit, bounds them
    feed.fill()
    assert not feed.throttled and feed.exhausted and feed.calls_ahead == 1000


def test_lone_calls_time_only_the_first_batches_and_what_is_out_counts_in_calls() -> None:
    # A word count over /usr/share/doc (benchmarks/wordcount.py): its first files, timed
    # alone, were three times quicker than the rest, and its map queued nearly all its
    # calls at once, most at one worker (which ended 0.4 s after the other).
    out, submit = _held_submits()
    feed = MapFeed(argument_columns((range(5000),)), submit, 1, True, 8192, 8192, 2)
    feed.total = 5000
    feed.learn([None], 100e-6)  # a lone call: 0.1 ms
    feed.fill()
    assert len(out) == 2 * ITEMS_OUT_PER_THREAD and feed.throttled  # a few, whatever size
    feed.learn([None] * 500, 500 * 300e-6)  # the first batch: 0.3 ms a call
    assert feed.call_s == pytest.approx(300e-6)  # taken anew, not blended with the lone
    # Late in a map: six items of 100 calls out (0.1 s each), the next one small. What
    # is out is counted in calls: 600 already keep both threads busy for over OUT_S, so
    # nothing more goes out (counted in items of the next size, 40 could).
    late = MapFeed(argument_columns((range(1000),)), submit, 1, True, 8192, 8192, 2)
    late.total, late.submitted, late.call_s, late.batch_timed = 1000, 990, 1e-3, True
    for _ in range(2 * ITEMS_OUT_PER_THREAD):
        late.pending.append((Future(), 100))
        late.calls_ahead += 100
    assert late.size() == int(TAIL_MIN_S / 1e-3) and 600 > 2 * OUT_S / 1e-3
    before = len(out)
    late.fill()
    assert len(out) == before and late.throttled


def test_waiting_on_long_calls_keeps_the_caller_idle(ex: Executor) -> None:
    # map waits on any of its few items out (not only the oldest, here the longest, while
    # the later ones finish on the other worker): it sleeps on them, it does not spin. The
    # caller's CPU time (all its threads) stays far under the wall time.
    wall, cpu = time.perf_counter(), time.process_time()
    assert len(list(ex.map(f.pid_after, [0.02] * 8 + [1.0] + [0.02] * 40))) == 49
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert wall >= 1.0 and cpu < 0.25 * wall, f"{cpu:.3f} s of CPU in {wall:.3f} s"


def test_big_results_are_fewer_calls_ahead() -> None:
    # Same direct drive: once results are known to be 1 MiB a call, a map keeps 64 MiB of
    # them ahead (unread), not its window of calls; small ones, the window.
    def submit(columns: list[list[Any]], single: bool) -> Future[Any]:
        return Future()

    feed = MapFeed(argument_columns((range(10**6),)), submit, 1, True, 32768, 32768, 2)
    feed.bytes_ahead, feed.call_s = MAP_BYTES_AHEAD, 1e-7
    feed.learn([None] * 10, 1e-6, 10 << 20)
    feed.fill()
    assert feed.calls_ahead == MAP_BYTES_AHEAD >> 20 == 64
    feed.call_bytes = 8.0
    feed.fill()
    assert feed.calls_ahead == 32768


def test_an_executor_worker_holds_results_briefly_and_calls_by_their_time() -> None:
    # What executor workers run with, whatever the environment says: results held 2 ms
    # at most (each resolves a future), credit between 1 and 32 calls beyond one per
    # thread for 20 ms of calls; a shorter linger asked for is kept.
    from dataclasses import replace

    from zmqpipeline import Settings
    from zmqpipeline.executor.worker import (
        EXECUTOR_LINGER_S,
        EXECUTOR_PREFETCH,
        EXECUTOR_QUEUE_S,
        executor_settings,
    )

    mine = executor_settings(replace(Settings(), prefetch=100, max_prefetch=1000))
    assert mine.result_linger_s == EXECUTOR_LINGER_S == 0.002
    assert (mine.prefetch, mine.max_prefetch) == (1, EXECUTOR_PREFETCH)
    assert mine.prefetch_window_s == EXECUTOR_QUEUE_S
    assert executor_settings(replace(Settings(), result_linger_s=0.0)).result_linger_s == 0.0
