"""Events in: consume every ``events.*`` topic, fan out, hand deliveries to Kafka.

A plain aiokafka consumer (group ``<app_id>-fanout``) with a regex subscription, because
Faust's aiokafka driver silently ignores ``topic(pattern=...)`` (faust-streaming#62).
aiokafka discovers new matching topics on each metadata refresh, so a topic created while
the worker runs is picked up within ``topic_discovery_interval`` plus a group re-join.

At least once: a batch's offsets are committed only after every delivery and rejected
record produced from it has been acknowledged by the broker. An event whose delivery
records would not fit the record limit goes to ``webhooks.rejected`` (``too_large``)
instead; a send that fails for one record is handled for that event (:meth:`_settle`).
Records that cannot be decoded at all (a corrupt batch, an unknown codec) are skipped to
``webhooks.rejected`` too (``undecodable``, :mod:`webhook_stream.core.fetch`). A partition
whose next record needs a writer schema the Schema Registry cannot give now waits, paused
(:mod:`~webhook_stream.ingest.schema_waits`).

Nothing is fanned out while the group membership's lease is expired (a stall:
:mod:`~webhook_stream.core.lease`): the partition's next owner does it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from webhook_stream.core import fetch, fetch_waits, kafka
from webhook_stream.core.errors import RejectedEvent
from webhook_stream.core.lease import Lease
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.operational import for_operator, input_pattern, not_to_itself
from webhook_stream.core.produce import failure_reason, send_failure
from webhook_stream.core.records import Delivery
from webhook_stream.core.rejected import reject
from webhook_stream.core.settings import Settings
from webhook_stream.core.tracing import OFF, Tracer
from webhook_stream.ingest.fanout import fan_out, oversized, queue_delivery, send_delivery
from webhook_stream.ingest.mappings import load_mappings
from webhook_stream.ingest.registry import SchemaRegistry
from webhook_stream.ingest.schema_waits import SchemaWaits
from webhook_stream.ingest.sources import Decoder, SchemaPending
from webhook_stream.subscriptions.catalog_store import EventTypeCatalog
from webhook_stream.subscriptions.registry import SubscriptionRegistry

__all__ = ["EventsIn"]

log = logging.getLogger(__name__)

#: Records handled between yields to the event loop: in-flight deliveries keep moving.
_YIELD_EVERY = 100
#: Input records per chunk handed to the committer, and chunks handled ahead of it (the
#: committer takes every chunk waiting into one commit).
_CHUNK = 50
_CHUNKS_AHEAD = 10


class EventsIn:
    """The fan-out loop. ``run()`` until cancelled."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        batcher: kafka.RecordBatcher,
        registry: SubscriptionRegistry,
        metrics: Metrics,
        tracer: Tracer = OFF,
        catalog: EventTypeCatalog | None = None,
    ) -> None:
        self._settings = settings
        self._tracer = tracer
        self._producer = producer
        self._batcher = batcher
        self._registry = registry
        self._metrics = metrics
        self._catalog = catalog
        self._running = True
        self._consumer: AIOKafkaConsumer | None = None
        self.listener = kafka.JoinedListener()
        self.lease = Lease(f"{settings.app_id}-fanout", settings.session_timeout)
        schema_registry = SchemaRegistry(settings) if settings.schema_registry_url else None
        mappings = load_mappings(settings.event_mappings)
        decoder = Decoder(settings.max_event_bytes, schema_registry, mappings)
        self.schemas = SchemaWaits(decoder, metrics)

    def stop(self) -> None:
        """Finish the current batch, commit it, and return from :meth:`run`."""
        self._running = False
        fetch_waits.wake(self._consumer)

    async def run(self) -> None:
        await self._registry.ready.wait()
        if self._catalog is not None:
            await self._catalog.ready.wait()  # schemas known before events are checked
        self._consumer = consumer = kafka.group_consumer(
            self._settings,
            "fanout",
            metadata_max_age_ms=int(self._settings.topic_discovery_interval * 1000),
            max_poll_records=1000,
        )
        pattern = input_pattern(self._settings.events_pattern)  # and webhooks.operational
        consumer.subscribe(pattern=pattern, listener=self.listener)
        began = self.lease.clock()
        await consumer.start()
        self.lease.attach(consumer, began)
        self._metrics.lag.watch(f"{self._settings.app_id}-fanout", consumer)
        log.info("fan-out consuming topics matching %s", pattern)
        # Chunks of handled records, committed in order by their own task as their sends
        # are acknowledged: the loop goes on meanwhile, and a kill -9 repeats one chunk or two.
        chunks: asyncio.Queue[_Chunk | None] = asyncio.Queue(maxsize=_CHUNKS_AHEAD)
        committer = asyncio.create_task(self._commit_chunks(consumer, chunks))
        try:
            while self._running and not committer.done():
                batch = await fetch.getmany(
                    consumer, timeout_ms=500, max_records=1000, idle_ms=fetch_waits.IDLE_POLL_MS
                )
                offsets: dict[TopicPartition, OffsetAndMetadata] = {}
                sent: list[_Sent] = []
                n = 0
                back: dict[TopicPartition, int] = {}
                for tp, records in batch.items():
                    for record in records:
                        if back or not self.lease.valid():
                            # Membership in doubt (a stall): another member may be fanning
                            # these out by now. Read again once confirmed, if still owned.
                            back[tp] = getattr(record, "first_offset", record.offset)
                            break
                        handled: _Sent | None
                        if isinstance(record, fetch.Undecodable):
                            handled = await self._skip(record)
                        else:
                            try:
                                handled = await self._handle(record)
                            except SchemaPending as pending:  # the registry is away
                                self.schemas.hold(consumer, tp, record.offset, pending.schema_id)
                                break
                        if handled is not None:
                            sent.append(handled)
                        offsets[tp] = OffsetAndMetadata(record.offset + 1, "")
                        n += 1
                        if n % _CHUNK == 0:
                            await chunks.put(_Chunk(offsets, sent))
                            offsets, sent = {}, []
                        if self._batcher.full:
                            await self._batcher.wait_for_room()  # bounded memory
                        elif n % _YIELD_EVERY == 0:
                            await asyncio.sleep(0)  # let HTTP responses in meanwhile
                if offsets:
                    await chunks.put(_Chunk(offsets, sent))
                if back:
                    for tp, offset in back.items():
                        if tp in consumer.assignment():
                            consumer.seek(tp, offset)
                    await self.lease.wait_change(0.5)
            if not committer.done():
                await chunks.put(None)  # stopping: commit what was handled, then return
            await committer  # raises what stopped it (an outage, a bug)
        finally:
            committer.cancel()
            self._metrics.lag.unwatch(f"{self._settings.app_id}-fanout")
            await self.schemas.close()
            await consumer.stop()

    async def _commit_chunks(
        self, consumer: AIOKafkaConsumer, chunks: asyncio.Queue[_Chunk | None]
    ) -> None:
        stopping = False
        while not stopping and (chunk := await chunks.get()) is not None:
            # Every chunk handled meanwhile goes in the same commit: one round trip however
            # far the loop got ahead, so what a kill -9 repeats stays near one commit's worth.
            sent, offsets = list(chunk.sent), dict(chunk.offsets)
            while not chunks.empty():
                more = chunks.get_nowait()
                if more is None:
                    stopping = True
                    break
                sent += more.sent
                offsets.update(more.offsets)
            await self._settle(sent)
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # Rebalanced meanwhile: the new owner fans these out again (same ids); the
                # delivery owners skip the copies of what they already attempted.
                log.warning("fan-out commit failed (%s); those events will be redone", exc)

    async def _handle(self, record: ConsumerRecord) -> _Sent | None:
        try:
            event = await self.schemas.parse(record)
        except RejectedEvent as exc:
            return await self._reject(record, exc.reason)
        if self._catalog is not None:
            violation = self._catalog.check(event)
            if violation is not None:
                return await self._reject(record, violation)
        deliveries = fan_out(event, self._registry.index, headers=record.headers)
        operator = for_operator(event, record.topic)  # the admin's, across tenants
        if operator is not None:
            deliveries += fan_out(operator, self._registry.index, headers=record.headers)
        deliveries = not_to_itself(event, deliveries)  # operational: never about itself
        if not deliveries:
            self._metrics.no_match.inc()
            return None
        if self._tracer.enabled:
            # The fan-out span, child of the event's context (or a new trace): every
            # delivery of the event, and so each of its attempts, continues it.
            traceparent, tracestate = self._tracer.fanout(
                record.topic,
                record.partition,
                record.offset,
                event.type,
                len(deliveries),
                event.traceparent,
                event.tracestate,
            )
            for delivery in deliveries:
                delivery.traceparent, delivery.tracestate = traceparent, tracestate
        limit = self._settings.max_record_bytes
        values = [d.encode() for d in deliveries]
        for delivery, value in zip(deliveries, values, strict=True):
            too_large = oversized(delivery, value, limit)
            if too_large is not None:
                # Not one of them is sent: the event goes whole to webhooks.rejected.
                return await self._reject(record, f"too_large: {too_large}")
        self._metrics.fanned_out.inc()
        futures = [
            queue_delivery(self._batcher, d, v) for d, v in zip(deliveries, values, strict=True)
        ]
        return _Sent(record, futures, deliveries)

    async def _reject(self, record: ConsumerRecord, reason: str) -> _Sent:
        self._metrics.rejected.inc()
        log.info("rejected %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        future = await reject(self._producer, record, reason, limit=self._settings.max_record_bytes)
        return _Sent(record, [future], None)

    async def _skip(self, skipped: fetch.Undecodable) -> _Sent:
        """Records no decoder could read go to ``webhooks.rejected``; reading goes on."""
        self._metrics.undecodable.inc()
        self._metrics.rejected.inc()
        future = await fetch.reject_undecodable(
            self._producer, skipped, self._settings.max_record_bytes
        )
        return _Sent(skipped, [future], None)

    async def _settle(self, sent: list[_Sent]) -> None:
        """Wait for every send of a batch; handle, per event, the ones that failed.

        A record fault (say, the broker's own size limit is lower than ours) fails every
        record that shared its batch, so an event's deliveries are sent again one by one
        first; what still fails sends the event to ``webhooks.rejected`` with the reason.
        An outage or a bug is raised: the worker stops, nothing of this batch committed.
        """
        results = await asyncio.gather(
            *(f for s in sent for f in s.futures), return_exceptions=True
        )
        at = 0
        for item in sent:
            failure = next(
                (r for r in results[at : at + len(item.futures)] if isinstance(r, BaseException)),
                None,
            )
            at += len(item.futures)
            if failure is None:
                continue
            if send_failure(failure) != "record" or item.deliveries is None:
                raise failure  # a rejected record that cannot be written: cannot go on
            failure = await self._resend(item.deliveries)
            if failure is None:
                continue
            retry = await self._reject(item.record, failure_reason(failure))
            await asyncio.gather(*retry.futures)

    async def _resend(self, deliveries: list[Delivery]) -> BaseException | None:
        for delivery in deliveries:
            try:
                await (await send_delivery(self._producer, delivery))
            except Exception as exc:
                if send_failure(exc) != "record":
                    raise
                return exc
        return None


@dataclass(slots=True)
class _Chunk:
    offsets: dict[TopicPartition, OffsetAndMetadata]
    sent: list[_Sent]


@dataclass(slots=True)
class _Sent:
    """The sends one input record caused: its deliveries (None: its rejected record)."""

    record: ConsumerRecord | fetch.Undecodable
    futures: list[asyncio.Future]
    deliveries: list[Delivery] | None
