"""Dead-letter: park deliveries that will not be attempted again on ``webhooks.deadletter``.

Reasons: ``fatal_status`` (non-retryable response), ``exhausted`` (schedule used up),
``endpoint_missing`` (deleted while the delivery waited), ``endpoint_disabled``,
``tenant_mismatch`` (the endpoint moved to another tenant), ``invalid_target``
(refused URL or address), ``parked_backlog`` (a parked backlog too slow to drain held a
``webhooks.parked`` partition: :mod:`webhook_stream.delivery.readback`). The record
carries the event, so it can be replayed.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from webhook_stream.core.records import DeadLetterRecord, Delivery, record_headers
from webhook_stream.core.topics import DEADLETTER

__all__ = ["dead_letter"]


async def dead_letter(
    producer: AIOKafkaProducer, delivery: Delivery, reason: str
) -> asyncio.Future:
    """Queue the dead-letter record; returns the send future to await before acking."""
    record = DeadLetterRecord(delivery, reason)
    return await producer.send(
        DEADLETTER,
        record.encode(),
        key=delivery.endpoint_id.encode(),
        headers=record_headers(
            delivery.delivery_id,
            "dead_lettered",
            delivery.traceparent,
            delivery.tracestate,
            incarnation=delivery.incarnation,
        ),
    )
