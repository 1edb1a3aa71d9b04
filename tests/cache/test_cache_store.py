"""The cache file alone (no sockets): LRU eviction by bytes, expiry by a hand-held clock,
results for one run only, damaged, foreign and busy files refused, the keys."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from zmqpipeline import Cache, ConfigurationError, Task
from zmqpipeline.cache import CacheError, CacheStore
from zmqpipeline.cache.key import code_version, item_key
from zmqpipeline.cache.store import ROW_OVERHEAD_BYTES


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _size(key: bytes, task_type: str, result: bytes) -> int:
    return len(key) + len(task_type) + len(result) + ROW_OVERHEAD_BYTES


def test_a_result_comes_back_after_reopening(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c.sqlite", max_bytes=1 << 20)
    store.put(b"k" * 32, "T", b"result", run=1)
    store.close()
    again = CacheStore(tmp_path / "c.sqlite", max_bytes=1 << 20)
    assert again.get(b"k" * 32) == b"result"
    assert again.get(b"x" * 32) is None
    assert again.stats()["entries"] == 1
    again.close()


def test_least_recently_used_goes_first_past_the_bound(tmp_path: Path) -> None:
    clock = Clock()
    one = _size(b"a" * 32, "T", b"x" * 100)
    store = CacheStore(tmp_path / "c.sqlite", max_bytes=3 * one, clock=clock)
    for name in (b"a", b"b", b"c"):
        clock.now += 1
        store.put(name * 32, "T", b"x" * 100, run=1)
    clock.now += 1
    assert store.get(b"a" * 32) is not None  # a is now the most recently used
    clock.now += 1
    store.put(b"d" * 32, "T", b"x" * 100, run=1)  # one too many: b goes
    assert store.get(b"b" * 32) is None
    assert all(store.get(k * 32) is not None for k in (b"a", b"c", b"d"))
    assert store.total_bytes == 3 * one
    store.close()
    reopened = CacheStore(tmp_path / "c.sqlite", max_bytes=3 * one)
    assert reopened.total_bytes == 3 * one  # the count survives, from the file
    reopened.close()


def test_a_result_larger_than_the_bound_is_not_kept(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c.sqlite", max_bytes=200)
    store.put(b"a" * 32, "T", b"x" * 100, run=1)
    store.put(b"b" * 32, "T", b"x" * 1000, run=1)
    assert store.get(b"b" * 32) is None
    assert store.get(b"a" * 32) is not None  # and it evicted nothing for it
    store.close()


def test_expiry_after_a_duration_with_a_hand_held_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = CacheStore(tmp_path / "c.sqlite", max_bytes=1 << 20, clock=clock)
    store.put(b"a" * 32, "T", b"r", run=1)
    clock.now += 59
    assert store.get(b"a" * 32, max_age_s=60) == b"r"
    clock.now += 2
    assert store.get(b"a" * 32, max_age_s=60) is None
    assert store.get(b"a" * 32) is None  # removed, not only hidden
    assert store.total_bytes == 0
    store.close()


def test_results_for_one_run_only(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c.sqlite", max_bytes=1 << 20)
    store.put(b"a" * 32, "T", b"r", run=7)
    store.put(b"b" * 32, "U", b"r", run=7)
    assert store.get(b"a" * 32, run=7) == b"r"
    assert store.drop_runs(["T"], keep_run=8) == 1  # a later run drops run 7's T results
    assert store.get(b"a" * 32) is None
    assert store.get(b"b" * 32) == b"r"  # another task's are kept
    store.close()


def test_clear_one_task_type_or_all(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c.sqlite", max_bytes=1 << 20)
    for i in range(3):
        store.put(bytes([i]) * 32, "T", b"r", run=1)
    store.put(b"u" * 32, "U", b"r", run=1)
    assert store.clear("T") == 3
    assert store.stats()["tasks"].keys() == {"U"}
    assert store.clear() == 1
    assert store.stats()["entries"] == 0 and store.total_bytes == 0
    store.close()


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database, it is somebody's notes\n" * 100)
    before = path.read_bytes()
    with pytest.raises(CacheError, match=r"c\.sqlite is damaged or not a zmqpipeline cache"):
        CacheStore(path, max_bytes=1 << 20)
    assert path.read_bytes() == before


def test_a_foreign_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.execute("INSERT INTO invoices VALUES (1)")
    db.commit()
    db.close()
    with pytest.raises(CacheError, match=r"is not a zmqpipeline cache \(tables: invoices"):
        CacheStore(path, max_bytes=1 << 20)
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM invoices").fetchone() == (1,)
    db.close()


def test_a_damaged_cache_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    store = CacheStore(path, max_bytes=1 << 30)
    for i in range(2000):
        store.put(i.to_bytes(32, "big"), "T", b"r" * 200, run=1)
    store.close()
    raw = bytearray(path.read_bytes())
    assert len(raw) > 64 * 1024
    raw[len(raw) // 2 : len(raw) // 2 + 8192] = b"\xa5" * 8192  # pages in the middle
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="damaged"):
        CacheStore(path, max_bytes=1 << 30)


def test_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    CacheStore(path, max_bytes=1 << 20).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE info SET value = '99' WHERE key = 'format'")
    db.commit()
    db.close()
    with pytest.raises(CacheError, match="has format 99"):
        CacheStore(path, max_bytes=1 << 20)


def test_a_second_user_of_an_open_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    first = CacheStore(path, max_bytes=1 << 20)
    with pytest.raises(CacheError, match=r"c\.sqlite is in use by another distributor"):
        CacheStore(path, max_bytes=1 << 20)
    first.close()
    CacheStore(path, max_bytes=1 << 20).close()  # free again once closed


def test_cache_arguments_are_checked() -> None:
    assert Cache("d", expire=dt.timedelta(minutes=2)).expire_s == 120.0
    assert Cache("d", expire="run").this_run_only
    with pytest.raises(ValueError, match="expire"):
        Cache("d", expire=-1)
    with pytest.raises(ValueError, match="expire"):
        Cache("d", expire="tomorrow")
    with pytest.raises(ValueError, match="max_bytes"):
        Cache("d", max_bytes=0)
    with pytest.raises(TypeError, match="directory"):
        Cache("")


def test_the_key_holds_task_type_version_and_payload() -> None:
    base = item_key("T", "v1", b"payload")
    assert len(base) == 32
    assert item_key("T", "v1", b"payload") == base
    assert item_key("U", "v1", b"payload") != base
    assert item_key("T", "v2", b"payload") != base
    assert item_key("T", "v1", b"payload2") != base


def test_the_code_version_follows_the_source_or_the_explicit_version() -> None:
    class Explicit(Task):
        version = "2024-06"

    class Other(Task):
        version = "2024-07"

    assert code_version(Explicit) == "version:2024-06" != code_version(Other)

    class Bad(Task):
        version = 1.5  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match="version must be a str or an int"):
        code_version(Bad)
