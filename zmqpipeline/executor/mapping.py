"""``Executor.map(..., progress=True)``: the map's own calls drawn by the progress code of
``zmqpipeline run`` (:class:`zmqpipeline.cli.progress.Progress`: a bar with an ETA when
the inputs have a ``len()``, else a spinner with counts and rate; ``tqdm`` when it is
installed and the output a terminal, a line every few seconds when it is not)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["MapProgress", "size_of"]

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
