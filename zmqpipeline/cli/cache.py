"""``zmqpipeline cache DIR stats`` and ``zmqpipeline cache DIR clear [TASK_TYPE]``: look
into a result cache (:class:`~zmqpipeline.Cache`), or empty it."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..cache import FILE_NAME, CacheStore
from ..cache.cache import Cache
from ..errors import UsageError
from .args import add_command

__all__ = ["add_cache_command"]


def add_cache_command(subparsers: Any) -> None:
    """Add the ``cache`` command to the ``zmqpipeline`` parser's subcommands."""
    cache = add_command(subparsers, "cache", _cmd_cache)
    cache.add_argument("directory", metavar="DIR", help=f"the cache's folder (holds {FILE_NAME})")
    cache.add_argument(
        "action", choices=("stats", "clear"), help="stats: what it holds; clear: remove results"
    )
    cache.add_argument(
        "task_type",
        metavar="TASK_TYPE",
        nargs="?",
        help="clear only this task type's results (default: all)",
    )


def _cmd_cache(args: argparse.Namespace) -> int:
    """show or clear a result cache (zmqpipeline.Cache)

    stats: the results a cache folder holds, per task type, their bytes and the file's
    size on disk. clear [TASK_TYPE]: remove its results (of one task type only, if
    given), so that those items run again. A cache in use by a running distributor is
    refused (one process at a time).
    """
    if args.action == "stats" and args.task_type:
        raise UsageError("cache DIR stats takes no TASK_TYPE (clear does)")
    path = Cache(args.directory).path
    store = CacheStore(path, max_bytes=1 << 62, create=False)
    try:
        if args.action == "clear":
            gone = store.clear(args.task_type)
            which = f" of task type {args.task_type}" if args.task_type else ""
            print(f"removed {gone} result(s){which} from {path}")
        else:
            _print_stats(store.stats())
    finally:
        store.close()
    return 0


def _print_stats(stats: dict[str, Any]) -> None:
    print(f"cache {stats['path']}")
    print(
        f"  {stats['entries']} result(s), {_size(stats['bytes'])} stored, "
        f"{_size(stats['file_bytes'])} on disk"
    )
    if not stats["tasks"]:
        return
    print(f"  {'task type':<20} {'results':>9} {'stored':>10}  {'oldest':<19}  last used")
    for task_type, t in stats["tasks"].items():
        print(
            f"  {task_type:<20} {t['entries']:>9} {_size(t['bytes']):>10}  "
            f"{_when(t['oldest']):<19}  {_when(t['last_used'])}"
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # not reached


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
