"""``WaitLog``: how every role says it is waiting on a silent peer — at WARNING after a few
seconds, then less and less often while the same wait goes on, and quiet once it is over."""

from __future__ import annotations

import logging

__all__ = ["WAIT_LOG_FIRST_S", "WAIT_LOG_MAX_S", "WaitLog"]

#: The first warning comes after this long a wait...
WAIT_LOG_FIRST_S = 5.0
#: ... and the gap between warnings doubles up to this.
WAIT_LOG_MAX_S = 60.0


class WaitLog:
    """Warnings about one wait. Call :meth:`log` when the wait may have changed (at
    :attr:`next_at` at the latest); :meth:`clear` when the peer answered."""

    def __init__(self, logger: logging.Logger, now: float) -> None:
        self.logger = logger
        self.every = WAIT_LOG_FIRST_S
        self.next_at = now + WAIT_LOG_FIRST_S
        self.last: str | None = None

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def log(self, what: str | None, now: float, key: str | None = None) -> None:
        """Warn ``what`` (``None``: nothing waits any more); the same ``key`` (default:
        ``what``) as last time doubles the gap to the next warning."""
        if what is None:
            self.clear(now)
            return
        key = what if key is None else key
        if key == self.last:
            self.every = min(WAIT_LOG_MAX_S, self.every * 2)
        self.last = key
        self.logger.warning("%s", what)
        self.next_at = now + self.every

    def clear(self, now: float) -> None:
        self.every, self.last = WAIT_LOG_FIRST_S, None
        self.next_at = now + WAIT_LOG_FIRST_S
