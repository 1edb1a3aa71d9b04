"""Service mode: live requests routed to service workers (see docs/tutorial/service.md).

``service`` owns the sockets of the :class:`Service`, ``broker`` its socket-free routing
decisions, ``worker`` the :class:`ServiceWorker`, ``client`` the :class:`ServiceClient`.
"""

from .client import ServiceClient
from .service import Service
from .worker import ServiceWorker

__all__ = ["Service", "ServiceClient", "ServiceWorker"]
