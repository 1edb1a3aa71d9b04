"""A result whose dict has a key the receiver refuses (not ``str`` or ``bytes``) fails its
item at once with the reason naming where the key is, over real processes
(``zmqpipeline run``): before, the collector dropped the message and the run hung."""

from __future__ import annotations

import time

import pytest
from support.cli import edit, write_pipeline, zmqpipeline


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("{'counts': {1: 'x'}}", "a dict key of type int (1) at ['counts']"),
        ("{'pairs': [{(1, 2): 'x'}]}", "a dict key of type tuple ((1, 2)) at ['pairs'][0]"),
        # a list no receiver decodes (2 000 000 ints, ~10 MB: under the message limit)
        ("{'v': list(range(2_000_000))}", "a list of 2000000 elements: over the limit of"),
    ],
)
def test_a_result_with_a_non_string_key_fails_its_item_at_once(tmp_path, value, named):
    folder = write_pipeline(tmp_path / "keys", n_items=10)
    edit(
        folder / "worker.py",
        "return {'i': data['i']}",
        f"return {value} if data['i'] == 4 else {{'i': data['i']}}",
    )
    started = time.monotonic()
    result = zmqpipeline("run", str(folder), timeout=30)
    took = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "FAILED CLI_JOB/3 (not retried)" in result.stdout, out
    assert named in result.stdout, out
    assert "COLLECTED [1, 2, 3, 5, 6, 7, 8, 9, 10]" in result.stdout, out
    assert took < 15, f"the run took {took:.1f} s"


def test_an_item_with_a_non_string_key_fails_at_once_on_the_distributor(tmp_path):
    """The worker would refuse the DATA message (it decodes string keys only): the
    distributor fails the item before it goes, naming the key, and the run goes on."""
    folder = write_pipeline(tmp_path / "keys", n_items=10)
    edit(
        folder / "tasks.py",
        "return {'i': self.n}",
        "return {'i': self.n, 'counts': {1: 'x'}} if self.n == 4 else {'i': self.n}",
    )
    started = time.monotonic()
    result = zmqpipeline("run", str(folder), timeout=30)
    took = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "FAILED CLI_JOB/3" in result.stdout, out
    assert "item 3 of task type 'CLI_JOB' holds a dict key of type int (1) at ['counts']" in out
    assert "COLLECTED [1, 2, 3, 5, 6, 7, 8, 9, 10]" in result.stdout, out
    assert took < 15, f"the run took {took:.1f} s"
