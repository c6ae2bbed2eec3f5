"""Deliveries in: consume ``webhooks.deliveries`` in batches, one lane per endpoint.

A plain aiokafka consumer (group ``<app_id>-deliver``) rather than a Faust agent. Faust
hands every event from its consumer thread through a conductor, a channel queue and a
stream iterator, and acks it one by one: a no-op agent measured about 6,700 events/s
on this machine, a plain consumer about 274,000. Taking records in batches (``getmany``)
and committing finished prefixes cut the worker's CPU per delivery (README, benchmark).

Guarantees:

* per-endpoint order: deliveries are keyed by endpoint id, so an endpoint's records sit
  in one partition, in order; its lane runs them one at a time (``max_in_flight``).
* at least once: an offset is committed only over a prefix of records whose attempt has
  finished and whose result records the broker has acknowledged (:class:`OffsetTracker`).
* back-pressure: at most ``max_pending_deliveries`` are held; while full, nothing is
  taken, and when it stays full the partitions are paused and polling goes on, so the
  group keeps its members.
* parking (:mod:`~webhook_stream.delivery.parking`): an endpoint holds at most its
  share of that budget, and a strict endpoint nothing while its head waits for a retry;
  the rest is parked in ``webhooks.parked``, which this consumer reads too (same group,
  range assignment: partition *n* of both topics has one owner).
* results (:mod:`.results`): a record that cannot be read, or whose result records cannot
  be written, goes to ``webhooks.rejected``; any other failed write stops the worker.
* rebalance and shutdown: in-flight work is drained (bounded), the finished prefix
  committed, and the rest left to the next owner of the partition.
* what was finished beyond the committed prefix is written to ``webhooks.delivery_progress``
  with each commit, and a next owner skips it (:mod:`~webhook_stream.delivery.progress`).
* a fan-out repeated by its successor (a kill -9 before its commit) is not sent twice: a
  fresh copy of a delivery attempted here lately is skipped (:mod:`.duplicates`).
* stalls (:mod:`~webhook_stream.core.lease`): records are taken, and attempts started,
  only while the group membership's lease is valid; after a stall everything waits for
  the coordinator, and what was held for partitions the re-join took away is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from webhook_stream.core import fetch, kafka
from webhook_stream.core.errors import OwnershipLost
from webhook_stream.core.lease import Lease, report_dropped
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.produce import failure_reason, send_failure
from webhook_stream.core.records import Delivery
from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES, DELIVERY_PROGRESS, PARKED
from webhook_stream.delivery.dispatcher import AttemptHooks, Dispatcher
from webhook_stream.delivery.duplicates import RecentDeliveries
from webhook_stream.delivery.lanes import Lanes, OffsetTracker
from webhook_stream.delivery.parking import Item, Parking, source_offset
from webhook_stream.delivery.progress import Progress
from webhook_stream.delivery.results import Results
from webhook_stream.subscriptions.registry import SubscriptionRegistry

__all__ = ["DeliveriesIn"]

log = logging.getLogger(__name__)

_BATCH = 500


class _Listener(kafka.JoinedListener):
    def __init__(self, owner: DeliveriesIn) -> None:
        super().__init__()
        self._owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._owner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self._owner.assigned(assigned)
        except Exception as exc:  # not owning them is safe; stop the worker
            if not self._owner.running:  # stopping meanwhile: they are given up anyway
                log.info("takeover of %s left unfinished: the worker is stopping", assigned)
                return
            log.critical("could not take over partitions %s: %r", assigned, exc, exc_info=exc)
            self._owner.crash(exc)
            return
        self._owner.owned.update(tp for tp in assigned if tp.topic != DELIVERY_PROGRESS)
        # Each endpoint's failure streak continues from what its last owner wrote: read in
        # the background (records fetched meanwhile must be taken, not dropped); attempts
        # wait for it (Dispatcher.process).
        self._owner.health.resync()
        self.joined.set()


class DeliveriesIn:
    """The delivery loop. ``run()`` until :meth:`stop`; then it drains and commits."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Callable[[AttemptHooks], Dispatcher],
        registry: SubscriptionRegistry,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        crash: Callable[[BaseException], None],
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._producer = producer
        self._metrics = metrics
        self._crash = crash
        self.crash = crash
        self._running = True
        self._tracker = OffsetTracker(self._advanced)
        self._results = Results(producer, self._tracker, metrics, settings.max_record_bytes, crash)
        #: Records made committable since the last commit, and the wake-up of the committer.
        self._uncommitted = 0
        self._commit_due = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        #: Partitions assigned and not being revoked: records of others are skipped.
        self.owned: set[TopicPartition] = set()
        held = settings.max_pending_deliveries
        self._batch = max(1, min(_BATCH, held // 4))
        # Full one batch early, so a batch taken at the bound stays within it.
        self.lanes: Lanes[Item] = Lanes(self._deliver, max(1, held - self._batch), crash)
        self.parking = Parking(
            settings, registry, producer, metrics, self.lanes, self._tracker, self._results.watch
        )
        # The dispatcher is built here, told of parking at construction.
        self._dispatcher = dispatcher(self.parking)
        self.health = self._dispatcher.health
        self.progress = Progress(settings, producer, self._tracker, metrics)
        #: Fresh deliveries attempted lately: a repeated fan-out's copies are skipped.
        self._recent = RecentDeliveries(metrics.duplicates_skipped)
        self.listener = _Listener(self)
        #: The group membership's right to act (issue 29: a stalled worker acts on nothing).
        self.lease = Lease(f"{settings.app_id}-deliver", settings.session_timeout)
        #: Deliveries dropped since the last revocation because their partition was lost.
        self._dropped = 0

    def stop(self) -> None:
        """Take nothing new; :meth:`run` drains what it holds, commits and returns."""
        self._running = False
        self.lease.changed()  # what waits for a lapsed lease is dropped, not waited for

    @property
    def running(self) -> bool:
        return self._running

    def partition_count(self) -> int | None:
        """Partitions of ``webhooks.deliveries`` as this consumer's metadata knows them."""
        consumer = self._consumer
        found = consumer.partitions_for_topic(DELIVERIES) if consumer is not None else None
        return len(found) if found else None

    async def run(self) -> None:
        await self._registry.ready.wait()
        # Up to 0.1, deliveries were read by Faust's group <app_id>: continue from its offsets.
        await kafka.adopt_committed(
            self._settings, f"{self._settings.app_id}-deliver", self._settings.app_id, DELIVERIES
        )
        self._consumer = consumer = kafka.group_consumer(
            self._settings,
            "deliver",
            max_poll_records=self._batch,
            # Partition n of webhooks.deliveries, .parked and .delivery_progress: one owner.
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        # webhooks.delivery_progress only to commit there (aiokafka commits only assigned
        # partitions): kept paused, never read.
        consumer.subscribe([DELIVERIES, PARKED, DELIVERY_PROGRESS], listener=self.listener)
        began = self.lease.clock()
        await consumer.start()
        self.lease.attach(consumer, began)
        group = f"{self._settings.app_id}-deliver"
        self._metrics.lag.watch(group, consumer, frozenset((DELIVERIES, PARKED)))
        committer = asyncio.create_task(self._commit_forever())
        try:
            await self._loop(consumer)
        finally:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            self.parking.revoked(None)
            await self.quiesce(self._settings.shutdown_timeout)
            await self._commit()
            self._metrics.lag.unwatch(group)
            await consumer.stop()

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or not self._running:
            return
        progress = [tp for tp in assigned if tp.topic == DELIVERY_PROGRESS]
        if progress:
            consumer.pause(*progress)
        work = [tp for tp in assigned if tp.topic != DELIVERY_PROGRESS]
        await self.parking.assigned(consumer, work)
        await self.progress.load(consumer, sorted({tp.partition for tp in work}))

    def _advanced(self, n: int) -> None:
        self._uncommitted += n
        every = self._settings.commit_every
        if every and self._uncommitted >= every:
            self._commit_due.set()

    async def _commit_forever(self) -> None:
        """Commit finished prefixes every ``commit_every`` records, or ``commit_interval``.

        Its own task, woken by finishing deliveries: the consume loop may be waiting for
        room (back-pressure) for a while, and a kill -9 repeats what is not committed.
        """
        while True:
            try:
                await asyncio.wait_for(self._commit_due.wait(), self._settings.commit_interval)
            except TimeoutError:
                pass
            self._commit_due.clear()
            await self._commit()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        poll_ms = int(min(self._settings.commit_interval, 0.5) * 1000)
        parking = self.parking
        while self._running:
            if self.lanes.full:
                await self.lanes.wait_for_room(poll_ms / 1000)
            # Draining slowly: keep polling (that keeps the group membership) but take
            # nothing. Pausing drops prefetched records, so only when it lasts; every
            # round, as a rebalance meanwhile brings partitions that are not paused.
            assignment = consumer.assignment()
            pause = {tp for tp in assignment if tp.topic == DELIVERY_PROGRESS}
            work = assignment - pause
            if self.lanes.full:
                pause.update(tp for tp in assignment if tp.topic == DELIVERIES)
            pause.update(parking.to_pause(assignment, self._batch))
            paused = consumer.paused()
            if pause - paused:
                consumer.pause(*(pause - paused))
            if paused - pause:
                consumer.resume(*(paused - pause))
            wait_ms = 0 if bool(work) and pause >= work else parking.poll_ms(poll_ms)
            batch = await fetch.getmany(consumer, timeout_ms=wait_ms, max_records=self._batch)
            skip = self.progress.skip
            back: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                if tp in self.owned:
                    for record in records:
                        if back or not self.lease.valid():
                            # Membership in doubt (a stall): take nothing more.
                            back[tp] = getattr(record, "first_offset", record.offset)
                            break
                        if not parking.fresh(tp, record):  # read again: taken already
                            continue
                        if isinstance(record, fetch.Undecodable):
                            await self._results.undecodable(tp, record)
                        elif skip(tp, record.offset):  # finished by the last owner
                            entry = self._tracker.track(tp, record.offset)
                            entry.attempted = True  # still finished: listed again if beyond
                            self._tracker.done(entry)
                        else:
                            await parking.take(tp, record)
                elif records and tp in consumer.assignment():
                    # Fetched while its assignment is still being taken over (flow state
                    # loading): read it again once owned.
                    first = records[0]
                    consumer.seek(tp, getattr(first, "first_offset", first.offset))
            if back or not self.lease.valid():  # not even a sweep (it writes flow state)
                for tp, offset in back.items():  # read again once confirmed, if still owned
                    if tp in consumer.assignment():
                        consumer.seek(tp, offset)
                await self.lease.wait_change(poll_ms / 1000)
                continue
            self._metrics.pending.set(self.lanes.pending + self.parking.held)
            await parking.sweep()

    async def _deliver(self, item: Item) -> None:
        try:
            while await self._owned(item) and await self.parking.wait_turn(item):
                try:
                    await self._attempt(item)
                    return
                except OwnershipLost:
                    continue  # the lease lapsed just before the send: wait for it again
        finally:
            self.parking.finished_parked(item)

    async def _owned(self, item: Item) -> bool:
        """Wait while the lease is expired; False (dropped) once the partition is lost."""
        if self.lease.valid():
            return True
        tp = TopicPartition(item.record.topic, item.record.partition)
        if await self.lease.hold(lambda: self._running and tp in self.owned):
            return True
        self._dropped += 1
        self._metrics.ownership_dropped.labels("delivery").inc()
        return False

    async def _attempt(self, item: Item) -> None:
        record, entry, _ = item
        # Attempted: once done, its outcome records are durable and a next owner may skip it
        # (a record only parked may not be: see delivery/progress.py), as may the source of
        # a parked copy attempted here.
        entry.attempted = True
        src = source_offset(record) if record.topic == PARKED else None
        if src is not None and entry.source is None:  # once: an attempt may wait, come again
            entry.source = (TopicPartition(DELIVERIES, record.partition), src)
        try:
            delivery = Delivery.decode(record.value)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            log.warning("undecodable record on %s at offset %s: %s", DELIVERIES, record.offset, exc)
            sends = [await self._results.reject(record, f"invalid_delivery_record: {exc}")]
        else:
            if not self._recent.claim(delivery):  # a repeated fan-out's copy: skipped
                self._tracker.done(entry)
                return
            try:
                sends = await self._dispatcher.process(delivery, self.lease.check)
            except (OwnershipLost, asyncio.CancelledError):
                self._recent.forget(delivery)  # no outcome: it may be read and tried again
                raise
            except Exception as exc:
                if send_failure(exc) != "record":
                    raise
                # A result record refused before it was sent (too large): this one only.
                sends = [await self._results.reject(record, failure_reason(exc))]
        if not sends:
            self._tracker.done(entry)
            return
        self._results.watch(record, entry, sends[0] if len(sends) == 1 else asyncio.gather(*sends))

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        """Before a rebalance: finish what was taken (bounded), commit it, forget the rest."""
        self.owned.difference_update(revoked)
        log.debug("revoked %s", sorted((tp.topic, tp.partition) for tp in revoked))
        lapsed = bool(revoked) and not self.lease.valid()
        self.lease.changed()  # deliveries waiting for the lease: theirs are lost now
        self.parking.revoked({tp.partition for tp in revoked})
        self.progress.revoked(revoked)
        timeout = min(self._settings.shutdown_timeout, self._settings.rebalance_timeout * 0.8)
        await self.quiesce(timeout)
        if lapsed or self._dropped:
            report_dropped(self.lease, self._dropped, "held deliveries", revoked)
            self._dropped = 0
        await self._commit()
        self._tracker.forget(revoked)

    async def quiesce(self, timeout: float) -> None:
        """Run the held deliveries to completion and wait for their sends, within ``timeout``.

        What cannot finish in time is dropped uncommitted; Kafka redelivers it.
        """
        deadline = time.monotonic() + timeout
        if self.lanes.pending:
            log.info("draining %d held deliveries (up to %.0fs)...", self.lanes.pending, timeout)
        await self.lanes.drain(timeout)
        sending = self._results.sending
        if sending:
            await asyncio.wait(set(sending), timeout=max(0.1, deadline - time.monotonic()))
        self._metrics.pending.set(self.lanes.pending + self.parking.held)

    async def _commit(self) -> None:
        # One at a time: two commits of one partition must not land out of order.
        async with self._commit_lock:
            offsets = self._tracker.committable()
            # A partition's done set may grow while its prefix stands still: commit then too.
            grown = self._tracker.take_grown()
            self._uncommitted = 0
            consumer = self._consumer
            if not (offsets or grown) or consumer is None:
                return
            commit = {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()}
            try:
                commit.update(await self.progress.write(grown, consumer.assignment()))
            except KafkaError as exc:
                # Only a hint for the next owner: the prefixes are committed without it.
                log.warning("could not write %s (%r)", DELIVERY_PROGRESS, exc)
                self._tracker.regrow(grown)
            if not commit:
                return
            try:
                await consumer.commit(commit)
                log.debug("committed %s", offsets)
                self.parking.committed(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # Rebalanced meanwhile: the new owner redoes these deliveries (same webhook-id).
                log.warning("delivery commit failed (%s); those deliveries may repeat", exc)
            except KafkaError as exc:
                # Not committed now: committed with the next prefix (or redone, same id).
                log.warning("delivery commit failed (%r); retried with the next one", exc)
                self._tracker.restore(offsets)
                self._tracker.regrow(grown)
