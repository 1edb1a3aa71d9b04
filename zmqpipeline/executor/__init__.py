"""``zmqpipeline.Executor``: the standard futures interface over zmqpipeline workers.

Functions travel by import name (``module:qualname``), arguments and results as
msgpack, never pickled. See docs/tutorial/executor.md.
"""

from __future__ import annotations

from .errors import RemoteError
from .executor import Executor

__all__ = ["Executor", "RemoteError"]
