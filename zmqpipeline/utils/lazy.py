"""Names a package imports on first use (PEP 562): what a process does not use, it does
not pay for at start-up (``import zmqpipeline`` starts every process of a run)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, names: dict[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each name of ``names`` imported from its module
    (relative to ``package``) the first time it is asked for, and kept in ``namespace``
    (the package's globals) from then on."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
