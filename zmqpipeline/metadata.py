"""``MetaDataWorker``: delivers one dict of metadata to a distributor before work starts."""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import zmq

from . import protocol
from .errors import ProtocolError
from .security import Security
from .settings import Settings
from .task import check_class_attributes
from .transport import StopSignal, new_context, open_socket
from .types import EndpointAddress

__all__ = ["MetaDataWorker"]

logger = logging.getLogger("zmqpipeline.metadataworker")


class MetaDataWorker:
    """Subclass, set ``endpoint`` and implement :meth:`get_metadata`; :meth:`run` sends the
    dict to a ``Distributor(receive_metadata=True, metadata_endpoint=...)`` and returns once
    the distributor has confirmed receipt (or on SIGINT/SIGTERM)."""

    endpoint: ClassVar[EndpointAddress]
    #: CURVE keys for this role's tcp sockets (``None``: the ``ZMQPIPELINE_CURVE_*``
    #: environment variables, or no security). See docs/security.md.
    security: ClassVar[Security | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_class_attributes(cls, cls.__name__)

    def __init__(self, *, settings: Settings | None = None) -> None:
        if getattr(self, "endpoint", None) is None:
            raise TypeError(f"{type(self).__name__} has no endpoint")
        self.settings = settings or Settings.from_env(security=self.security)
        self.delivered = False

    def get_metadata(self) -> dict[str, Any]:
        """Return the metadata, a dict."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_metadata()")

    def run(self) -> None:
        """Send the metadata and return once the distributor has confirmed receipt.

        Raises ``TypeError`` if :meth:`get_metadata` returns anything but a dict.
        """
        metadata = self.get_metadata()
        if not isinstance(metadata, dict):
            raise TypeError(
                f"{type(self).__name__}.get_metadata() must return a dict, "
                f"not {type(metadata).__name__}"
            )
        frames = protocol.Codec(self.settings.max_message_bytes).meta(metadata)
        ctx = new_context()
        stop = StopSignal()
        sock = open_socket(
            ctx,
            zmq.DEALER,
            self.endpoint,
            bind=False,
            settings=self.settings,
            role="metadata worker",
        )
        try:
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(stop.fd, zmq.POLLIN)
            sock.send_multipart(frames)
            resend_at = time.monotonic() + self.settings.liveness_s
            while not self.delivered:
                timeout = max(1, int((resend_at - time.monotonic()) * 1000))
                events = dict(poller.poll(timeout))
                if stop.fd in events:
                    logger.warning("stopped before the distributor confirmed the metadata")
                    return
                if sock in events:
                    try:
                        kind, body = protocol.decode(sock.recv_multipart())
                    except ProtocolError as exc:
                        logger.warning("dropped a reply from the distributor: %s", exc.reason)
                        continue
                    self.delivered = kind == protocol.META and not body
                elif time.monotonic() >= resend_at:
                    # A distributor that restarted lost what we sent; send it again.
                    try:
                        sock.send_multipart(frames, zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                    resend_at = time.monotonic() + self.settings.liveness_s
            logger.info("metadata delivered to %s", self.endpoint)
        finally:
            sock.close(linger=0)
            ctx.term()
            stop.close()
