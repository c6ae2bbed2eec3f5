"""Rejected input: records that cannot be parsed or are refused go to ``webhooks.rejected``.

Never silently dropped: the record keeps the reason, where the input came from, and the
original key, value and headers (base64).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from webhook_stream.core.records import RejectedRecord, SourceRef
from webhook_stream.core.topics import REJECTED

__all__ = ["reject"]


async def reject(
    producer: AIOKafkaProducer, record: Any, reason: str, value: bytes | None = None
) -> asyncio.Future:
    """Queue ``record`` (an aiokafka or Faust message) for ``webhooks.rejected``.

    ``value`` replaces the original bytes when they must be redacted (subscription secrets).
    Returns the send future, to await before committing past the input.
    """
    headers = record.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    rejected = RejectedRecord(
        reason=reason,
        source=SourceRef(record.topic, record.partition, record.offset),
        key=record.key,
        value=record.value if value is None else value,
        headers=[(k, v) for k, v in headers],
    )
    return await producer.send(REJECTED, rejected.encode(), key=record.key)
