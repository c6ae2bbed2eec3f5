"""One group-less consumer tailing every compacted table of a worker.

Each :class:`~webhook_stream.core.table.CompactedTable` can tail its topic alone, but a
worker holds several (subscriptions, event types, tenant tokens, endpoint health), and on
Tansu, which never answers a fetch early, each consumer costs one fetch round trip per
wait on the worker and on the broker while nothing happens. One consumer is assigned
every partition of all their topics, reads them from the beginning and hands each table
the records of its own topic, in offset order per partition; ``ready``,
:meth:`~webhook_stream.core.table.CompactedTable.wait_applied`, ``caught_up`` and
``end_offsets`` mean what they mean for a table tailing alone.

The tables are given at construction and opened together, so none starts late (a table
joining a running tail would have to be replayed from its beginning).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from aiokafka import TopicPartition

from webhook_stream.core import fetch, fetch_waits, kafka
from webhook_stream.core.fetch_waits import IDLE_POLL_MS
from webhook_stream.core.settings import Settings
from webhook_stream.core.table import CompactedTable

__all__ = ["TableTail"]

log = logging.getLogger(__name__)


class TableTail:
    """Tails the topics of ``tables`` (one table per topic) with one consumer."""

    def __init__(self, settings: Settings, *tables: CompactedTable) -> None:
        topics = [table.topic for table in tables]
        if len(set(topics)) != len(topics):
            raise ValueError(f"one table per topic: {topics}")
        self._settings = settings
        self._tables = {table.topic: table for table in tables}
        self._running = True
        self._consumer: Any = None

    def stop(self) -> None:
        self._running = False
        fetch_waits.wake(self._consumer)
        for table in self._tables.values():
            table.stop()

    async def run(self) -> None:
        self._consumer = consumer = kafka.tail_consumer(self._settings, background=True)
        await consumer.start()
        try:
            by_topic = {topic: await fetch.partitions_of(consumer, topic) for topic in self._tables}
            every = [tp for tps in by_topic.values() for tp in tps]
            consumer.assign(every)
            await consumer.seek_to_beginning(*every)
            ends = {
                topic: await self._tables[topic].attach(consumer, tps)
                for topic, tps in by_topic.items()
            }
            while self._running:
                # Once every table is loaded, a quiet tail wakes only when records come.
                idle = IDLE_POLL_MS if all(t.ready.is_set() for t in self._tables.values()) else 0
                batch = await fetch.getmany(
                    consumer, timeout_ms=500, max_records=5000, idle_ms=idle
                )
                per_topic: dict[str, list[tuple[TopicPartition, list[Any]]]] = defaultdict(list)
                for tp, records in batch.items():
                    per_topic[tp.topic].append((tp, records))
                for topic, table in self._tables.items():
                    await table.consume(per_topic.get(topic, ()), ends[topic])
        finally:
            for table in self._tables.values():
                await table.detach()
            await consumer.stop()
