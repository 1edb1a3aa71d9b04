"""Reading a journal's SQLite file directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def query_rows(path: Path, query: str) -> list[Any]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute(query)]
    finally:
        db.close()
