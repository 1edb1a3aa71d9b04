"""The collector: every result handed to ``handle_collection`` once, ACKed to the distributor.

Its loop is :mod:`.collector`; its decisions (dedupe, which distributor to follow, early
results, ACK batching) are the socket-free :class:`~.logic.CollectorLogic`.
"""

from .collector import Collector
from .logic import CollectorLogic

__all__ = ["Collector", "CollectorLogic"]
