"""Between an attempt and the commit: a delivery record's offset is committable once its
result records are acknowledged; a record that cannot be read, or whose result cannot be
written, goes to ``webhooks.rejected`` instead, and the worker stops rather than commit
what is not durable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from webhook_stream.core import fetch
from webhook_stream.core.metrics import Metrics
from webhook_stream.core.produce import failure_reason, send_failure
from webhook_stream.core.rejected import reject
from webhook_stream.core.topics import REJECTED
from webhook_stream.delivery.lanes import OffsetTracker, Tracked

__all__ = ["Results"]

log = logging.getLogger(__name__)


class Results:
    """The sends a delivery record's commit waits for, and the records rejected instead."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        tracker: OffsetTracker,
        metrics: Metrics,
        max_record_bytes: int,
        crash: Callable[[BaseException], None],
    ) -> None:
        self._producer = producer
        self._tracker = tracker
        self._metrics = metrics
        self._limit = max_record_bytes
        self._crash = crash
        #: Sends not yet acknowledged: a drain waits for them.
        self.sending: set[asyncio.Future[Any]] = set()

    def watch(self, record: ConsumerRecord, entry: Tracked, fut: asyncio.Future[Any]) -> None:
        """Mark ``entry`` done once ``fut`` (its result records) is acknowledged."""
        self.sending.add(fut)
        fut.add_done_callback(partial(self._sent, record, entry))

    async def reject(self, record: ConsumerRecord, reason: str) -> asyncio.Future[Any]:
        return await reject(self._producer, record, reason, limit=self._limit)

    async def undecodable(self, tp: TopicPartition, skipped: fetch.Undecodable) -> None:
        """Skipped records go to webhooks.rejected; committed past once that is written."""
        self._metrics.undecodable.inc()
        entry = self._tracker.track(tp, skipped.offset)
        fut = await fetch.reject_undecodable(self._producer, skipped, self._limit)
        self.sending.add(fut)
        fut.add_done_callback(partial(self._undecodable_sent, entry))

    def _undecodable_sent(self, entry: Tracked, fut: asyncio.Future[Any]) -> None:
        self.sending.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._tracker.done(entry)
        else:
            log.critical("could not write %s: %r", REJECTED, exc)
            self._crash(exc)

    def _sent(self, record: ConsumerRecord, entry: Tracked, fut: asyncio.Future[Any]) -> None:
        self.sending.discard(fut)
        if fut.cancelled():
            return  # shutting down mid-send: not committed, redelivered
        exc = fut.exception()
        if exc is None:
            self._tracker.done(entry)
        elif send_failure(exc) == "record":
            # This delivery's result could not be written: park the delivery, go on.
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            log.error("could not write the result of %s (%r): it goes to %s", where, exc, REJECTED)
            task = asyncio.ensure_future(self._reject_after(record, entry, exc))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)
        else:
            # Never commit what is not durable: stop the worker; its successor re-reads it.
            log.critical("could not hand a delivery result to Kafka: %r", exc)
            self._crash(exc)

    async def _reject_after(
        self, record: ConsumerRecord, entry: Tracked, exc: BaseException
    ) -> None:
        try:
            await (await self.reject(record, failure_reason(exc)))
        except Exception as again:  # noqa: BLE001 - the worker stops on it
            log.critical("could not write %s either: %r", REJECTED, again)
            self._crash(again)
            return
        self._tracker.done(entry)
