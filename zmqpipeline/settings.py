"""Named defaults, each with its unit. No logic beyond reading overrides from the environment.

Every value can be overridden per process by an environment variable of the same name
prefixed with ``ZMQPIPELINE_`` (e.g. ``ZMQPIPELINE_HEARTBEAT_INTERVAL_S=0.1``), and per
role by the keyword arguments / class attributes the roles document.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import ConfigurationError
from .security import Security

__all__ = [
    "END_GRACE_S",
    "END_TIMEOUT_S",
    "HEARTBEAT_INTERVAL_S",
    "INITIAL_WINDOW",
    "ITEM_TIMEOUT_FACTOR",
    "ITEM_TIMEOUT_FLOOR_S",
    "LINGER_MS",
    "LIVENESS_MISSES",
    "MAX_ATTEMPTS",
    "MAX_CREDIT",
    "MAX_DEATHS",
    "MAX_IN_FLIGHT",
    "MAX_IN_FLIGHT_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_PREFETCH",
    "PREFETCH",
    "PREFETCH_WINDOW_S",
    "RESULT_BATCH_ITEMS",
    "RESULT_LINGER_S",
    "RETRY_BACKOFF_MAX_S",
    "RETRY_BACKOFF_S",
    "STAGE_BACKLOG",
    "Settings",
]

#: How often a worker and the distributor tell each other they are alive.
HEARTBEAT_INTERVAL_S = 0.5
#: A peer silent for ``HEARTBEAT_INTERVAL_S * LIVENESS_MISSES`` seconds is dead (2 s).
LIVENESS_MISSES = 4
#: Largest message any role accepts (enforced with ZMQ_MAXMSGSIZE) or sends.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: An item is tried at most this many times (user code raised, its worker died, or it ran
#: over its time limit); after the last failed try it is recorded as failed.
MAX_ATTEMPTS = 3
#: First retry waits this long; each further retry doubles it, up to the maximum.
RETRY_BACKOFF_S = 0.05
RETRY_BACKOFF_MAX_S = 2.0
#: Items a worker holds beyond one per thread, so the next is there when one finishes:
#: at least ``PREFETCH``, at most ``MAX_PREFETCH``, and in between as many as its threads
#: get through in ``PREFETCH_WINDOW_S`` plus two batches' linger (measured as it works):
#: credit is asked back with each batch of results. 10 ms items get about 22, empty items
#: 256 (room for two full batches of results, so each message and the wake-up it costs
#: on both sides is shared by many items); once a task is complete the fair tail evens
#: out what workers hold.
PREFETCH = 1
MAX_PREFETCH = 256
PREFETCH_WINDOW_S = 0.02
#: A worker holds its results and sends them (and the credit they free) together: when
#: it has nothing queued, when it holds ``RESULT_BATCH_ITEMS``, or when the oldest would
#: otherwise wait longer than 10 x one item's time, at least 2 ms and at most
#: ``RESULT_LINGER_S`` (20 ms for a task that feeds a stage, said in WELCOME). A batch
#: holds at most half the worker's credit, which covers two lingers. Fewer messages per
#: item: below the machine's per-message wake-up cost (benchmarks/RESULTS.md).
RESULT_LINGER_S = 0.1
RESULT_BATCH_ITEMS = 128
#: Items of one task handed out but not yet ACKed, at most (bounds distributor memory).
MAX_IN_FLIGHT = 10_000
#: Bytes of one task's big values (those travelling as frames, see
#: :mod:`zmqpipeline.protocol.frames`) handed out and not yet ACKed, at most; each of its
#: N workers holds at most 1/N of it (one item at least). Bounds the distributor's and
#: every worker's memory in bytes as ``MAX_IN_FLIGHT`` and credit bound it in items.
#: 0: no bound in bytes.
MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024
#: Items one worker may hold at once, whatever it asks for (threads + prefetch fit well
#: under it); a new worker starts at ``INITIAL_WINDOW`` and earns one more per item it
#: completes, so a peer that asks for much and does nothing holds little.
MAX_CREDIT = 1024
INITIAL_WINDOW = 64
#: An item whose workers died (or that ran over its time limit) this many times fails for
#: good; counted apart from ``MAX_ATTEMPTS``, which counts exceptions in user code.
MAX_DEATHS = 10
#: An item un-ACKed for ``ITEM_TIMEOUT_FACTOR`` x the p99 of its task's recent items, and
#: at least ``ITEM_TIMEOUT_FLOOR_S``, is handed out again even if its worker still beats
#: (its link to the collector may be cut). ``Task.item_time_limit_s`` overrides it.
ITEM_TIMEOUT_FACTOR = 20.0
ITEM_TIMEOUT_FLOOR_S = 30.0
#: Items derived for a streaming stage (or pushed into an open-ended task) waiting to be
#: handed out, at most: past it, the stage's sources hand out nothing new (backpressure)
#: and pushes are taken only as room frees up. Bounds the distributor's memory.
STAGE_BACKLOG = 10_000
#: How long closing a socket may wait to flush what it still holds.
LINGER_MS = 1000
#: How long the distributor waits for the collector to confirm the end of a run.
END_TIMEOUT_S = 5.0
#: After the end, how long the distributor still answers a worker that only now connects
#: (a worker started first retries its connection every 100 ms) with END, so it exits too.
#: ``zmqpipeline run`` keeps none once every worker it started was told the end.
END_GRACE_S = 0.3


@dataclass(frozen=True)
class Settings:
    """The tunables of one role; :meth:`from_env` applies ``ZMQPIPELINE_*`` overrides."""

    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    liveness_misses: int = LIVENESS_MISSES
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_attempts: int = MAX_ATTEMPTS
    retry_backoff_s: float = RETRY_BACKOFF_S
    retry_backoff_max_s: float = RETRY_BACKOFF_MAX_S
    prefetch: int = PREFETCH
    max_prefetch: int = MAX_PREFETCH
    prefetch_window_s: float = PREFETCH_WINDOW_S
    max_in_flight: int = MAX_IN_FLIGHT
    max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES
    result_linger_s: float = RESULT_LINGER_S
    result_batch_items: int = RESULT_BATCH_ITEMS
    max_credit: int = MAX_CREDIT
    initial_window: int = INITIAL_WINDOW
    max_deaths: int = MAX_DEATHS
    item_timeout_factor: float = ITEM_TIMEOUT_FACTOR
    item_timeout_floor_s: float = ITEM_TIMEOUT_FLOOR_S
    linger_ms: int = LINGER_MS
    end_timeout_s: float = END_TIMEOUT_S
    end_grace_s: float = END_GRACE_S
    stage_backlog: int = STAGE_BACKLOG
    #: CURVE keys for every tcp socket (``None``: plain tcp); from ``ZMQPIPELINE_CURVE_*``.
    security: Security | None = None
    #: Folder of the crash journals (``distributor.sqlite``, ``collector.sqlite``) of the
    #: roles that are not given a journal file (``None``: no journal); from
    #: ``ZMQPIPELINE_JOURNAL_DIR``. See docs/guides/surviving-crashes.md.
    journal_dir: str | None = None
    #: Where the distributor answers operators (``zmqpipeline status``); ``None``: nowhere.
    control_endpoint: str | None = None
    #: Where the distributor takes pushed items (``zmqpipeline push``); ``None``: nowhere.
    push_endpoint: str | None = None

    @property
    def liveness_s(self) -> float:
        """Seconds of silence after which a peer counts as dead."""
        return self.heartbeat_interval_s * self.liveness_misses

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """The defaults, then ``ZMQPIPELINE_<FIELD>`` environment variables, then
        ``overrides`` (an override of ``None`` is ignored). Invalid values raise
        :class:`~zmqpipeline.errors.ConfigurationError` naming the variable."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name == "security":
                continue
            raw = os.environ.get("ZMQPIPELINE_" + field.name.upper())
            if raw is None:
                continue
            if field.name in ("control_endpoint", "journal_dir", "push_endpoint"):  # text
                values[field.name] = raw or None
                continue
            kind = int if field.type in ("int", int) else float
            try:
                values[field.name] = kind(raw)
            except ValueError:
                raise ConfigurationError(
                    f"environment variable ZMQPIPELINE_{field.name.upper()}={raw!r} "
                    f"is not a valid {kind.__name__}"
                ) from None
        if overrides.get("security") is None:
            values["security"] = Security.from_env()
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(cls(), **values)
        for name in (
            "heartbeat_interval_s",
            "liveness_misses",
            "max_message_bytes",
            "max_attempts",
            "max_credit",
            "initial_window",
            "max_deaths",
            "item_timeout_factor",
            "item_timeout_floor_s",
            "stage_backlog",
        ):
            if getattr(settings, name) <= 0:
                raise ConfigurationError(f"setting {name} must be positive")
        for name in (
            "prefetch",
            "max_prefetch",
            "prefetch_window_s",
            "max_in_flight",
            "max_in_flight_bytes",
            "result_linger_s",
            "result_batch_items",
        ):
            if getattr(settings, name) < 0:
                raise ConfigurationError(f"setting {name} must not be negative")
        return settings
