"""Parked read-back shares: what one tenant and one endpoint may hold of ``MAX_PARKED_HELD``.

Copies read back from ``webhooks.parked`` wait in their endpoint's lane. A rate-limited
lane holds each for up to 100 s, so without a share one tenant's copies would fill the
read-back budget and every other tenant's parked copies would wait behind them.

Over its share, a copy is *deferred*, not rewritten: it is not held, the partition's
committed offset stays below it (its tracker entry stays unfinished), and the reader goes
on past it. Once its endpoint and tenant have room again, the partition is sought back
to the endpoint's first deferred copy and read again; copies taken already are skipped on
that re-read (:meth:`ReadBack.fresh`), so each is held once. Nothing new is durable: after
a crash the next owner reads from the committed offset, below every deferred copy, in log
order. Order: once a copy of an endpoint is deferred, every later copy of it read before
the seek back is deferred too, so an endpoint's copies are held in the log's order (strict
or not). A strict head (back from a retry) is always held.

The re-reads cost fetches, not writes; they are bounded by :data:`RESEEK_S` per partition,
and the stretch read past the earliest deferred copy by :attr:`Shares.window` (a memory
bound: the offsets finished past it are kept until the commit passes them).

A full window waits for the endpoint whose deferred copy is the earliest (it *pins* it)
only while that endpoint drains: once it has pinned it for :data:`PATIENCE_S` and, at the
rate its copies finished meanwhile, its deferred copies would take longer than
:data:`DRAIN_S` (:func:`overflows`), they are dead-lettered (reason
:data:`PARKED_BACKLOG`, replayable): the partition is sought back to the first of them and
each is written to ``webhooks.deadletter`` as it is read again; its copies read after the
window are decided as usual. All of them, not only enough to make room: what stays would
pin the window again at once, and the copies delivered keep their order (every copy
dead-lettered is older than every copy of the endpoint held later). A strict endpoint
the same: a dead letter is a final outcome. So one slow endpoint (a rate limit, a slow
receiver) delays another endpoint's parked copies by seconds, not by its backlog.

Pure decisions (:func:`readback`, :func:`due`, :func:`overflows`) and the per-partition
bookkeeping; the seek and the dead letters are made by
:class:`~webhook_stream.delivery.parking.Parking`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from aiokafka import TopicPartition

from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import PARKED
from webhook_stream.delivery.lanes import Tracked

__all__ = [
    "DRAIN_S",
    "PARKED_BACKLOG",
    "PATIENCE_S",
    "RESEEK_S",
    "EndpointShare",
    "ReadBack",
    "Shares",
    "Verdict",
    "due",
    "overflows",
    "readback",
]

#: A partition is sought back at most this often (each re-read fetches its stretch again;
#: a seek is due only once half a share is free, so each brings that many back).
RESEEK_S = 0.05
#: A full window waits this long for the endpoint pinning it before judging its rate.
PATIENCE_S = 2.0
#: An endpoint whose deferred copies in a full window would take longer than this (at the
#: rate it finished copies while pinning it) has them dead-lettered.
DRAIN_S = 30.0
#: The dead-letter reason of those copies.
PARKED_BACKLOG = "parked_backlog"


class Verdict(Enum):
    HOLD = "hold"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class Shares:
    """The read-back shares in effect."""

    per_tenant: int
    #: Copies read past the earliest deferred copy of a partition before it waits.
    window: int
    #: While fewer than this many copies are held in all, an endpoint may hold up to its
    #: own share (:attr:`EndpointShare.own`) beyond the tenant's: a lone burst drains at
    #: full speed, and half of the usable budget stays for the shares of others.
    spare: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Shares:
        held = settings.max_parked_held
        # A quarter at most: four tenants cannot fill it, one cannot come near it.
        tenant = max(1, min(settings.max_parked_held_per_tenant, held // 4))
        return cls(tenant, 10 * held, held // 4)


class EndpointShare(NamedTuple):
    """What one endpoint's copies may hold: its own share, its tenant and the tenant's."""

    endpoint: int
    tenant: str | None
    per_tenant: int
    #: Its own share (of the pending budget; a rate-limited one what its rate starts in
    #: 10 s), not capped by the tenant's: what it may hold from the spare room.
    own: int = 0
    #: :attr:`Shares.spare`.
    spare: int = 0


def readback(
    share: EndpointShare,
    endpoint_held: int,
    tenant_held: int,
    *,
    head: bool,
    behind: bool,
    total_held: int = 0,
) -> Verdict:
    """Hold a copy read back, or defer it (it is read again once there is room).

    ``behind``: an earlier copy of the endpoint was deferred and not read again yet; this
    one must not overtake it. Endpoints without a tenant are bounded per endpoint only.
    """
    if head:
        return Verdict.HOLD
    if behind:
        return Verdict.DEFER
    if total_held < share.spare and endpoint_held < share.own:
        return Verdict.HOLD
    if endpoint_held >= share.endpoint:
        return Verdict.DEFER
    if share.tenant is not None and tenant_held >= share.per_tenant:
        return Verdict.DEFER
    return Verdict.HOLD


def due(share: EndpointShare, endpoint_held: int, tenant_held: int, total_held: int = 0) -> bool:
    """Worth reading an endpoint's deferred copies again: at most half of each share held
    (or of its own share, while at most half of the spare room is used)."""
    if share.spare and 2 * total_held <= share.spare and 2 * endpoint_held <= share.own:
        return True
    if endpoint_held > share.endpoint // 2:
        return False
    return share.tenant is None or tenant_held <= share.per_tenant // 2


def overflows(deferred: int, finished: int, pinned_s: float) -> bool:
    """Dead-letter the ``deferred`` copies of the endpoint pinning a full window for
    ``pinned_s``, ``finished`` of its copies ending meanwhile: not before
    :data:`PATIENCE_S`, then when at that rate they would take longer than :data:`DRAIN_S`.

    Counted as if one more had just finished: a few copies behind one slow attempt (a
    receiver answering in 5 s) are not judged on a 2 s look; they go once even that
    rate would not drain them in :data:`DRAIN_S`.
    """
    if pinned_s < PATIENCE_S or deferred <= 0:
        return False
    return deferred * pinned_s > DRAIN_S * (finished + 1)


class _Partition:
    __slots__ = (
        "by_endpoint",
        "deferred",
        "evict",
        "first",
        "low",
        "next",
        "pin",
        "pin_done",
        "pinned_at",
        "seen",
        "sought",
    )

    def __init__(self, start: int) -> None:
        #: Offsets read (the highest + 1) and the next one the reader reads.
        self.seen = start
        self.next = start
        #: Deferred copies not read again yet: offset -> (tracker entry, endpoint id).
        self.deferred: dict[int, tuple[Tracked, str]] = {}
        #: How many of them per endpoint.
        self.by_endpoint: dict[str, int] = {}
        #: Per endpoint with deferred copies in this pass: the first of them.
        self.first: dict[str, int] = {}
        self.sought = 0.0
        #: The lowest offset in ``deferred`` when known (None: to be computed again).
        self.low: int | None = None
        #: The endpoint pinning a full window, since when, and its copies finished since.
        self.pin: str | None = None
        self.pinned_at = 0.0
        self.pin_done = 0
        #: Endpoints whose deferred copies below an offset are dead-lettered when read again.
        self.evict: dict[str, int] = {}

    def lowest(self) -> int | None:
        if self.low is None and self.deferred:
            self.low = min(self.deferred)
        return self.low


class ReadBack:
    """Per-tenant and per-endpoint counts of held copies, and deferred copies per partition."""

    def __init__(self, shares: Shares, clock: Callable[[], float] = time.monotonic) -> None:
        self.shares = shares
        self._clock = clock
        self._parts: dict[int, _Partition] = {}
        self._by_endpoint: dict[str, int] = {}
        self._by_tenant: dict[str, int] = {}
        self._holders: dict[Tracked, tuple[str, str | None]] = {}
        #: Backlogs found overflowing since last asked: (partition, endpoint id, copies).
        self.overflowed: list[tuple[int, str, int]] = []

    # -- assignment ------------------------------------------------------------------------

    def assigned(self, partition: int, start: int) -> None:
        """Reading ``partition`` of ``webhooks.parked`` starts at ``start``."""
        self._parts[partition] = _Partition(start)

    def revoked(self, partitions: Iterable[int] | None) -> None:
        """Forget ``partitions`` (all: None); their deferred copies are read by a next owner.

        Their held copies stop counting now: a drain that times out drops queued copies
        without finishing them, and a count left behind would hold a share for ever.
        """
        parts = set(self._parts) if partitions is None else set(partitions)
        for p in parts:
            self._parts.pop(p, None)
        for entry in [e for e in self._holders if e.tp.partition in parts]:
            self.finished(entry)

    # -- reading ---------------------------------------------------------------------------

    def fresh(self, tp: TopicPartition, offset: int) -> bool:
        """False for a parked copy read again that was taken already (skip it)."""
        part = self._parts.get(tp.partition) if tp.topic == PARKED else None
        if part is None:
            return True
        part.next = offset + 1
        if offset >= part.seen:
            part.seen = offset + 1
            return True
        return offset in part.deferred

    def entry(self, tp: TopicPartition, offset: int) -> Tracked | None:
        """The tracker entry of a deferred copy read again (None: first read)."""
        part = self._parts.get(tp.partition) if tp.topic == PARKED else None
        found = part.deferred.pop(offset, None) if part is not None else None
        if found is None or part is None:
            return None
        if part.low == offset:
            part.low = None
        _drop(part.by_endpoint, found[1])
        return found[0]

    def dead_letters(self, partition: int, offset: int, endpoint_id: str) -> bool:
        """True for a deferred copy read again whose endpoint's backlog overflowed."""
        part = self._parts.get(partition)
        return part is not None and offset < part.evict.get(endpoint_id, -1)

    def take(self, entry: Tracked, endpoint_id: str, share: EndpointShare, *, head: bool) -> bool:
        """Hold the copy of ``entry`` (True) or let it go (False)."""
        part = self._parts.get(entry.tp.partition)
        behind = part is not None and endpoint_id in part.first
        held_t = self._by_tenant.get(share.tenant, 0) if share.tenant is not None else 0
        held_e = self._by_endpoint.get(endpoint_id, 0)
        total = len(self._holders)
        verdict = readback(share, held_e, held_t, head=head, behind=behind, total_held=total)
        if verdict is Verdict.DEFER and part is not None:
            part.deferred[entry.offset] = (entry, endpoint_id)
            part.by_endpoint[endpoint_id] = part.by_endpoint.get(endpoint_id, 0) + 1
            if part.low is not None and entry.offset < part.low:
                part.low = entry.offset
            part.first.setdefault(endpoint_id, entry.offset)
            return False
        self._by_endpoint[endpoint_id] = held_e + 1
        if share.tenant is not None:
            self._by_tenant[share.tenant] = held_t + 1
        self._holders[entry] = (endpoint_id, share.tenant)
        return True

    def finished(self, entry: Tracked) -> None:
        """A held copy finished (or was given up)."""
        holder = self._holders.pop(entry, None)
        if holder is None:
            return
        endpoint_id, tenant = holder
        part = self._parts.get(entry.tp.partition)
        if part is not None and part.pin == endpoint_id:
            part.pin_done += 1
        _drop(self._by_endpoint, endpoint_id)
        if tenant is not None:
            _drop(self._by_tenant, tenant)

    @property
    def held_total(self) -> int:
        """Copies held (read back and not finished)."""
        return len(self._holders)

    def held(self, endpoint_id: str, tenant: str | None) -> tuple[int, int]:
        """Copies held of an endpoint and of a tenant."""
        held_t = self._by_tenant.get(tenant, 0) if tenant is not None else 0
        return self._by_endpoint.get(endpoint_id, 0), held_t

    # -- seeking back ----------------------------------------------------------------------

    def seeks(self, share_of: Callable[[str], EndpointShare]) -> dict[int, int]:
        """Partitions to seek now: partition -> offset (back to re-read, or on past a
        stretch with nothing to decide again)."""
        now = self._clock()
        out: dict[int, int] = {}
        for p, part in self._parts.items():
            if part.evict:  # the dead-lettering re-read is over once past each backlog
                part.evict = {e: o for e, o in part.evict.items() if part.next < o}
            back = self._overflow(p, part, now)
            if back is not None:
                out[p] = back
                continue
            if part.next < part.seen and all(e in part.first for e in part.by_endpoint):
                # Nothing ahead to decide again (every deferred copy there is behind an
                # earlier one of its endpoint): on to where reading stood, not through it.
                part.next = part.seen
                out[p] = part.seen
                continue
            if not part.first or now - part.sought < RESEEK_S:
                continue
            ready = [
                first
                for endpoint_id, first in part.first.items()
                if self._due(endpoint_id, share_of(endpoint_id))
            ]
            if not ready:
                continue
            start = min(ready)
            # Endpoints whose first deferred copy is at or after ``start`` are read again from
            # it, in order; those before stay behind (their copies from ``start`` on are let
            # go again, and a later seek goes back to their first).
            part.first = {e: o for e, o in part.first.items() if o < start}
            part.next = start
            part.sought = now
            out[p] = start
        return out

    def _overflow(self, p: int, part: _Partition, now: float) -> int | None:
        """Where to read again to dead-letter the backlog pinning a full window (None: not
        now)."""
        low = part.lowest()
        if low is None or part.next - low < self.shares.window:
            part.pin = None
            return None
        endpoint_id = part.deferred[low][1]
        if part.pin != endpoint_id:
            part.pin, part.pinned_at, part.pin_done = endpoint_id, now, 0
            return None
        deferred = part.by_endpoint.get(endpoint_id, 0)
        if not overflows(deferred, part.pin_done, now - part.pinned_at):
            return None
        # Every deferred copy of it read so far; the others' are read again and decided
        # again, as after any seek back to ``low`` (it is the lowest of them all).
        part.evict[endpoint_id] = part.seen
        part.pin = None
        part.first = {}
        part.next = low
        part.sought = now
        self.overflowed.append((p, endpoint_id, deferred))
        return low

    def seek_due(self, share_of: Callable[[str], EndpointShare]) -> bool:
        """Some endpoint's deferred copies have room now (the reader should not idle)."""
        return any(
            self._due(endpoint_id, share_of(endpoint_id))
            for part in self._parts.values()
            for endpoint_id in part.first
        )

    def _due(self, endpoint_id: str, share: EndpointShare) -> bool:
        return due(share, *self.held(endpoint_id, share.tenant), len(self._holders))

    def waiting(self) -> set[int]:
        """Partitions read this far past their earliest deferred copy: they wait for it."""
        window = self.shares.window
        return {
            p
            for p, part in self._parts.items()
            if (low := part.lowest()) is not None and part.next - low >= window
        }

    def deferred_total(self) -> int:
        return sum(len(part.deferred) for part in self._parts.values())


def _drop(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
