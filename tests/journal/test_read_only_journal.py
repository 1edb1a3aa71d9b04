"""A journal in a folder it cannot write (issue 28): refused saying so, not "(is another
process using it?)". As root a read-only tmpfs (mounted by the test), else a chmod."""

from __future__ import annotations

import os
import subprocess

import pytest
from edges_helpers import is_root

from zmqpipeline import JournalError
from zmqpipeline.journal import CollectorJournal, DistributorJournal


@pytest.mark.parametrize("kind", [DistributorJournal, CollectorJournal])
def test_a_read_only_journal_folder_is_refused_saying_why(tmp_path, kind):
    folder = tmp_path / "ro"
    folder.mkdir()
    if is_root():
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], check=True
        )
        expected = "read-only file system"
    else:
        os.chmod(folder, 0o500)
        expected = "permission denied"
    try:
        with pytest.raises(JournalError) as refused:
            kind(folder / "j.sqlite")
    finally:
        if is_root():
            subprocess.run(["umount", "-l", str(folder)], check=False)
        else:
            os.chmod(folder, 0o700)
    text = str(refused.value)
    assert text.startswith(f"journal {folder / 'j.sqlite'} cannot be used: "), text
    assert expected in text and "another process" not in text
