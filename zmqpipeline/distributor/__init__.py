"""The distributor: hands out every task's items, watches its workers, ends the run.

Its loop and sockets are :mod:`.distributor` and :mod:`.links`; every decision is made by the
socket-free :class:`~.scheduler.Scheduler` and the parts it is built of (:mod:`.handout`,
:mod:`.liveness`, :mod:`.stages`), over the records of :mod:`.state`. Operators reach it
through :mod:`.control`, pushers through :mod:`.push`.
"""

from .control import Control
from .distributor import Distributor
from .push import Pusher
from .report import RunReport

__all__ = ["Control", "Distributor", "Pusher", "RunReport"]
