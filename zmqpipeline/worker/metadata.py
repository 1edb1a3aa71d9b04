"""``MetaDataWorker``: delivers one dict of metadata to a distributor before work starts."""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import zmq

from .. import protocol
from ..errors import MetadataError, ProtocolError
from ..runtime.runtime import Role, RoleRuntime, UserCodeError, call_user
from ..runtime.transport import recv_frames, send_frames
from ..runtime.waitlog import WaitLog
from ..settings import Settings
from ..types import EndpointAddress

__all__ = ["MetaDataWorker"]


logger = logging.getLogger("zmqpipeline.metadataworker")


class MetaDataWorker(Role):
    """Subclass, set ``endpoint`` and implement :meth:`get_metadata`; :meth:`run` sends the
    dict to a ``Distributor(receive_metadata=True, metadata_endpoint=...)`` and returns once
    the distributor has confirmed receipt (or on SIGINT/SIGTERM)."""

    endpoint: ClassVar[EndpointAddress]

    required = ("endpoint",)

    def __init__(self, *, settings: Settings | None = None) -> None:
        super().__init__(settings=settings)
        self.delivered = False

    def get_metadata(self) -> dict[str, Any]:
        """Return the metadata, a dict."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_metadata()")

    def run(self) -> None:
        """Send the metadata and return once the distributor has confirmed receipt.

        Raises ``TypeError`` if :meth:`get_metadata` returns anything but a dict, and
        :class:`~zmqpipeline.errors.MetadataError` (its traceback logged) if it raises.
        """
        try:
            metadata = call_user(logger, "get_metadata", self.get_metadata)
        except UserCodeError as exc:
            last = exc.text.strip().splitlines()[-1]
            raise MetadataError(
                f"{type(self).__name__}.get_metadata() raised ({last}): no metadata was sent"
            ) from None
        if not isinstance(metadata, dict):
            raise TypeError(
                f"{type(self).__name__}.get_metadata() must return a dict, "
                f"not {type(metadata).__name__}"
            )
        frames = protocol.Codec(self.settings.max_message_bytes).meta(metadata)
        with RoleRuntime("metadata worker", self.settings, logger) as rt:
            sock = rt.open(zmq.DEALER, self.endpoint, bind=False)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(rt.stop.fd, zmq.POLLIN)
            started = time.monotonic()
            wait_log = WaitLog(logger, started)
            while not self.delivered:
                # (Re)send: a distributor that restarted lost what we sent.
                try:
                    send_frames(sock, frames)
                except zmq.Again:
                    pass  # not connected yet
                events = dict(poller.poll(int(self.settings.liveness_s * 1000)))
                if rt.stop.fd in events:
                    logger.warning("stopped before the distributor confirmed the metadata")
                    return
                if sock in events:
                    self.delivered = self._confirmed(rt, sock)
                elif wait_log.due(now := time.monotonic()):
                    wait_log.log(
                        f"metadata worker: no answer from the distributor at {self.endpoint} "
                        f"for {now - started:.0f} s",
                        now,
                        key="silent",
                    )
            logger.info("metadata delivered to %s", self.endpoint)

    def _confirmed(self, rt: RoleRuntime, sock: zmq.Socket[Any]) -> bool:
        try:
            frames = recv_frames(sock, 2)
            if frames is None:
                return False
            msg = protocol.decode(
                frames, protocol.METADATA_FROM_DISTRIBUTOR, "from the distributor"
            )
        except ProtocolError as exc:
            rt.drops.drop(exc.category, exc.reason)
            return False
        return type(msg) is protocol.MetaOk
