"""Fan-out: one event joined with the subscription table gives one delivery per endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from webhook_stream.core.errors import RecordTooLarge
from webhook_stream.core.kafka import RecordBatcher
from webhook_stream.core.produce import RETRY_FIELDS_ROOM, size_error
from webhook_stream.core.records import Delivery, Event, delivery_id_for, iso_now, record_headers
from webhook_stream.core.topics import DELIVERIES
from webhook_stream.subscriptions.filters import FilterSubject
from webhook_stream.subscriptions.index import SubscriptionIndex
from webhook_stream.subscriptions.model import Subscription

__all__ = ["fan_out", "oversized", "queue_delivery", "send_delivery"]


def _headers(delivery: Delivery) -> list[tuple[str, bytes]]:
    return record_headers(
        delivery.delivery_id,
        "replay" if delivery.origin == "replay" else "pending",
        delivery.traceparent,
        delivery.tracestate,
        incarnation=delivery.incarnation,
    )


async def send_delivery(producer: AIOKafkaProducer, delivery: Delivery) -> asyncio.Future:
    """Queue ``delivery`` on ``webhooks.deliveries`` (keyed by endpoint); returns the future."""
    return await producer.send(
        DELIVERIES, delivery.encode(), key=delivery.endpoint_id.encode(), headers=_headers(delivery)
    )


def queue_delivery(
    batcher: RecordBatcher, delivery: Delivery, value: bytes | None = None
) -> asyncio.Future:
    """:func:`send_delivery` through a batcher: the hot path, many deliveries per turn.

    ``value`` is ``delivery.encode()`` when the caller has it already.
    """
    return batcher.send(
        DELIVERIES,
        delivery.encode() if value is None else value,
        key=delivery.endpoint_id.encode(),
        headers=_headers(delivery),
    )


def oversized(delivery: Delivery, value: bytes, limit: int) -> RecordTooLarge | None:
    """Why ``delivery`` (encoded: ``value``) cannot be written, with room for its retries."""
    room = limit - RETRY_FIELDS_ROOM
    if len(value) + len(delivery.endpoint_id) * 4 + 200 < room:  # the hot path: no doubt
        return None
    return size_error(
        delivery.endpoint_id.encode(), value, _headers(delivery), room, "delivery record"
    )


def fan_out(
    event: Event,
    index: SubscriptionIndex,
    *,
    only_endpoint: str | None = None,
    origin: str = "event",
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> list[Delivery]:
    """Deliveries for every endpoint whose pattern and tenant match ``event`` and whose
    ``filter`` (if any) holds for it and its record ``headers``.

    Disabled endpoints are included: the delivery path dead-letters them with reason
    ``endpoint_disabled`` so nothing vanishes silently. Each carries the event's trace
    context.
    """
    now = iso_now()
    subs = index.match(event.type, event.tenant_id)
    if only_endpoint is not None:
        subs = [sub for sub in subs if sub.id == only_endpoint]
    for sub in subs:  # a loop, not any(<generator>): this runs for every event
        if sub.filter is not None:
            subs = _filtered(subs, FilterSubject(event, headers))
            break
    return [
        Delivery(
            delivery_id=delivery_id_for(event.id, sub.id),
            endpoint_id=sub.id,
            tenant_id=event.tenant_id,
            event=event,
            created_at=now,
            origin=origin,
            traceparent=event.traceparent,
            tracestate=event.tracestate,
            incarnation=sub.incarnation,
        )
        for sub in subs
    ]


def _filtered(subs: list[Subscription], subject: FilterSubject) -> list[Subscription]:
    # One subject per event: ``data`` is parsed once, whatever the number of filters.
    return [sub for sub in subs if sub.filter is None or sub.filter.test(subject)]
