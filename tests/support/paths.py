"""Where things are: the repository (``ROOT``, for ``PYTHONPATH`` and ``examples/``) and
the tests folder (``TESTS``, which holds ``support/``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROOT", "TESTS"]

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
