"""The live progress of ``zmqpipeline run``: a bar with an ETA when every task declares its
size (``n_items`` or ``__len__``), else a spinner with counts and rate.

It draws with ``tqdm`` when that is installed (``pip install 'zmqpipeline[progress]'``) and
the output is a terminal, with a plain ``\\r`` line otherwise, and a line every few seconds
when the output is not a terminal. Output of the pipeline's processes goes through
:meth:`Progress.echo`, which prints it above the bar, so the bar is never torn.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any, TextIO

__all__ = ["Progress", "progress_line"]

_PLAIN_EVERY_S = 2.0
_SPINNER = "|/-\\"
_BAR_WIDTH = 24
#: No rate before this much work time: a first count over a few ms means nothing.
_MIN_RATE_S = 1.0


def _totals(tasks: dict[str, dict[str, Any]]) -> tuple[int, int, int, int | None]:
    """Collected, failed, in flight, and the declared size of all tasks (``None`` if any
    task declares none)."""
    collected = sum(t["collected"] for t in tasks.values())
    failed = sum(t["failed"] for t in tasks.values())
    in_flight = sum(t["in_flight"] for t in tasks.values())
    sizes: list[int | None] = [t.get("size") for t in tasks.values()]
    known = [s for s in sizes if s is not None]
    size = sum(known) if sizes and len(known) == len(sizes) else None
    return collected, failed, in_flight, size


def progress_line(tasks: dict[str, dict[str, Any]], elapsed: float, tick: int = 0) -> str:
    """One status line for ``summary['tasks']`` after ``elapsed`` seconds of work."""
    collected, failed, in_flight, size = _totals(tasks)
    # This run's items only: a resumed run's earlier part is not in its rate.
    before = sum(t.get("collected_before", 0) for t in tasks.values())
    rate = (collected - before) / elapsed if elapsed >= _MIN_RATE_S else 0.0  # too soon
    counts = f"{collected:,} collected"
    if failed:
        counts += f", {failed:,} failed"
    counts += f", {in_flight:,} in flight"
    if size:
        done = min(1.0, (collected + failed) / size)
        bar = "#" * int(done * _BAR_WIDTH)
        left = size - collected - failed
        eta = f"ETA {left / rate:.1f} s" if rate > 0 and left > 0 else "ETA -"
        return (
            f"[{bar:<{_BAR_WIDTH}}] {done:4.0%} {collected + failed:,}/{size:,} "
            f"| {counts} | {rate:,.0f} items/s | {elapsed:.1f} s | {eta}"
        )
    speed = f"{rate:,.0f} items/s" if rate else "- items/s"
    return f"{_SPINNER[tick % len(_SPINNER)]} {counts} | {speed} | {elapsed:.1f} s" + _stages(tasks)


def _stages(tasks: dict[str, dict[str, Any]]) -> str:
    """With streaming stages, each task's count: the chain's progress at a glance."""
    if not any("backlog" in t for t in tasks.values()):
        return ""
    return " | " + " > ".join(
        f"{tt} {t['collected']:,}" + (f" (+{t['backlog']:,} queued)" if t.get("backlog") else "")
        for tt, t in tasks.items()
    )


class Progress:
    """Shows ``summary['tasks']`` as it comes; prints other output above it."""

    def __init__(
        self, stream: TextIO, quiet: bool, tty: bool | None = None, interval_s: float = 0.25
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = (stream.isatty() if tty is None else tty) and not quiet
        self.lock = threading.Lock()
        # The report's clock starts at the first item handed out, some time within the
        # last progress interval before the first summary that shows one.
        self.started: float | None = None
        self.interval_s = interval_s
        self.last_plain = time.monotonic()
        self.text = ""
        self.ticks = 0
        self._tqdm: Any = None
        self._tqdm_class: Any = None
        if self.tty:
            try:  # optional: pip install 'zmqpipeline[progress]'
                self._tqdm_class = importlib.import_module("tqdm").tqdm
            except ImportError:
                pass

    def show(self, tasks: dict[str, dict[str, Any]], elapsed: float | None = None) -> None:
        """Draw the counts of ``summary['tasks']``; ``elapsed``: the run's own clock (the
        report's wall time, for the last line), else the time since the first item."""
        if self.quiet:
            return
        if self.started is None:
            if not any(t["handed_out"] for t in tasks.values()) and elapsed is None:
                return
            self.started = time.monotonic() - self.interval_s / 2
        if elapsed is None:
            elapsed = time.monotonic() - self.started
        else:
            self.last_plain = 0.0  # the last line is always written
        self.ticks += 1
        with self.lock:
            if self._tqdm_class is not None:
                self._show_tqdm(tasks)
            elif self.tty:
                self._draw(progress_line(tasks, elapsed, self.ticks))
            elif time.monotonic() - self.last_plain >= _PLAIN_EVERY_S:
                self.last_plain = time.monotonic()
                self.stream.write(progress_line(tasks, elapsed, self.ticks) + "\n")
                self.stream.flush()

    def _show_tqdm(self, tasks: dict[str, dict[str, Any]]) -> None:
        collected, failed, in_flight, size = _totals(tasks)
        if self._tqdm is None:
            self._tqdm = self._tqdm_class(
                total=size, unit="item", file=self.stream, dynamic_ncols=True, leave=False
            )
        self._tqdm.n = collected + failed
        self._tqdm.set_postfix(failed=failed, in_flight=in_flight, refresh=False)
        self._tqdm.refresh()

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(len(self.text)))
        self.stream.flush()
        self.text = text

    def _erase(self) -> None:
        if self.text:
            self.stream.write("\r" + " " * len(self.text) + "\r")
            self.text = ""

    def echo(self, line: str, target: TextIO) -> None:
        """Write ``line`` (a process's output) to ``target``, above the bar."""
        with self.lock:
            if self._tqdm is not None:
                self._tqdm.clear()
                target.write(line + "\n")
                target.flush()
                self._tqdm.refresh()
                return
            text = self.text
            if text:
                self._erase()
                self.stream.flush()
            target.write(line + "\n")
            target.flush()
            if text:
                self._draw(text)

    def clear(self) -> None:
        """Remove the bar before the report."""
        with self.lock:
            if self._tqdm is not None:
                self._tqdm.close()
                self._tqdm = None
            elif self.tty:
                self._erase()
                self.stream.flush()
