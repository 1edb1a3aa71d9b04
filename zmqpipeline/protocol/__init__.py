"""The wire protocol: every frame any role sends or receives is built and parsed here.

Every message is two frames (a ROUTER adds the peer's identity in front); DATA and RESULT
may carry up to 16 more, each a big value of an item or a result whose place in the body
holds a placeholder (see :mod:`zmqpipeline.protocol.frames`)::

    +---------+------+   +--------------------------+
    | VERSION | KIND |   | msgpack body (a list)    |
    +---------+------+   +--------------------------+
      1 byte   1 byte      one shape per KIND, below    [ frame 0 ] [ frame 1 ] ...

Each kind travels one way (or, for END, from one sender to two roles) with one body shape,
and decodes to one immutable record with named fields (the class named in the table).

Batch pipeline (``W`` worker, ``D`` distributor, ``C`` collector, ``M`` metadata worker).
The distributor's DEALER talks to the collector's ROUTER at the ACK endpoint; workers push
results to the collector's PULL at its endpoint.

=========  =====  ===========================================================
kind       route  body (record fields)
=========  =====  ===========================================================
READY      W→D    task_type, capacity, free, threads join / re-join; credit
WELCOME    D→W    run, metadata, options             accepted: start working
DATA       D→W    run, items: [[seq, payload], ...], tokens  items; tokens of their seqs
CREDIT     W→D    n                                  n more items may be sent
FAIL       W→D    seq, error, exc_types              user code raised on seq
HEARTBEAT  W→D    worker_id                          the worker is alive
ALIVE      D→W    (empty)                            the distributor is alive
RESET      D→W    (empty)                            unknown worker: READY again
BYE        W→D    seqs                               leaving; hands back items
RECALL     D→W    n                                  hand back up to n unstarted items
HANDBACK   W→D    seqs                               the items RECALL asked for
END        D→W,C  run, summary                       the run is over
RESULT     W→C    run, task_type, worker_id, items: [[seq, result], ...], tokens
PING       D→C    run                                the distributor is alive
HELLO      C→D    collector_id                       answers PING: the collector is up
START      D→C    run, metadata, task_types, forward, quiet, key  a run begins
SKIP       D→C    run, task_type, seq                seq failed for good
ACK        C→D    run, groups: [[task_type, worker_id, seqs, ack_data, errors, results,
                  firsts], ...]  (columns: see :func:`ack_group`)
FINISHED   C→D    run                                handle_finished has run
META       M→D    metadata                           the run's metadata
META_OK    D→M    (empty)                            metadata received
=========  =====  ===========================================================

Service mode (``C`` client, ``S`` service, ``SW`` service worker); see
:mod:`zmqpipeline.service`:

=============  ======  ====================================================
kind           route   body (record fields)
=============  ======  ====================================================
SREADY         SW→S    task_type                  free, holds nothing: route to me
REQUEST        C→S     request_id, task_type, data
JOB            S→SW    client, request_id, data   ``client``: routing id
WORKER_REPLY   SW→S    client, request_id, data   also: the worker is free again
REPLY          S→C     request_id, data
WORKER_ERROR   SW→S    client, request_id, error  handle_message raised
REQUEST_ERROR  S→C     request_id, error          worker error or refusal
HEARTBEAT      SW→S    worker_id
ALIVE          S→SW    (empty)
RESET          S→SW    (empty)                    unknown worker: SREADY again
DISCONNECT     S↔SW    (empty)                    the service stops / worker leaves
=============  ======  ====================================================

Operating a run (``O`` an operator: ``zmqpipeline status ...`` or :class:`zmqpipeline.Control`),
on the distributor's control endpoint; see :mod:`zmqpipeline.distributor.control`:

=============  =====  ====================================================
kind           route  body (record fields)
=============  =====  ====================================================
CONTROL        O→D    request_id, command, args      status, pause, ... (a dict of args)
CONTROL_REPLY  D→O    request_id, ok, body           the new state, the status, or the error
=============  =====  ====================================================

Streaming stages (see :mod:`zmqpipeline.distributor.stages`): START's ``forward`` lists the task
types whose results feed a stage, ``quiet`` those whose results the collector does not pass
to ``handle_collection``; for a ``forward`` type, an item's first ACK carries the worker's
result in its ``results`` column (``None`` on every other ACK, duplicates included).

Pushing items into an open-ended task (``P`` a pusher: ``zmqpipeline push`` or
:class:`zmqpipeline.Pusher`), on the distributor's push endpoint; see
:mod:`zmqpipeline.distributor.push`:

==========  =====  ======================================================
kind        route  body (record fields)
==========  =====  ======================================================
PUSH        P→D    request_id, task_type, items    items: a list of dicts
PUSH_CLOSE  P→D    request_id, task_type           no more items: the task may finish
PUSH_REPLY  D→P    request_id, ok, error, accepted accepted: items taken
==========  =====  ======================================================

An item's id is ``(task_type, seq)``; ``seq`` counts from 0 per task type and run. Each item
handed out carries a token (:mod:`~zmqpipeline.protocol.tokens`): a RESULT counts only for
items handed out to the worker it names. Decoding is also bounded in total elements and
nesting (:mod:`~zmqpipeline.protocol.bounds`).

Decoding is bounded before anything is built: the whole message's size is checked against
the kind's byte limit, and msgpack refuses any array, map, string or binary longer than
the kind's shape allows (a "bomb" of tiny elements is refused at its first header).
Anything malformed raises :class:`~zmqpipeline.errors.ProtocolError`: callers drop and
count it. A peer speaking another protocol version is refused the same way.

To add a kind: a record class, a number, a line in ``SPECS`` (fields' types and limits),
a builder on :class:`Codec`, and a line in the table above.
"""

from . import bounds, records, sockets, tokens, wire
from .bounds import check_elements
from .codec import Codec, ack_group
from .records import *  # noqa: F403  (every record, named in records.__all__)
from .sockets import *  # noqa: F403  (the kinds each socket accepts)
from .tokens import ItemTokens, new_key
from .wire import *  # noqa: F403  (kinds, limits, decode, named in wire.__all__)

__all__ = ["Codec", "ItemTokens", "ack_group", "bounds", "check_elements", "new_key", "tokens"]
__all__ += records.__all__
__all__ += sockets.__all__
__all__ += wire.__all__
