"""Partitions that wait for the Schema Registry: paused, never rejected, resumed in order.

The first record of a writer schema not yet cached fetches it inline. When the registry
cannot answer, the record's partition is sought back to that record and paused, and one
task per schema id asks again with backoff (:data:`BACKOFF_MAX` at most). Once the
registry answers (the schema, or "no such id"), every partition held for that id is
resumed and reads the record again: nothing is skipped, nothing rejected because the
registry was away, order within the partition kept. Other partitions go on meanwhile.
A partition revoked while paused is read by its next owner from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from webhook_stream.core.metrics import Metrics
from webhook_stream.core.records import Event
from webhook_stream.ingest.registry import RegistryUnavailable, SchemaRegistry
from webhook_stream.ingest.sources import Decoder, SchemaPending

__all__ = ["BACKOFF_MAX", "SchemaWaits"]

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
#: Longest wait between two requests for one schema id.
BACKOFF_MAX = 5.0


class SchemaWaits:
    """:meth:`parse` records; :meth:`hold` the partition of one whose schema is away."""

    def __init__(self, decoder: Decoder, metrics: Metrics) -> None:
        self.decoder = decoder
        self._metrics = metrics
        self._held: dict[int, set[TopicPartition]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        #: monotonic time since which the registry has not answered (None: it answers).
        self.unreachable_since: float | None = None

    @property
    def registry(self) -> SchemaRegistry | None:
        return self.decoder.registry

    def report(self) -> dict[str, Any] | None:
        """What /health says of the Schema Registry (None: none is configured)."""
        if self.registry is None:
            return None
        return {"reachable": self.unreachable_since is None, "waiting_partitions": self.waiting()}

    def waiting(self) -> int:
        """Partitions paused for the registry now."""
        return sum(len(tps) for tps in self._held.values())

    async def parse(self, record: object) -> Event:
        """The record's event; raises ``RejectedEvent``, or :class:`SchemaPending` when
        its writer schema cannot be had now (then :meth:`hold` its partition)."""
        try:
            return self.decoder.parse(record)
        except SchemaPending as pending:
            registry = self.registry
            if registry is None or pending.schema_id in self._tasks:
                raise
            try:
                await registry.fetch(pending.schema_id)
            except RegistryUnavailable as exc:
                self._failed(exc)
                raise pending from None
            self._answered()
            return self.decoder.parse(record)

    def hold(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, schema_id: int
    ) -> None:
        """Pause ``tp`` at ``offset`` until the registry answers for ``schema_id``."""
        self._consumer = consumer
        if tp in consumer.assignment():
            consumer.seek(tp, offset)
            consumer.pause(tp)
            self._held.setdefault(schema_id, set()).add(tp)
        if schema_id not in self._tasks:
            self._tasks[schema_id] = asyncio.create_task(self._retry(schema_id))
        self._metrics.registry_waiting.set(self.waiting())

    async def _retry(self, schema_id: int) -> None:
        registry = self.registry
        assert registry is not None
        delay = BACKOFF_FIRST
        try:
            while True:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                try:
                    await registry.fetch(schema_id)
                except RegistryUnavailable as exc:
                    self._failed(exc)
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                self._answered()
                return
        finally:
            del self._tasks[schema_id]
            self._resume(schema_id)

    def _resume(self, schema_id: int) -> None:
        consumer = self._consumer
        for tp in self._held.pop(schema_id, ()):
            if consumer is not None and tp in consumer.assignment():
                consumer.resume(tp)
        self._metrics.registry_waiting.set(self.waiting())

    def _failed(self, exc: RegistryUnavailable) -> None:
        self._metrics.registry_errors.inc()
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()
            log.warning(
                "%s: partitions that need a schema from it wait and retry (nothing is "
                "rejected for this)",
                exc,
            )

    def _answered(self) -> None:
        if self.unreachable_since is not None:
            log.warning(
                "Schema Registry answering again after %.0fs",
                time.monotonic() - self.unreachable_since,
            )
            self.unreachable_since = None

    async def close(self) -> None:
        """Stop asking (the partitions' next owner asks again)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.registry is not None:
            await self.registry.close()
