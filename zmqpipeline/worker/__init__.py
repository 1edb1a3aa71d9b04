"""Workers: single-threaded (:mod:`.worker`), multi-threaded (:mod:`.threads`), and the
metadata worker (:mod:`.metadata`); their decisions are :class:`~.logic.WorkerLogic`."""

from .metadata import MetaDataWorker
from .threads import MultiThreadedWorker
from .worker import SingleThreadedWorker, Worker

__all__ = ["MetaDataWorker", "MultiThreadedWorker", "SingleThreadedWorker", "Worker"]
