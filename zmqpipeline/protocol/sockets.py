"""Which kinds each socket accepts: one set per (role, socket), read by that socket's reader.

A message of any other kind is dropped and counted there (``protocol.decode`` checks it
before the body is built)."""

from __future__ import annotations

from .wire import (
    ACK,
    ALIVE,
    BYE,
    CONTROL,
    CREDIT,
    DATA,
    DISCONNECT,
    END,
    FAIL,
    FINISHED,
    HANDBACK,
    HEARTBEAT,
    HELLO,
    JOB,
    META,
    META_OK,
    PING,
    PUSH,
    PUSH_CLOSE,
    READY,
    RECALL,
    REPLY,
    REQUEST,
    REQUEST_ERROR,
    RESET,
    RESULT,
    SKIP,
    SREADY,
    START,
    WELCOME,
    WORKER_ERROR,
    WORKER_REPLY,
)

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
DISTRIBUTOR_FROM_WORKER = frozenset({READY, CREDIT, FAIL, HEARTBEAT, BYE, HANDBACK})
#: Its DEALER to the collector's ACK endpoint.
DISTRIBUTOR_FROM_COLLECTOR = frozenset({ACK, FINISHED, HELLO})
#: The metadata endpoint (ROUTER): the metadata worker's one message.
DISTRIBUTOR_METADATA = frozenset({META})
#: The control endpoint (ROUTER): operators' commands.
DISTRIBUTOR_CONTROL = frozenset({CONTROL})
#: The push endpoint (ROUTER): pushers' items.
DISTRIBUTOR_PUSH = frozenset({PUSH, PUSH_CLOSE})

# -- the collector ----------------------------------------------------------------------------
#: The results endpoint (PULL): workers' results.
COLLECTOR_RESULTS = frozenset({RESULT})
#: The ACK endpoint (ROUTER): its distributor.
COLLECTOR_FROM_DISTRIBUTOR = frozenset({PING, START, SKIP, END})

# -- workers ----------------------------------------------------------------------------------
#: A worker's DEALER to its task endpoint.
WORKER_FROM_DISTRIBUTOR = frozenset({WELCOME, DATA, ALIVE, RESET, END, RECALL})
#: The metadata worker's DEALER.
METADATA_FROM_DISTRIBUTOR = frozenset({META_OK})

# -- service mode -----------------------------------------------------------------------------
#: The service's frontend (ROUTER): clients' requests.
SERVICE_FROM_CLIENT = frozenset({REQUEST})
#: The service's backend (ROUTER): its workers.
SERVICE_FROM_WORKER = frozenset({SREADY, WORKER_REPLY, WORKER_ERROR, HEARTBEAT, DISCONNECT})
#: A service worker's DEALER.
SERVICE_WORKER = frozenset({JOB, ALIVE, RESET, DISCONNECT})
#: A service client's DEALER.
SERVICE_CLIENT = frozenset({REPLY, REQUEST_ERROR})
