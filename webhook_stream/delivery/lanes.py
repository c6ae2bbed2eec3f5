"""Per-endpoint lanes and in-order commits: the concurrency core of delivery.

* :class:`Lanes` keeps one FIFO queue per key (endpoint id) with at most ``max_in_flight``
  items of a key running, so one endpoint's calls are serialised while every other
  endpoint proceeds. Submitting never blocks; the caller stops fetching while
  :attr:`Lanes.full` (back-pressure without starving the consumer's poll loop).
* :class:`OffsetTracker` says, per partition, up to which offset every record taken is
  finished: records finish out of order across endpoints, and committing past an
  unfinished one would lose it on a crash. It also lists the records finished *beyond*
  that prefix (:meth:`OffsetTracker.done_beyond`), which
  :mod:`~webhook_stream.delivery.progress` makes durable so a next owner skips them.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

from aiokafka import TopicPartition

__all__ = ["Lanes", "OffsetTracker", "Tracked"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Tracked:
    """One record taken from a partition, tracked until it is finished."""

    __slots__ = ("attempted", "done", "offset", "source", "tp")

    def __init__(self, tp: TopicPartition, offset: int) -> None:
        self.tp = tp
        self.offset = offset
        self.done = False
        #: Set before :meth:`OffsetTracker.done` when the record was attempted: its outcome
        #: records are what made it done, so a next owner may skip it.
        self.attempted = False
        #: An attempted copy's source record: attempted too once the copy is done.
        self.source: tuple[TopicPartition, int] | None = None


class OffsetTracker:
    """Per partition: the next offset to commit, advanced only over finished records."""

    def __init__(self, on_advance: Callable[[int], None] | None = None) -> None:
        self._pending: dict[TopicPartition, deque[Tracked]] = {}
        self._ready: dict[TopicPartition, int] = {}
        #: Partitions with a skippable record finished beyond the prefix since
        #: :meth:`take_grown` last said so.
        self._grown: set[TopicPartition] = set()
        #: Called with how many records a :meth:`done` made committable.
        self._on_advance = on_advance

    def track(self, tp: TopicPartition, offset: int) -> Tracked:
        """Note a record taken; pass the returned entry to :meth:`done` when it is finished.

        Set ``entry.attempted`` (before :meth:`done`) when the record was *attempted*: its
        outcome records are what made it done, so a next owner may skip it. A record only
        parked may not be skipped (its copy in ``webhooks.parked`` counts as stale to a next
        owner that reads it again). An attempted copy may name its source
        (``entry.source = (source_tp, offset)``); once the copy is done, the source counts as
        attempted too (it is finished for good).
        """
        entry = Tracked(tp, offset)
        queue = self._pending.get(tp)
        if queue is None:
            queue = self._pending[tp] = deque()
        queue.append(entry)
        return entry

    def done(self, entry: Tracked) -> None:
        entry.done = True
        if entry.attempted and entry.source is not None:
            self._attempted(*entry.source)
        queue = self._pending.get(entry.tp)
        if not queue or not queue[0].done:
            # Waits for an earlier record, or its partition was revoked meanwhile.
            if queue and entry.attempted:
                self._grown.add(entry.tp)
            return
        last, n = -1, 0
        while queue and queue[0].done:
            last = queue.popleft().offset
            n += 1
        self._ready[entry.tp] = last + 1
        if self._on_advance is not None:
            self._on_advance(n)

    def _attempted(self, tp: TopicPartition, offset: int) -> None:
        """The record at ``offset`` of ``tp`` was attempted (through a copy of it)."""
        queue = self._pending.get(tp)
        if not queue or offset < queue[0].offset:
            return  # committable already (or not taken here)
        i = bisect_left(queue, offset, key=_offset_of)  # a partition's entries are in order
        if i < len(queue) and queue[i].offset == offset:
            queue[i].attempted = True
            if queue[i].done:
                self._grown.add(tp)

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets that advanced since the last call (each: every record below is finished)."""
        ready, self._ready = self._ready, {}
        return ready

    def done_beyond(self, tp: TopicPartition) -> list[int]:
        """Offsets of ``tp``'s skippable records finished beyond its committable prefix."""
        queue = self._pending.get(tp)
        return [e.offset for e in queue if e.done and e.attempted] if queue else []

    def head(self, tp: TopicPartition) -> int | None:
        """The first unfinished offset of ``tp`` taken (where its committed prefix ends)."""
        queue = self._pending.get(tp)
        return queue[0].offset if queue else None

    def take_grown(self) -> set[TopicPartition]:
        """Partitions whose :meth:`done_beyond` gained offsets since the last call."""
        grown, self._grown = self._grown, set()
        return {tp for tp in grown if tp in self._pending}

    def regrow(self, tps: Iterable[TopicPartition]) -> None:
        """Give back what :meth:`take_grown` said (their progress was not written)."""
        self._grown.update(tp for tp in tps if tp in self._pending)

    def restore(self, offsets: dict[TopicPartition, int]) -> None:
        """Give back offsets a failed commit took, unless newer ones are ready meanwhile."""
        for tp, offset in offsets.items():
            if tp in self._pending and self._ready.get(tp, -1) < offset:
                self._ready[tp] = offset

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Stop tracking ``tps`` (revoked): their unfinished records are redelivered."""
        for tp in tps:
            self._pending.pop(tp, None)
            self._ready.pop(tp, None)
            self._grown.discard(tp)

    def __len__(self) -> int:
        return sum(len(q) for q in self._pending.values())


def _offset_of(entry: Tracked) -> int:
    return entry.offset


class _Queued(NamedTuple):
    item: Any
    counted: bool
    #: The group (tenant) a counted item counts towards, if any.
    group: str | None


class _Lane:
    __slots__ = ("queue", "running")

    def __init__(self) -> None:
        self.queue: deque[_Queued] = deque()
        self.running = 0


class Lanes(Generic[T]):
    """Per-key FIFO execution of ``handler(item)`` with a per-key concurrency limit."""

    def __init__(
        self,
        handler: Callable[[T], Awaitable[None]],
        max_pending: int,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._handler = handler
        self._max_pending = max_pending
        self._low_water = max_pending * 3 // 4
        self._lanes: dict[bytes, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_error = on_error
        self._room = asyncio.Event()
        self._room.set()
        #: Items queued or running (a counter: read on every submit).
        self.pending = 0
        #: The same per group (tenant) of counted items submitted with one.
        self._group_pending: dict[str, int] = {}

    @property
    def full(self) -> bool:
        return self.pending >= self._max_pending

    async def wait_for_room(self, timeout: float) -> None:
        """Return once at most three quarters of ``max_pending`` are held, or after ``timeout``.

        The gap keeps a consumer from waking for every single item that finishes.
        """
        if self.full:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), timeout)
            except TimeoutError:
                pass

    def size(self, key: bytes) -> int:
        """Items of ``key`` queued or running."""
        lane = self._lanes.get(key)
        return 0 if lane is None else len(lane.queue) + lane.running

    def group_size(self, group: str | None) -> int:
        """Counted items of ``group`` queued or running (0 for None)."""
        return 0 if group is None else self._group_pending.get(group, 0)

    def submit(
        self,
        key: bytes,
        max_in_flight: int,
        item: T,
        counted: bool = True,
        group: str | None = None,
    ) -> None:
        """Queue ``item`` behind the key's earlier items.

        ``counted=False`` items (read back from parking, under a budget of their own) do
        not count towards ``max_pending``; counted ones also count towards ``group``'s size.
        """
        if counted:
            self.pending += 1
            if group is not None:
                self._group_pending[group] = self._group_pending.get(group, 0) + 1
        else:
            group = None
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queue.append(_Queued(item, counted, group))
        if lane.running < max_in_flight:
            lane.running += 1
            task = asyncio.create_task(self._run(key, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def take_queued(self, key: bytes) -> list[T]:
        """Remove and return the key's queued (not running) counted items, in order.

        Only when every queued item is counted; otherwise nothing is taken.
        """
        lane = self._lanes.get(key)
        if lane is None or not lane.queue or not all(c for _, c, _ in lane.queue):
            return []
        items = [item for item, _, _ in lane.queue]
        for _, _, group in lane.queue:
            self._release(1, group)
        lane.queue.clear()
        return items

    async def _run(self, key: bytes, lane: _Lane) -> None:
        handler = self._handler
        try:
            while lane.queue:
                item, counted, group = lane.queue.popleft()
                try:
                    await handler(item)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug must stop the worker, not a lane
                    self._on_error(exc)
                finally:
                    if counted:
                        self._release(1, group)
        finally:
            lane.running -= 1
            if lane.running == 0 and not lane.queue:
                self._lanes.pop(key, None)

    def _release(self, n: int, group: str | None = None) -> None:
        self.pending -= n
        if group is not None:
            left = self._group_pending[group] - n
            if left:
                self._group_pending[group] = left
            else:
                del self._group_pending[group]
        if not self._room.is_set() and self.pending <= self._low_water:
            self._room.set()

    async def drain(self, timeout: float) -> bool:
        """Run every queued item to completion, for at most ``timeout`` seconds.

        Returns True when all finished. Otherwise the running items are cancelled and the
        queued ones dropped (their records were never committed, so Kafka redelivers them).
        """
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        if not self._tasks:
            return True
        still = set(self._tasks)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
        for lane in self._lanes.values():
            for _, counted, group in lane.queue:
                if counted:
                    self._release(1, group)
            lane.queue.clear()
        self._lanes.clear()
        log.warning(
            "%d delivery lanes did not finish in %.0fs and were abandoned", len(still), timeout
        )
        return False
