"""Events in: consume every ``events.*`` topic, fan out, hand deliveries to Kafka.

A plain aiokafka consumer (group ``<app_id>-fanout``) with a regex subscription, because
Faust's aiokafka driver silently ignores ``topic(pattern=...)`` (faust-streaming#62).
aiokafka discovers new matching topics on each metadata refresh, so a topic created while
the worker runs is picked up within ``topic_discovery_interval`` plus a group re-join.

At least once: a batch's offsets are committed only after every delivery and rejected
record produced from it has been acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from webhook_stream.core import kafka
from webhook_stream.core.errors import RejectedEvent
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.settings import Settings
from webhook_stream.ingest.decoding import parse_record
from webhook_stream.ingest.fanout import fan_out, queue_delivery
from webhook_stream.ingest.rejected import reject
from webhook_stream.subscriptions.registry import SubscriptionRegistry

__all__ = ["EventsIn"]

log = logging.getLogger(__name__)

#: Records handled between yields to the event loop: in-flight deliveries keep moving.
_YIELD_EVERY = 100


class EventsIn:
    """The fan-out loop. ``run()`` until cancelled."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        batcher: kafka.RecordBatcher,
        registry: SubscriptionRegistry,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._batcher = batcher
        self._registry = registry
        self._metrics = metrics
        self._running = True
        self.listener = kafka.JoinedListener()

    def stop(self) -> None:
        """Finish the current batch, commit it, and return from :meth:`run`."""
        self._running = False

    async def run(self) -> None:
        await self._registry.ready.wait()
        consumer = kafka.group_consumer(
            self._settings,
            "fanout",
            metadata_max_age_ms=int(self._settings.topic_discovery_interval * 1000),
            max_poll_records=1000,
        )
        consumer.subscribe(pattern=self._settings.events_pattern, listener=self.listener)
        await consumer.start()
        log.info("fan-out consuming topics matching %s", self._settings.events_pattern)
        try:
            while self._running:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                if not batch:
                    continue
                offsets: dict[TopicPartition, OffsetAndMetadata] = {}
                futures: list[asyncio.Future] = []
                for tp, records in batch.items():
                    for n, record in enumerate(records, 1):
                        futures.extend(await self._handle(record))
                        if self._batcher.full:
                            await self._batcher.wait_for_room()  # bounded memory
                        elif n % _YIELD_EVERY == 0:
                            await asyncio.sleep(0)  # let HTTP responses in meanwhile
                    offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "")
                await asyncio.gather(*futures)
                try:
                    await consumer.commit(offsets)
                except (CommitFailedError, IllegalStateError) as exc:
                    # Rebalanced meanwhile: the new owner fans these out again (same ids).
                    log.warning("fan-out commit failed (%s); batch will be redone", exc)
        finally:
            await consumer.stop()

    async def _handle(self, record: ConsumerRecord) -> list[asyncio.Future]:
        try:
            event = parse_record(record, self._settings.max_event_bytes)
        except RejectedEvent as exc:
            self._metrics.rejected.inc()
            log.info(
                "rejected %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc.reason
            )
            return [await reject(self._producer, record, exc.reason)]
        deliveries = fan_out(event, self._registry.index)
        (self._metrics.fanned_out if deliveries else self._metrics.no_match).inc()
        return [queue_delivery(self._batcher, d) for d in deliveries]
