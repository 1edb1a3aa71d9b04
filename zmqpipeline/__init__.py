"""zmqpipeline: distribute a batch of work over ZeroMQ and collect every result exactly once.

Write a :class:`Task`, a worker (:class:`SingleThreadedWorker` or
:class:`MultiThreadedWorker`) and a :class:`Collector`; run a :class:`Distributor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .collector import Collector
from .distributor import Control, Distributor, Pusher, RunReport
from .errors import (
    ConfigurationError,
    ControlError,
    EndpointError,
    JournalError,
    ProtocolError,
    PushError,
    SerializationError,
    ServiceError,
    ZmqPipelineError,
)
from .security import Security
from .settings import Settings
from .task import Task
from .types import EndpointAddress, TaskType
from .utils.lazy import lazy_names
from .worker import MetaDataWorker, MultiThreadedWorker, SingleThreadedWorker

if TYPE_CHECKING:
    from .cache import Cache
    from .executor import Executor, RemoteError
    from .schedule import Backoff, Schedule, ScheduledTask, StopJob, UnsetJob
    from .service import Service, ServiceClient, ServiceWorker

#: Names imported on first use (a pipeline that does not use them does not pay for them:
#: ``import zmqpipeline`` starts every process of a run).
_LAZY = {
    "Cache": ".cache",
    "Executor": ".executor",
    "RemoteError": ".executor",
    "Backoff": ".schedule",
    "Schedule": ".schedule",
    "ScheduledTask": ".schedule",
    "StopJob": ".schedule",
    "UnsetJob": ".schedule",
    "Service": ".service",
    "ServiceClient": ".service",
    "ServiceWorker": ".service",
}

__all__ = [
    "Backoff",
    "Cache",
    "Collector",
    "ConfigurationError",
    "Control",
    "ControlError",
    "Distributor",
    "EndpointAddress",
    "EndpointError",
    "Executor",
    "JournalError",
    "MetaDataWorker",
    "MultiThreadedWorker",
    "ProtocolError",
    "PushError",
    "Pusher",
    "RemoteError",
    "RunReport",
    "Schedule",
    "ScheduledTask",
    "Security",
    "SerializationError",
    "Service",
    "ServiceClient",
    "ServiceError",
    "ServiceWorker",
    "Settings",
    "SingleThreadedWorker",
    "StopJob",
    "Task",
    "TaskType",
    "UnsetJob",
    "ZmqPipelineError",
    "__version__",
    "configureLogging",
]


__getattr__ = lazy_names(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def configureLogging(dict_config: dict[str, Any]) -> None:
    """Configure logging from a :func:`logging.config.dictConfig` dictionary."""
    import logging.config

    logging.config.dictConfig(dict_config)
