"""Per-endpoint lanes and in-order acknowledgement: the concurrency core of delivery.

* :class:`Lanes` keeps one FIFO queue per key (endpoint id) with at most ``max_in_flight``
  jobs of a key running, so one endpoint's calls are serialised while every other
  endpoint proceeds; a semaphore bounds the jobs held in memory (back-pressure).
* :class:`OrderedAcker` releases Faust acks per partition strictly in offset order. Acking
  out of order lets Faust commit past an unfinished message (faust-streaming#606).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Lanes", "OrderedAcker"]

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class OrderedAcker:
    """Acks Faust events of one partition in offset order, whatever order they finish in."""

    def __init__(self) -> None:
        self._pending: dict[Any, deque[list[Any]]] = {}

    def track(self, event: Any) -> list[Any]:
        entry = [event, False]
        self._pending.setdefault(event.message.tp, deque()).append(entry)
        return entry

    def done(self, entry: list[Any]) -> None:
        entry[1] = True
        queue = self._pending.get(entry[0].message.tp)
        while queue and queue[0][1]:
            queue.popleft()[0].ack()

    def __len__(self) -> int:
        return sum(len(q) for q in self._pending.values())

    def clear(self) -> None:
        """Forget every unfinished entry (after a rebalance Faust re-delivers them)."""
        self._pending.clear()


class _Lane:
    __slots__ = ("queue", "running")

    def __init__(self) -> None:
        self.queue: deque[Job] = deque()
        self.running = 0


class Lanes:
    """Per-key FIFO execution with a per-key concurrency limit and a global bound."""

    def __init__(self, max_pending: int, on_error: Callable[[BaseException], None]) -> None:
        self._lanes: dict[bytes | str, _Lane] = {}
        self._slots = asyncio.Semaphore(max_pending)
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_error = on_error
        #: Jobs queued or running (kept as a counter: read on every submit).
        self.pending = 0

    async def submit(self, key: bytes | str, max_in_flight: int, job: Job) -> None:
        """Queue ``job`` behind the key's earlier jobs; waits while too many are held."""
        await self._slots.acquire()
        self.pending += 1
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queue.append(job)
        if lane.running < max_in_flight:
            lane.running += 1
            task = asyncio.create_task(self._run(key, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, key: bytes | str, lane: _Lane) -> None:
        try:
            while lane.queue:
                job = lane.queue.popleft()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug must stop the worker, not a lane
                    self._on_error(exc)
                finally:
                    self.pending -= 1
                    self._slots.release()
        finally:
            lane.running -= 1
            if lane.running == 0 and not lane.queue:
                self._lanes.pop(key, None)

    async def drain(self, timeout: float) -> bool:
        """Run every queued job to completion, for at most ``timeout`` seconds.

        Returns True when all finished. Otherwise the running jobs are cancelled and the
        queued ones dropped (their records were never acked, so Kafka redelivers them).
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
            for _ in lane.queue:
                self.pending -= 1
                self._slots.release()
            lane.queue.clear()
        self._lanes.clear()
        log.warning(
            "%d delivery lanes did not finish in %.0fs and were abandoned", len(still), timeout
        )
        return False
