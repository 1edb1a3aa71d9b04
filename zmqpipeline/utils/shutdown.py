"""Kept for scripts written against the 2014 API. No role needs it: every ``run()`` returns
and its process exits by itself when the run ends."""

from __future__ import annotations

import os
import sys

__all__ = ["kill_current_process"]


def kill_current_process() -> None:
    """End this process at once with status 0 (the 2014 examples called it after ``run()``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
