"""Each tenant's share of a retry partition's buffer: the scheduler's pure decisions.

A tenant holds at most its share of the records buffered per retry-topic partition. A
record read over it is *deferred*: the scheduler keeps only its offset and due time (a
stub), reads on past it, and leaves the record itself in the log, uncommitted. Nothing is
written for it, so a tenant's storm costs the broker no writes while it waits, whoever is
behind it. When a stub comes due, the scheduler seeks back and reads it again to forward
it. A stub is written again (moved, due time kept) only when the commit behind it is held
too long: many records of others handled behind it, the partition's offsets past their
bound, or a wait that would outlive the topic's retention.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import orjson
from aiokafka.structs import ConsumerRecord

from webhook_stream.core import fetch

__all__ = [
    "CYCLE_S",
    "MOVED_HEADER",
    "STUBS_PER_BUFFER",
    "Intake",
    "Waiting",
    "cycled",
    "due_and_tenant",
    "intake",
    "live",
    "must_move",
]

#: A record at the front of a crowded buffer is not moved again sooner than this.
CYCLE_S = 2.0
#: Header of a moved record: when it was moved (ms since the epoch).
MOVED_HEADER = "ws-retry-moved-ms"
#: Offsets a partition may track (held, deferred, handled but not committed), in units
#: of its buffer: beyond it the commit front is moved so the prefix commits.
STUBS_PER_BUFFER = 10


class Intake(Enum):
    """What the scheduler does with a retry record it reads."""

    #: Buffered until due (or forwarded at once when due).
    HOLD = "hold"
    #: Its tenant holds its share of the partition's buffer: left in the log, read again
    #: when due (nothing written).
    DEFER = "defer"


@dataclass(slots=True)
class Waiting:
    """One offset of a retry partition, from the committed one to where reading got."""

    #: None once handled, and for a deferred record until it is read again.
    record: ConsumerRecord | fetch.Undecodable | None
    offset: int
    due_ms: int
    forwarded: bool = False
    #: Counted in its tenant's share of the partition's buffer (until handled).
    tenant: str | None = None
    #: To be moved once read (again).
    move: bool = False
    #: When a deferred record was written (ms): the topic keeps it for a limited time.
    written_ms: int = 0

    @property
    def deferred(self) -> bool:
        return self.record is None and not self.forwarded


def live(buf: deque[Waiting]) -> int:
    """Records held in memory (read, not yet handled)."""
    return sum(1 for w in buf if w.record is not None and not w.forwarded)


def intake(tenant: str | None, tenant_held: int, share: int, due_ms: int, now_ms: float) -> Intake:
    """Hold or defer one record whose tenant holds ``tenant_held`` records here.

    The operator's records (no tenant) are bounded by the partition's buffer only; a due
    record holds nothing (it is forwarded at once).
    """
    if tenant is None or tenant_held < share or due_ms <= now_ms:
        return Intake.HOLD
    return Intake.DEFER


def must_move(
    *,
    handled_behind: int,
    tracked: int,
    buffer: int,
    remaining_ms: float,
    waited_ms: float,
    stale_ms: float,
    horizon_ms: float,
) -> bool:
    """Whether a deferred record at the front of its partition is written again now.

    Only when something else needs its commit: at least half a buffer of other records
    handled behind it (a restart would send them all again), the partition's tracked
    offsets at their bound, or (not due within the horizon) a wait longer than the topic
    keeps records. A storm alone in its partition is never written again.
    """
    if tracked >= STUBS_PER_BUFFER * buffer:
        return True
    if handled_behind >= max(1, buffer // 2):
        return True
    return remaining_ms > horizon_ms and waited_ms > stale_ms


def due_and_tenant(record: ConsumerRecord) -> tuple[int, str | None]:
    """A retry record's due time (0: forward at once) and tenant (None: the operator's)."""
    try:
        doc = orjson.loads(record.value)
        due, tenant = doc.get("due_at_ms"), doc.get("tenant_id")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        due = tenant = None
    # A record without a due time (hand-written, or damaged) is forwarded at once; the
    # delivery path rejects it if it cannot be decoded.
    tenant = tenant if isinstance(tenant, str) else None
    return (int(due) if isinstance(due, int | float) else 0), tenant


def cycled(record: ConsumerRecord, now_ms: float) -> bool:
    """Not moved from a crowded front, or at least ``CYCLE_S`` ago."""
    for name, value in record.headers or ():
        if name == MOVED_HEADER:
            try:
                return now_ms - int(value) >= CYCLE_S * 1000
            except ValueError:
                return True
    return True
