"""A batch of ``map``'s calls travels as one packed value: its calls' arguments (a list
per argument position, a value per call: no list per call), and back the list of their
results, each msgpack-encoded once into ``bytes`` (with
the serializer's datetime and extension types) by the side that makes it and decoded once
by the side that reads it.

The distributor and the collector in between see one ``bytes`` value per batch, so what
they cost does not grow with the calls in it (they walk, re-encode and check every value of
an item otherwise). A value msgpack cannot carry is found only when packing fails, and
named then, as :func:`~zmqpipeline.executor.naming.check_arguments` names it for
``submit``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..utils.serializer import Packer, deserialize, find_unpackable
from .errors import describe
from .naming import check_arguments

__all__ = ["pack_arguments", "pack_results", "run_batch", "unpack"]

_PACK_ERRORS = (TypeError, ValueError, OverflowError)
_local = threading.local()  # a packer per thread (msgpack's are not thread-safe)


def _packer() -> Packer:
    packer: Packer | None = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = Packer()
    return packer


def unpack(raw: bytes | memoryview) -> Any:
    """A batch's value back from its bytes (a big one comes as a frame: a memoryview)."""
    return deserialize(raw if type(raw) is bytes else bytes(raw))


def pack_arguments(name: str, columns: list[list[Any]]) -> bytes:
    """The arguments of a batch of calls of ``name`` (``columns``: one list per argument
    position, a value per call), packed. ``TypeError`` naming the first argument msgpack
    cannot carry."""
    packer = _packer()
    try:
        return bytes(packer.fast(columns))
    except _PACK_ERRORS as exc:
        packer.reset()
        for args in zip(*columns, strict=True):
            check_arguments(name, args, {})
        raise TypeError(f"cannot send the arguments of {name}: {exc}") from None


def pack_results(results: list[Any]) -> tuple[bytes, Exception | None]:
    """``results`` packed, and ``None``; or, when one cannot be packed, those before it
    packed, and the ``TypeError`` that names it."""
    packer = _packer()
    try:
        return bytes(packer.fast(results)), None
    except _PACK_ERRORS:
        packer.reset()
    for index, value in enumerate(results):
        try:
            packer.fast(value)
        except _PACK_ERRORS as exc:
            packer.reset()
            return bytes(packer.fast(results[:index])), TypeError(_returned(value, exc))
    return bytes(packer.fast(results)), None  # pragma: no cover - packed whole above


def _returned(value: Any, exc: Exception) -> str:
    found = find_unpackable(value)
    if found is None:
        return f"the function returned a value msgpack cannot carry: {exc}"
    path, kind = found
    where = "" if path == "value" else f" at {path}"
    return f"the function returned a {kind}{where}, which msgpack cannot carry"


def run_batch(fn: Callable[..., Any], data: dict[str, Any]) -> dict[str, Any]:
    """Run a batch item's calls in order (until one raises); its outcome: ``'r'`` the
    packed results, ``'d'`` the seconds they took, ``'x'`` the first error, if any."""
    results: list[Any] = []
    error: Exception | None = None
    started = time.perf_counter()
    try:  # what the calls returned before one raised stays in results
        results.extend(map(fn, *unpack(data["b"])))
    except Exception as exc:
        error = exc
    spent = time.perf_counter() - started
    packed, unpackable = pack_results(results)
    error = unpackable or error  # a result that cannot travel comes before the raise
    outcome: dict[str, Any] = {"i": data["i"], "r": packed, "d": spent}
    if error is not None:
        outcome["x"] = describe(error)
    return outcome
