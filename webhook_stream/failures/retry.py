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

One tenant holds at most ``retry_buffer_per_tenant`` of a partition's buffer: its further
not yet due records are *deferred* (:mod:`~webhook_stream.failures.retry_share`): only
their offsets are kept, reading goes on past them (others' records behind are read on
time) and nothing is written; the partition is read again from a deferred record when it
comes due. Not yet due records at the front of a crowded buffer are moved (at most once
per :data:`~webhook_stream.failures.retry_share.CYCLE_S` each).

Nothing is forwarded or moved while the group membership's lease
(:mod:`~webhook_stream.core.lease`) is expired: a worker resuming from a stall would
otherwise forward records another member has forwarded meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator

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
from webhook_stream.failures.retry_share import (
    MOVED_HEADER,
    STUBS_PER_BUFFER,
    Intake,
    Waiting,
    cycled,
    due_and_tenant,
    intake,
    live,
    must_move,
)

__all__ = ["HORIZON_S", "RetryScheduler", "move_target"]

log = logging.getLogger(__name__)
_Unsent = tuple[TopicPartition, Waiting, ConsumerRecord]
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
        self._buffers: dict[TopicPartition, deque[Waiting]] = {}
        self._paused: set[TopicPartition] = set()
        #: Per partition: records of each tenant held (buffered, not yet handled).
        self._held: dict[TopicPartition, dict[str, int]] = {}
        #: Per partition: deferred records by offset; the offset after the last one read.
        self._deferred: dict[TopicPartition, dict[int, Waiting]] = {}
        self._read_to: dict[TopicPartition, int] = {}
        #: Partitions read again from a deferred record: up to which offset.
        self._rereading: dict[TopicPartition, int] = {}
        limit = settings.retry_buffer_per_partition
        self._share = max(1, min(settings.retry_buffer_per_tenant, limit // 2))
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
                    skipped = await self._take(tp, records) or skipped
                self._pause_full()
                if not self.lease.valid():
                    # Membership in doubt (a stall): hold everything until it is confirmed.
                    await self.lease.wait_change(_MAX_IDLE_MS / 1000)
                    continue
                forwarded = await self._forward_due()
                moved = await self._move_marked()
                if await self._move_blocking() or moved or forwarded or skipped:
                    await self.commit()
                self._read_again()
                self._resume_drained()
                self._report_backlog()
        finally:
            self._consumer = None
            self._metrics.lag.unwatch(f"{self._settings.app_id}-retry")
            await consumer.stop()

    async def _take(
        self, tp: TopicPartition, records: list[ConsumerRecord | fetch.Undecodable]
    ) -> bool:
        """Buffer (or defer) what was read of ``tp``; True when an undecodable run was skipped."""
        buf = self._buffers.setdefault(tp, deque())
        held = self._held.setdefault(tp, {})
        deferred = self._deferred.setdefault(tp, {})
        now_ms = time.time() * 1000
        skipped = False
        for r in records:
            if r.offset < self._read_to.get(tp, -1):
                self._read_again_one(deferred, r, now_ms)
                continue
            self._read_to[tp] = r.offset + 1
            if isinstance(r, fetch.Undecodable):
                await self._undecodable(r)
                skipped = True
                buf.append(Waiting(r, r.offset, 0, forwarded=True))  # committed past
                continue
            due_ms, tenant = due_and_tenant(r)
            if intake(tenant, held.get(tenant or "", 0), self._share, due_ms, now_ms) is (
                Intake.DEFER
            ):
                # Left in the log: only where it is and when it is due are kept.
                deferred[r.offset] = Waiting(None, r.offset, due_ms, written_ms=r.timestamp)
                buf.append(deferred[r.offset])
                continue
            if tenant is not None:
                held[tenant] = held.get(tenant, 0) + 1
            buf.append(Waiting(r, r.offset, due_ms, tenant=tenant))
        until = self._rereading.get(tp)
        if until is not None and records and records[-1].offset >= until:
            # Read again as far as needed: go on where reading had got to.
            del self._rereading[tp]
            assert self._consumer is not None
            self._consumer.seek(tp, self._read_to[tp])
        return skipped

    @staticmethod
    def _read_again_one(
        deferred: dict[int, Waiting], r: ConsumerRecord | fetch.Undecodable, now_ms: float
    ) -> None:
        """A record read before, read again: a deferred one due (or to move) is taken now."""
        waiting = deferred.get(r.offset)
        if waiting is None or isinstance(r, fetch.Undecodable):
            return
        if waiting.due_ms <= now_ms or waiting.move:
            waiting.record = r  # forwarded (or moved) by this round of the loop
            del deferred[r.offset]

    def _handled(self, tp: TopicPartition, waiting: Waiting) -> None:
        """``waiting`` was forwarded or moved: committable, out of its tenant's share."""
        waiting.forwarded = True
        waiting.record = None  # only its offset is needed (for the commit)
        tenant = waiting.tenant
        if tenant is None:
            return
        waiting.tenant = None
        held = self._held.get(tp)
        if held is not None and tenant in held:
            held[tenant] -= 1
            if not held[tenant]:
                del held[tenant]

    def drop(self, tp: TopicPartition) -> int:
        """Forget a revoked partition; its uncommitted records go to the new owner.

        Returns how many of them were due (would have been forwarded but for the loss).
        """
        buf = self._buffers.pop(tp, None)
        self._paused.discard(tp)
        self._held.pop(tp, None)
        self._deferred.pop(tp, None)
        self._read_to.pop(tp, None)
        self._rereading.pop(tp, None)
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
                last = buf.popleft().offset
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
            (
                w.due_ms
                for tp, buf in self._buffers.items()
                for w in buf
                if not w.forwarded and (w.record is not None or tp not in self._rereading)
            ),
            default=None,
        )
        if earliest is None:
            return _MAX_IDLE_MS
        return int(max(0, min(_MAX_IDLE_MS, earliest - now)))

    def _unsent(self, wanted: Callable[[Waiting], bool]) -> Iterator[_Unsent]:
        """Unforwarded buffered records ``wanted`` picks, while the lease holds (a stall)."""
        for tp, buf in self._buffers.items():
            for waiting in buf:
                rec = waiting.record
                if waiting.forwarded or rec is None or not wanted(waiting):
                    continue
                if not self.lease.valid():
                    return
                assert not isinstance(rec, fetch.Undecodable)  # those wait forwarded
                yield tp, waiting, rec

    async def _forward_due(self) -> bool:
        now_ms = time.time() * 1000
        sends = []
        for tp, waiting, rec in self._unsent(lambda w: w.due_ms <= now_ms):
            sends.append((rec, await self._send(rec)))
            self._handled(tp, waiting)
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

    async def _move_marked(self) -> bool:
        """Move the deferred records read again to be moved (:meth:`_read_again`)."""
        now_ms = time.time() * 1000
        sends = []
        for tp, waiting, rec in self._unsent(lambda w: w.move):
            remaining_s = (waiting.due_ms - now_ms) / 1000
            target = retry_topic(move_target(remaining_s, self._delays))
            sends.append(await self._move(rec, target, now_ms))
            self._handled(tp, waiting)
            self._metrics.retry_moved.labels(tp.topic).inc()
        if sends:
            await asyncio.gather(*sends)
        return bool(sends)

    async def _move(self, rec: ConsumerRecord, target: str, now_ms: float) -> asyncio.Future:
        """Write ``rec`` again to ``target``; the header says when (its cycle)."""
        headers = [(MOVED_HEADER, str(int(now_ms)).encode())]
        return await self._producer.send(target, rec.value, key=rec.key, headers=headers)

    async def _move_blocking(self) -> bool:
        """Move the far-off records that hold up a commit or have waited too long here.

        In a crowded buffer (half full) any not due record at the front is moved, unless it
        was moved less than ``CYCLE_S`` ago (so a busy partition is not written again in a
        loop). Deferred records are left to :meth:`_read_again`.
        """
        now_ms = time.time() * 1000
        horizon_ms = HORIZON_S * 1000
        crowded_at = self._settings.retry_buffer_per_partition // 2
        sends = []
        for tp, buf in self._buffers.items():
            stale_ms = 2000 * self._topic_delay.get(tp.topic, self._delays[-1])
            behind = sum(w.forwarded for w in buf)  # forwarded records behind the cursor
            crowded = live(buf) >= crowded_at
            for waiting in buf:
                if waiting.forwarded:
                    behind -= 1
                    continue
                rec = waiting.record
                if rec is None:  # deferred: the commit waits for it (see _read_again)
                    if not crowded:
                        break
                    continue
                remaining_ms = waiting.due_ms - now_ms
                if not self.lease.valid():
                    break
                assert not isinstance(rec, fetch.Undecodable)  # those wait forwarded
                if remaining_ms <= horizon_ms and not (crowded and cycled(rec, now_ms)):
                    break  # due soon: the commit waits for it
                stale = now_ms - rec.timestamp > stale_ms
                if not behind and not stale:
                    break
                target = retry_topic(move_target(remaining_ms / 1000, self._delays))
                sends.append(await self._move(rec, target, now_ms))
                self._handled(tp, waiting)
                self._metrics.retry_moved.labels(tp.topic).inc()
        if sends:
            await asyncio.gather(*sends)
        return bool(sends)

    def _read_again(self) -> None:
        """Seek back to the deferred records that are due or must be moved now."""
        assert self._consumer is not None
        now_ms = time.time() * 1000
        limit = self._settings.retry_buffer_per_partition
        for tp, deferred in self._deferred.items():
            if not deferred or tp in self._rereading:
                continue
            buf = self._buffers[tp]
            stale_ms = 2000 * self._topic_delay.get(tp.topic, self._delays[-1])
            handled_behind = sum(w.forwarded for w in buf)
            for waiting in buf:  # the deferred front: its commit waits for them
                if waiting.forwarded:
                    handled_behind -= 1
                    continue
                if not waiting.deferred:
                    break
                waiting.move = waiting.move or must_move(
                    handled_behind=handled_behind,
                    tracked=len(buf),
                    buffer=limit,
                    remaining_ms=waiting.due_ms - now_ms,
                    waited_ms=now_ms - waiting.written_ms,
                    stale_ms=stale_ms,
                    horizon_ms=HORIZON_S * 1000,
                )
            wanted = [o for o, w in deferred.items() if w.move or w.due_ms <= now_ms]
            if wanted:
                self._rereading[tp] = max(wanted)
                self._consumer.seek(tp, min(wanted))
                self._consumer.resume(tp)  # read again even when its buffer is full
                self._paused.discard(tp)

    def _pause_full(self) -> None:
        assert self._consumer is not None
        limit = self._settings.retry_buffer_per_partition
        full = [
            tp
            for tp, buf in self._buffers.items()
            if tp not in self._rereading
            and (live(buf) >= limit or len(buf) >= STUBS_PER_BUFFER * limit)
        ]
        if full:
            self._consumer.pause(*full)
            self._paused.update(full)

    def _resume_drained(self) -> None:
        assert self._consumer is not None
        limit = self._settings.retry_buffer_per_partition
        ready = [
            tp
            for tp in self._paused
            if live(buf := self._buffers.get(tp, deque())) < limit // 2
            and len(buf) < STUBS_PER_BUFFER * limit // 2
        ]
        if ready:
            self._consumer.resume(*ready)
            self._paused.difference_update(ready)

    def _report_backlog(self) -> None:
        held: dict[str, int] = {}
        deferred: dict[str, int] = {}
        for tp, buf in self._buffers.items():
            held[tp.topic] = held.get(tp.topic, 0) + live(buf)
            deferred[tp.topic] = deferred.get(tp.topic, 0) + len(self._deferred.get(tp, ()))
        for topic, count in held.items():
            self._metrics.retry_backlog.labels(topic).set(count)
            self._metrics.retry_deferred.labels(topic).set(deferred[topic])
