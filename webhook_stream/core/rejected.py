"""Rejected input: records that cannot be parsed or are refused go to ``webhooks.rejected``.

Never silently dropped: the record keeps the reason, where the input came from, and the
original key, value and headers (base64). Base64 grows a value by a third, so a rejected
record of a large input would not fit the record limit: then it keeps as much of the
original as fits (a prefix of the value; headers and key only if they fit), says so
(``truncated``, ``value_bytes``, reason ``too_large: ...``), and always keeps the source
topic, partition and offset, from which the whole input can be fetched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from webhook_stream.core.produce import record_size
from webhook_stream.core.records import RejectedRecord, SourceRef
from webhook_stream.core.topics import REJECTED

__all__ = ["reject", "rejected_record"]

#: Kept free below the limit for the JSON around the value.
_SLACK = 256


async def reject(
    producer: AIOKafkaProducer,
    record: Any,
    reason: str,
    value: bytes | None = None,
    *,
    limit: int | None = None,
) -> asyncio.Future:
    """Queue ``record`` (an aiokafka or Faust message) for ``webhooks.rejected``.

    ``value`` replaces the original bytes when they must be redacted (subscription secrets).
    ``limit`` is the largest record the producer takes (default: the producer's own).
    Returns the send future, to await before committing past the input.
    """
    headers = record.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    if limit is None:
        limit = getattr(producer, "_max_request_size", 1_048_576)
    key, encoded = rejected_record(
        RejectedRecord(
            reason=reason,
            source=SourceRef(record.topic, record.partition, record.offset),
            key=record.key,
            value=record.value if value is None else value,
            headers=[(k, v) for k, v in headers],
        ),
        limit,
    )
    return await producer.send(REJECTED, encoded, key=key)


def rejected_record(rejected: RejectedRecord, limit: int) -> tuple[bytes | None, bytes]:
    """The Kafka key and value of ``rejected``, cut down to fit ``limit`` bytes."""
    original = rejected.value
    rejected.value_bytes = None if original is None else len(original)
    key = rejected.key
    encoded = rejected.encode()
    if record_size(key, encoded) <= limit:
        return key, encoded
    rejected.truncated = True
    if not rejected.reason.startswith("too_large"):
        rejected.reason = f"too_large: {rejected.reason}"
    rejected.reason = rejected.reason[:1024]
    rejected.value = b""
    # What must stay: reason and source. Headers, then the key, go if they alone are too much.
    if record_size(key, rejected.encode()) + _SLACK > limit:
        rejected.headers = []
    if record_size(key, rejected.encode()) + _SLACK > limit:
        rejected.key = key = None
    room = limit - record_size(key, rejected.encode()) - _SLACK
    rejected.value = None if original is None else original[: max(0, room) * 3 // 4]
    return key, rejected.encode()
