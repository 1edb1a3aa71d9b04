"""The result cache over real processes: ``zmqpipeline run`` (and role by role) twice or
more on one cache folder, and what ran again."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from cache_runs import RUN_TIMEOUT_S, CachePipeline, squares

from zmqpipeline.cache import FILE_NAME

INPUTS = list(range(1, 11))


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_second_run_hands_out_nothing_and_collects_every_result_cached(tmp_path: Path) -> None:
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS)
    first = pipe.run()
    _ok(first)
    assert pipe.executed() == squares(INPUTS)
    assert [s["cached"] for s in pipe.seen()] == [False] * 10
    first_seen = sorted((s["value"], s["square"], s["msgtype"]) for s in pipe.seen())

    second = pipe.run()
    _ok(second)
    assert pipe.executed() == []  # no worker ran anything
    seen = pipe.seen()
    assert [s["cached"] for s in seen] == [True] * 10  # handle_collection, told so, once each
    assert sorted((s["value"], s["square"], s["msgtype"]) for s in seen) == first_seen
    assert len({s["item_id"] for s in seen}) == 10
    assert pipe.collected()["finished"]["collected"] == {"SQUARE": 10}
    assert "(10 from the cache)" in second.stdout
    assert "collected 0 (0%) of 0 handed out" in second.stdout  # the worker got nothing


def test_a_changed_payload_runs_that_item_alone_again(tmp_path: Path) -> None:
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS)
    _ok(pipe.run())
    pipe.config["inputs"] = [40 if v == 4 else v for v in INPUTS]
    pipe.write_config()
    _ok(pipe.run())
    assert pipe.executed() == ["SQUARE 40"]
    fresh = [s["value"] for s in pipe.seen() if not s["cached"]]
    assert fresh == [40]
    assert sorted(s["value"] for s in pipe.seen() if s["cached"]) == [v for v in INPUTS if v != 4]


def test_a_changed_worker_source_runs_every_item_again(tmp_path: Path) -> None:
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS)
    _ok(pipe.run())
    pipe.edit_worker(
        '        return {"value": data["value"], "square": data["value"] * data["value"]}'
    )
    _ok(pipe.run())
    assert pipe.executed() == squares(INPUTS)
    assert not any(s["cached"] for s in pipe.seen())
    _ok(pipe.run())  # and the new code's results are cached in turn
    assert pipe.executed() == []


def test_an_explicit_version_is_the_code_version(tmp_path: Path) -> None:
    """With ``version`` set, a change of the source alone runs nothing again; a change of
    ``version`` runs everything."""
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS)
    source = pipe.folder / "pipeline.py"
    source.write_text(
        source.read_text().replace(
            "    max_attempts = 1\n", '    max_attempts = 1\n    version = "1"\n', 1
        )
    )
    _ok(pipe.run())
    pipe.edit_worker(
        '        return {"value": data["value"], "square": data["value"] ** 2}  # same'
    )
    _ok(pipe.run())
    assert pipe.executed() == []
    source.write_text(source.read_text().replace('version = "1"', 'version = "2"'))
    _ok(pipe.run())
    assert pipe.executed() == squares(INPUTS)


def test_results_expire_after_their_duration(tmp_path: Path) -> None:
    """The age is the file's own record: the test moves it back two hours rather than
    waiting (``expire`` is one hour)."""
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS, expire=3600)
    _ok(pipe.run())
    _ok(pipe.run())
    assert pipe.executed() == []  # fresh within the hour
    db = sqlite3.connect(tmp_path / "cache" / FILE_NAME)
    db.execute("UPDATE results SET stored_at = stored_at - 7200")
    db.commit()
    db.close()
    _ok(pipe.run())
    assert pipe.executed() == squares(INPUTS)
    assert not any(s["cached"] for s in pipe.seen())


def test_results_for_this_run_only_are_not_reused_by_the_next(tmp_path: Path) -> None:
    pipe = CachePipeline(tmp_path, tmp_path / "cache", [1, 2, 3, 2, 1], expire="run")
    _ok(pipe.run())
    executed = pipe.executed()
    # within the run a repeated payload may be served from the cache (if its first
    # result was in by then); across runs nothing is
    assert set(executed) == set(squares([1, 2, 3]))
    _ok(pipe.run())
    assert set(pipe.executed()) == set(squares([1, 2, 3]))


def test_a_failed_item_is_not_cached(tmp_path: Path) -> None:
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS, fail_on=[3])
    first = pipe.run()
    assert first.returncode == 1  # the item failed: the run says so
    assert pipe.executed() == squares(INPUTS)
    second = pipe.run()
    assert second.returncode == 1
    assert pipe.executed() == ["SQUARE 3"]  # tried again, the others came from the cache
    assert sorted(s["value"] for s in pipe.seen()) == [v for v in INPUTS if v != 3]
    assert all(s["cached"] for s in pipe.seen())


def test_a_corrupt_cache_file_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    garbage = b"\x13\x37 not a cache " * 400
    (cache / FILE_NAME).write_bytes(garbage)
    pipe = CachePipeline(tmp_path, cache, INPUTS)
    done = pipe.run()
    assert done.returncode == 2  # a role that cannot start: one line, exit 2 (docs/cli.md)
    output = done.stdout + done.stderr
    assert f"cache file {cache / FILE_NAME} is damaged or not a zmqpipeline cache" in output
    assert pipe.executed() == []
    assert (cache / FILE_NAME).read_bytes() == garbage  # never silently emptied


def test_a_second_distributor_on_the_same_cache_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    slow = CachePipeline(tmp_path / "a", cache, list(range(1, 21)), delay_s=0.2)
    other = CachePipeline(tmp_path / "b", cache, INPUTS)
    first = slow.start()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not slow.executed():  # a worker runs: the first distributor holds the cache
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run never started an item"
            time.sleep(0.05)
        refused = other.run()
        assert refused.returncode == 2  # its distributor cannot start: exit 2
        output = refused.stdout + refused.stderr
        assert f"cache file {cache / FILE_NAME} is in use by another distributor" in output
        assert other.executed() == []
        out, _ = first.communicate(timeout=RUN_TIMEOUT_S)
        assert first.returncode == 0, out  # the first one was not disturbed
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)
    _ok(other.run())  # free once the first has ended
    # its inputs are among the first run's, its code the same: all of them come cached
    assert other.executed() == []
    assert [s["cached"] for s in other.seen()] == [True] * 10


def test_cached_results_feed_a_stage_with_journals(tmp_path: Path) -> None:
    """A stage fed by a cached task gets every cached result, like a worker's; with
    journals, the next run (``--fresh``: the last one completed) is served the same."""
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS, stage=True)
    journal = str(tmp_path / "journal")
    _ok(pipe.run("--journal", journal))
    assert pipe.executed() == sorted([*squares(INPUTS), *(f"PLUS_ONE {v * v}" for v in INPUTS)])
    _ok(pipe.run("--journal", journal, "--fresh"))
    assert pipe.executed() == sorted(f"PLUS_ONE {v * v}" for v in INPUTS)  # the stage ran
    assert all(s["cached"] for s in pipe.seen("SQUARE"))
    assert sorted(s["value"] for s in pipe.seen("PLUS_ONE")) == sorted(v * v + 1 for v in INPUTS)
    assert not any(s["cached"] for s in pipe.seen("PLUS_ONE"))


def test_role_by_role_runs_share_the_cache(tmp_path: Path) -> None:
    pipe = CachePipeline(tmp_path, tmp_path / "cache", INPUTS)
    module = str(pipe.folder / "pipeline.py")

    def run_roles() -> None:
        pipe._reset()
        roles = [
            subprocess.Popen(pipe.command("collector", f"{module}:Gather"), cwd=pipe.folder),
            subprocess.Popen(pipe.command("worker", f"{module}:Square"), cwd=pipe.folder),
            subprocess.Popen(pipe.command("distributor", module), cwd=pipe.folder),
        ]
        try:
            for role in roles:
                assert role.wait(RUN_TIMEOUT_S) == 0
        finally:
            for role in roles:
                if role.poll() is None:
                    role.kill()
                    role.wait(5)

    run_roles()
    assert pipe.executed() == squares(INPUTS)
    run_roles()
    assert pipe.executed() == []
    assert [s["cached"] for s in pipe.seen()] == [True] * 10
