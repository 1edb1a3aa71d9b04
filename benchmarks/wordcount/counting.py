"""The work itself, shared by every way of running it (benchmarks/wordcount.py)."""

from __future__ import annotations

import os
from collections import Counter


def files(root: str) -> list[str]:
    """Every regular file under ``root``, sorted (symlinks not followed)."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append(path)
    return sorted(found)


def count_words(path: str) -> int:
    """The words (whitespace-separated) of the file at ``path``; a file that cannot be
    read counts none."""
    try:
        with open(path, "rb") as f:
            return len(f.read().decode("utf-8", errors="replace").split())
    except OSError:
        return 0


def word_frequencies(path: str) -> dict[str, int]:
    """How often each word (lower-cased) occurs in the file at ``path`` (``--frequencies``)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return {}
    return dict(Counter(text.lower().split()))
