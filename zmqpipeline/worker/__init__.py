"""Workers: the loop (:mod:`.worker`), single-threaded (:mod:`.single`), multi-threaded
(:mod:`.threads`), and the metadata worker (:mod:`.metadata`); their decisions are
:class:`~.logic.WorkerLogic`."""

from .metadata import MetaDataWorker
from .single import SingleThreadedWorker
from .threads import MultiThreadedWorker
from .worker import Worker

__all__ = ["MetaDataWorker", "MultiThreadedWorker", "SingleThreadedWorker", "Worker"]
