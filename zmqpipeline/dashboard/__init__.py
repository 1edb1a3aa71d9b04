"""A live dashboard in the browser and Prometheus metrics for a running pipeline
(``zmqpipeline dashboard ENDPOINT``, ``zmqpipeline metrics ENDPOINT``, ``zmqpipeline run
PATH --dashboard``). Standard library only, apart from ``/metrics``, which needs
``prometheus-client`` (``pip install 'zmqpipeline[dashboard]'``). See the dashboard guide.

    from zmqpipeline.dashboard import DashboardServer
    board = DashboardServer("ipc:///tmp/run/control.ipc", "127.0.0.1:8787")
    board.start(); print(board.url); ...; board.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_names

if TYPE_CHECKING:
    from .poller import POLL_INTERVAL_S, StatusPoller
    from .server import DashboardServer

__all__ = ["POLL_INTERVAL_S", "DashboardServer", "StatusPoller"]

#: Imported on first use: the CLI reads ``access`` for its defaults, and every command
#: (``zmqpipeline run`` too) would pay for ``http.server`` otherwise.
_LAZY = {"POLL_INTERVAL_S": ".poller", "StatusPoller": ".poller", "DashboardServer": ".server"}


__getattr__ = lazy_names(__name__, _LAZY, globals())
