"""The class checks every role runs when it is subclassed: attribute types, typos of the
names a role reads (``endpoints`` for ``endpoint``), and the method a role requires."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ..types import EndpointAddress, TaskType

__all__ = ["check_class_attributes", "check_flag_name", "task_types"]


@dataclass(frozen=True)
class _Role:
    """What a user subclass of one role class may define."""

    #: The method a concrete subclass must override (``None``: nothing required).
    required: str | None
    #: Attributes that, all set, make a subclass concrete (a user base class sets none).
    concrete: tuple[str, ...]
    #: Public names the role knows: a user name close to one of these is a typo.
    known: tuple[str, ...]


_WORKER = (
    "task_type",
    "endpoint",
    "collector_endpoint",
    "security",
    "prefetch",
    "init_worker",
    "handle_execution",
    "run",
    "metadata",
)
_WORKER_ENDPOINTS = ("task_type", "endpoint", "collector_endpoint")

#: One row per role class, most specific first (the first found in a class's MRO wins).
_ROLES: dict[str, _Role] = {
    "Task": _Role(
        "handle",
        ("task_type", "endpoint"),
        (
            "task_type",
            "endpoint",
            "dependencies",
            "item_time_limit_s",
            "n_items",
            "max_attempts",
            "retry_backoff_s",
            "retry_for",
            "continue_after_error",
            "resumable",
            "resume",
            "sources",
            "derive",
            "collect_results",
            "open_ended",
            "handle",
            "items",
            "initialize",
            "is_available_for_handling",
            "is_complete",
            "metadata",
        ),
    ),
    "MultiThreadedWorker": _Role(
        "handle_thread_execution",
        _WORKER_ENDPOINTS,
        (*_WORKER, "n_threads", "init_thread", "handle_thread_execution"),
    ),
    "SingleThreadedWorker": _Role("handle_execution", _WORKER_ENDPOINTS, _WORKER),
    "Worker": _Role(None, _WORKER_ENDPOINTS, _WORKER),
    "MetaDataWorker": _Role(
        "get_metadata", ("endpoint",), ("endpoint", "security", "get_metadata", "run")
    ),
    "Collector": _Role(
        "handle_collection",
        ("endpoint", "ack_endpoint"),
        (
            "endpoint",
            "ack_endpoint",
            "security",
            "handle_collection",
            "handle_finished",
            "get_ack_data",
            "item_id",
            "journal",
            "metadata",
            "run",
        ),
    ),
    "ServiceWorker": _Role(
        "handle_message",
        ("task_type", "endpoint"),
        ("task_type", "endpoint", "security", "handle_message", "run"),
    ),
}
_TYPO_CUTOFF = 0.8


def _is_ours(cls: type) -> bool:
    return cls.__module__ == "zmqpipeline" or cls.__module__.startswith("zmqpipeline.")


def _role_of(cls: type) -> tuple[type, _Role] | None:
    """The library's role class ``cls`` derives from, and its row of :data:`_ROLES`."""
    for klass in cls.__mro__[1:]:
        if _is_ours(klass) and klass.__name__ in _ROLES:
            return klass, _ROLES[klass.__name__]
    return None


def _check_names(cls: type, owner: str, base: type, role: _Role) -> None:
    """Refuse a concrete class missing its required method, and names close to known ones."""
    inherited = {name for klass in cls.__mro__[1:] for name in vars(klass)}
    for name in vars(cls):
        if name.startswith("_") or name in inherited or name in role.known:
            continue
        close = difflib.get_close_matches(name, role.known, n=1, cutoff=_TYPO_CUTOFF)
        if close:
            raise TypeError(
                f"{owner}.{name} is not a {base.__name__} name; did you mean {close[0]!r}?"
            )
    concrete = all(getattr(cls, name, None) is not None for name in role.concrete)
    required = _required_method(cls, role)
    if required and concrete and getattr(cls, required) is getattr(base, required):
        raise TypeError(
            f"{owner} sets {', '.join(role.concrete)} but does not define "
            f"{required}(), which a {base.__name__} must implement"
        )


def _required_method(cls: type, role: _Role) -> str | None:
    """A stage (a Task with ``sources``) needs ``derive``; an open-ended Task needs
    neither ``handle`` nor ``derive`` (its items are pushed in)."""
    if role.required == "handle":
        if getattr(cls, "sources", None):
            return "derive"
        if getattr(cls, "open_ended", False):
            return None
    return role.required


def check_class_attributes(cls: type, owner: str) -> None:
    """Validate (and coerce plain ``str``) the role attributes a subclass defines.

    Raises ``TypeError`` naming the class and attribute when a value has the wrong type,
    when a concrete subclass (one whose endpoints and task type are set) does not define
    the method its role needs (``handle``, ``handle_execution``, ...), or when it defines
    a name close to one the role knows (``collector_endpiont``, ``handle_exection``).
    """
    for name in ("task_type",):
        value = cls.__dict__.get(name)
        if value is not None and not isinstance(value, TaskType):
            if not isinstance(value, str):
                raise TypeError(f"{owner}.{name} must be a TaskType, not {type(value).__name__}")
            setattr(cls, name, TaskType(value))
    for name in ("endpoint", "collector_endpoint", "ack_endpoint"):
        value = cls.__dict__.get(name)
        if value is not None and not isinstance(value, EndpointAddress):
            if not isinstance(value, str):
                raise TypeError(
                    f"{owner}.{name} must be an EndpointAddress, not {type(value).__name__}"
                )
            setattr(cls, name, EndpointAddress(value))
    found = None if _is_ours(cls) else _role_of(cls)
    if found is not None:
        _check_names(cls, owner, *found)


def task_types(cls: type, name: str, value: Any, single_ok: bool = False) -> list[TaskType]:
    """``value`` as a list of TaskType (with ``single_ok``, one TaskType alone is taken
    as a list of one); anything else is a TypeError naming the class and attribute."""
    if single_ok and isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{cls.__name__}.{name} must be a list of TaskType, not {type(value).__name__}"
        )
    coerced = []
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"{cls.__name__}.{name} holds {item!r}, not a TaskType")
        coerced.append(item if isinstance(item, TaskType) else TaskType(item))
    return coerced


#: The flags the library reads from a role's instance at run time.
_FLAGS = ("is_complete",)
_FLAG_CUTOFF = 0.85


def check_flag_name(cls: type, name: str) -> None:
    """An ``AttributeError`` if ``name``, a new attribute set on an instance of ``cls``,
    is a typo of a flag the library reads (``self.is_completed = True`` would otherwise
    hand out items for ever)."""
    close = difflib.get_close_matches(name, _FLAGS, n=1, cutoff=_FLAG_CUTOFF)
    if close and close[0] != name:
        raise AttributeError(
            f"{cls.__name__}.{name}: no such flag; did you mean {close[0]}? "
            f"(the distributor reads self.{close[0]})"
        )
