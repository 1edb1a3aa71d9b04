"""Which kinds each socket accepts: one set per (role, socket), read by that socket's reader.

A message of any other kind is dropped and counted there (``protocol.decode`` checks it
before the body is built)."""

from __future__ import annotations

from . import wire as k  # the kinds

__all__ = [
    "COLLECTOR_FROM_DISTRIBUTOR",
    "COLLECTOR_RESULTS",
    "DISTRIBUTOR_CONTROL",
    "DISTRIBUTOR_FROM_COLLECTOR",
    "DISTRIBUTOR_FROM_WORKER",
    "DISTRIBUTOR_METADATA",
    "DISTRIBUTOR_PUSH",
    "METADATA_FROM_DISTRIBUTOR",
    "SERVICE_CLIENT",
    "SERVICE_FROM_CLIENT",
    "SERVICE_FROM_WORKER",
    "SERVICE_WORKER",
    "WORKER_FROM_DISTRIBUTOR",
]

# -- the distributor --------------------------------------------------------------------------
#: A task endpoint (ROUTER): what its workers send.
DISTRIBUTOR_FROM_WORKER = frozenset({k.READY, k.CREDIT, k.FAIL, k.HEARTBEAT, k.BYE, k.HANDBACK})
#: Its DEALER to the collector's ACK endpoint.
DISTRIBUTOR_FROM_COLLECTOR = frozenset({k.ACK, k.FINISHED, k.HELLO})
#: The metadata endpoint (ROUTER): the metadata worker's one message.
DISTRIBUTOR_METADATA = frozenset({k.META})
#: The control endpoint (ROUTER): operators' commands.
DISTRIBUTOR_CONTROL = frozenset({k.CONTROL})
#: The push endpoint (ROUTER): pushers' items.
DISTRIBUTOR_PUSH = frozenset({k.PUSH, k.PUSH_CLOSE})

# -- the collector ----------------------------------------------------------------------------
#: The results endpoint (PULL): workers' results.
COLLECTOR_RESULTS = frozenset({k.RESULT})
#: The ACK endpoint (ROUTER): its distributor (RESULT: results it served from its cache).
COLLECTOR_FROM_DISTRIBUTOR = frozenset({k.PING, k.START, k.SKIP, k.END, k.RESULT})

# -- workers ----------------------------------------------------------------------------------
#: A worker's DEALER to its task endpoint.
WORKER_FROM_DISTRIBUTOR = frozenset({k.WELCOME, k.DATA, k.ALIVE, k.RESET, k.END, k.RECALL})
#: The metadata worker's DEALER.
METADATA_FROM_DISTRIBUTOR = frozenset({k.META_OK})

# -- service mode -----------------------------------------------------------------------------
#: The service's frontend (ROUTER): clients' requests.
SERVICE_FROM_CLIENT = frozenset({k.REQUEST})
#: The service's backend (ROUTER): its workers.
SERVICE_FROM_WORKER = frozenset(
    {k.SREADY, k.WORKER_REPLY, k.WORKER_ERROR, k.HEARTBEAT, k.DISCONNECT}
)
#: A service worker's DEALER.
SERVICE_WORKER = frozenset({k.JOB, k.ALIVE, k.RESET, k.DISCONNECT})
#: A service client's DEALER.
SERVICE_CLIENT = frozenset({k.REPLY, k.REQUEST_ERROR})
