"""zmqpipeline: distribute a batch of work over ZeroMQ and collect every result exactly once.

Write a :class:`Task`, a worker (:class:`SingleThreadedWorker` or
:class:`MultiThreadedWorker`) and a :class:`Collector`; run a :class:`Distributor`.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from ._version import __version__
from .cache import Cache
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
from .executor import Executor, RemoteError
from .schedule import Backoff, Schedule, ScheduledTask, StopJob, UnsetJob
from .security import Security
from .service import Service, ServiceClient, ServiceWorker
from .settings import Settings
from .task import Task
from .types import EndpointAddress, TaskType
from .worker import MetaDataWorker, MultiThreadedWorker, SingleThreadedWorker

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


def configureLogging(dict_config: dict[str, Any]) -> None:
    """Configure logging from a :func:`logging.config.dictConfig` dictionary."""
    logging.config.dictConfig(dict_config)
