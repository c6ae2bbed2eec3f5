"""Retry: wait on ``webhooks.retry.<delay>`` topics and hand due deliveries back.

The waiting happens in its own aiokafka consumer (group ``<app_id>-retry``), never in a
Faust agent: agents share one fetch loop, and a sleeping retry agent stalled the main
path for seconds (notes: faust-on-tansu section 5). This loop buffers a bounded number
of records per partition, pauses a partition whose buffer is full, forwards each record
to ``webhooks.deliveries`` once its ``due_at_ms`` has passed, and commits the forwarded
prefix of each partition. Heartbeats run in aiokafka's own task, so waiting never trips
the poll interval or delays a rebalance.

Records in one partition are not always due in order (per-endpoint schedules and
``Retry-After`` reuse the nearest shorter topic). A record that holds up the commit of
records behind it already forwarded, and is not due within :data:`HORIZON_S`, is
*moved*: written again with its exact due time to the shortest retry topic at least as
long as its remaining wait (or the longest, to hop again later), then counted as handled.
The prefix is committed, so a restart does not forward it all again, and the partition is
never held for hours. A record that has waited in one topic for more than twice that
topic's delay is moved the same way, so no wait (a per-endpoint step longer than every
retry topic) outlives a topic's retention (at least four times its delay).

Nothing is forwarded or moved while the group membership's lease
(:mod:`~webhook_stream.core.lease`) is expired: a worker resuming from a stall would
otherwise forward records another member has forwarded meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from webhook_stream.core import fetch, kafka
from webhook_stream.core.lease import Lease, report_dropped
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.produce import failure_reason, send_failure
from webhook_stream.core.rejected import reject
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, retry_topic

__all__ = ["HORIZON_S", "RetryScheduler", "move_target"]

log = logging.getLogger(__name__)

_MAX_IDLE_MS = 500
#: A record due within this holds the commit of its partition instead of being moved.
HORIZON_S = 60.0


def move_target(remaining_s: float, delays: tuple[float, ...]) -> float:
    """The retry topic (its delay) a record with ``remaining_s`` to wait is moved to: the
    shortest at least that long, so records written after it are due after it; else the
    longest, from which it hops again."""
    for delay in delays:  # sorted ascending
        if delay >= remaining_s:
            return delay
    return delays[-1]


@dataclass(slots=True)
class _Waiting:
    record: ConsumerRecord | fetch.Undecodable
    due_ms: int
    forwarded: bool = False


class _Listener(kafka.JoinedListener):
    def __init__(self, scheduler: RetryScheduler) -> None:
        super().__init__()
        self._scheduler = scheduler

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        scheduler = self._scheduler
        lapsed = bool(revoked) and not scheduler.lease.valid()
        await scheduler.commit()
        dropped = sum(scheduler.drop(tp) for tp in revoked)
        if lapsed:
            scheduler.dropped(dropped, revoked)


class RetryScheduler:
    """Forwards retry-topic records to ``webhooks.deliveries`` when due; ``run()`` forever."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, metrics: Metrics) -> None:
        self._settings = settings
        self._producer = producer
        self._metrics = metrics
        self._buffers: dict[TopicPartition, deque[_Waiting]] = {}
        self._paused: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._running = True
        self._delays = tuple(sorted(set(settings.retry_schedule)))
        self._topic_delay = {retry_topic(d): d for d in self._delays}
        self.listener = _Listener(self)
        self.lease = Lease(f"{settings.app_id}-retry", settings.session_timeout)

    def stop(self) -> None:
        """Commit what was forwarded and return from :meth:`run`."""
        self._running = False

    async def run(self) -> None:
        consumer = kafka.group_consumer(
            self._settings, "retry", background=True, max_poll_records=2000
        )
        consumer.subscribe(topics=list(self._topic_delay), listener=self.listener)
        self._consumer = consumer
        began = self.lease.clock()
        await consumer.start()
        self.lease.attach(consumer, began)
        self._metrics.lag.watch(f"{self._settings.app_id}-retry", consumer)
        try:
            while self._running:
                batch = await fetch.getmany(consumer, timeout_ms=self._wait_ms(), max_records=2000)
                skipped = False
                for tp, records in batch.items():
                    buf = self._buffers.setdefault(tp, deque())
                    for r in records:
                        if isinstance(r, fetch.Undecodable):
                            await self._undecodable(r)
                            skipped = True
                            buf.append(_Waiting(r, 0, forwarded=True))  # committed past
                        else:
                            buf.append(_Waiting(r, _due_ms(r)))
                self._pause_full()
                if not self.lease.valid():
                    # Membership in doubt (a stall): hold everything until it is confirmed.
                    await self.lease.wait_change(_MAX_IDLE_MS / 1000)
                    continue
                forwarded = await self._forward_due()
                if await self._move_blocking() or forwarded or skipped:
                    await self.commit()
                self._resume_drained()
                self._report_backlog()
        finally:
            self._consumer = None
            self._metrics.lag.unwatch(f"{self._settings.app_id}-retry")
            await consumer.stop()

    def drop(self, tp: TopicPartition) -> int:
        """Forget a revoked partition; its uncommitted records go to the new owner.

        Returns how many of them were due (would have been forwarded but for the loss).
        """
        buf = self._buffers.pop(tp, None)
        self._paused.discard(tp)
        now_ms = time.time() * 1000
        return sum(1 for w in buf or () if not w.forwarded and w.due_ms <= now_ms)

    def dropped(self, due: int, revoked: list[TopicPartition]) -> None:
        """Partitions revoked after the lease lapsed: what was due here is left to them."""
        self._metrics.ownership_dropped.labels("retry").inc(due)
        report_dropped(self.lease, due, "due retries", revoked)

    async def commit(self) -> None:
        """Commit, per partition, the prefix of records already forwarded."""
        if self._consumer is None:
            return
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, buf in self._buffers.items():
            last = None
            while buf and buf[0].forwarded:
                last = buf.popleft().record.offset
            if last is not None:
                offsets[tp] = OffsetAndMetadata(last + 1, "")
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # Rebalanced away: the new owner re-forwards; duplicates keep their webhook-id.
                log.warning("retry commit failed (%s); records will be forwarded again", exc)

    def _wait_ms(self) -> int:
        """Sleep in getmany until the earliest buffered record is due (or new records come)."""
        now = time.time() * 1000
        earliest = min(
            (w.due_ms for buf in self._buffers.values() for w in buf if not w.forwarded),
            default=None,
        )
        if earliest is None:
            return _MAX_IDLE_MS
        return int(max(0, min(_MAX_IDLE_MS, earliest - now)))

    async def _forward_due(self) -> bool:
        now_ms = time.time() * 1000
        sends = []
        for buf in self._buffers.values():
            for waiting in buf:
                if not waiting.forwarded and waiting.due_ms <= now_ms:
                    if not self.lease.valid():
                        break  # lapsed meanwhile (a stall between two sends)
                    rec = waiting.record
                    sends.append((rec, await self._send(rec)))
                    waiting.forwarded = True
        for rec, result in zip(
            (r for r, _ in sends),
            await asyncio.gather(*(s for _, s in sends), return_exceptions=True),
            strict=True,
        ):
            if isinstance(result, BaseException):
                await self._refused(rec, result)
        return bool(sends)

    async def _send(self, rec: ConsumerRecord) -> asyncio.Future:
        try:
            return await self._producer.send(DELIVERIES, rec.value, key=rec.key)
        except Exception as exc:  # noqa: BLE001 - sorted by _refused
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _undecodable(self, skipped: fetch.Undecodable) -> None:
        self._metrics.undecodable.inc()
        limit = self._settings.max_record_bytes
        await (await fetch.reject_undecodable(self._producer, skipped, limit))

    async def _refused(self, rec: ConsumerRecord, exc: BaseException) -> None:
        """One record that could not be forwarded goes to webhooks.rejected; else raise."""
        if send_failure(exc) != "record":
            raise exc  # an outage or a bug: the worker stops, this record uncommitted
        log.error("could not forward %s[%d]@%d: %r", rec.topic, rec.partition, rec.offset, exc)
        await (await reject(self._producer, rec, failure_reason(exc)))

    async def _move_blocking(self) -> bool:
        """Move the far-off records that hold up a commit or have waited too long here."""
        now_ms = time.time() * 1000
        horizon_ms = HORIZON_S * 1000
        sends = []
        for tp, buf in self._buffers.items():
            stale_ms = 2000 * self._topic_delay.get(tp.topic, self._delays[-1])
            behind = sum(w.forwarded for w in buf)  # forwarded records behind the cursor
            for waiting in buf:
                if waiting.forwarded:
                    behind -= 1
                    continue
                remaining_ms = waiting.due_ms - now_ms
                if remaining_ms <= horizon_ms or not self.lease.valid():
                    break  # due soon (or the lease lapsed): the commit waits for it
                rec = waiting.record
                assert not isinstance(rec, fetch.Undecodable)  # those wait forwarded
                stale = now_ms - rec.timestamp > stale_ms
                if not behind and not stale:
                    break
                target = retry_topic(move_target(remaining_ms / 1000, self._delays))
                sends.append(await self._producer.send(target, rec.value, key=rec.key))
                waiting.forwarded = True
                self._metrics.retry_moved.labels(tp.topic).inc()
        if sends:
            await asyncio.gather(*sends)
        return bool(sends)

    def _pause_full(self) -> None:
        assert self._consumer is not None
        limit = self._settings.retry_buffer_per_partition
        full = [tp for tp, buf in self._buffers.items() if len(buf) >= limit]
        if full:
            self._consumer.pause(*full)
            self._paused.update(full)

    def _resume_drained(self) -> None:
        assert self._consumer is not None
        limit = self._settings.retry_buffer_per_partition
        ready = [tp for tp in self._paused if len(self._buffers.get(tp, ())) < limit // 2]
        if ready:
            self._consumer.resume(*ready)
            self._paused.difference_update(ready)

    def _report_backlog(self) -> None:
        per_topic: dict[str, int] = {}
        for tp, buf in self._buffers.items():
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + len(buf)
        for topic, count in per_topic.items():
            self._metrics.retry_backlog.labels(topic).set(count)


def _due_ms(record: ConsumerRecord) -> int:
    try:
        due = orjson.loads(record.value).get("due_at_ms")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        due = None
    # A record without a due time (hand-written, or damaged) is forwarded at once; the
    # delivery path rejects it if it cannot be decoded.
    return int(due) if isinstance(due, int | float) else 0
