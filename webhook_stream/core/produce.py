"""Sizes and failures of the records a worker writes.

Every record is measured before it is sent (:func:`record_size`: aiokafka's own upper
bound, the one its producer checks against ``max_request_size``), so an event whose
records cannot fit is refused by the worker, not by the producer in the middle of a loop.
A send that fails anyway is sorted by :func:`send_failure`:

* ``record``: this record alone cannot be written (too large, refused by the broker);
  the caller sends the input to ``webhooks.rejected`` with :func:`failure_reason`.
* ``outage``: the broker could not be reached for longer than the producer's own retries
  (``request_timeout_ms``); no record can be written, so the worker stops and exits
  non-zero, committing nothing past the unfinished work.
* ``bug``: anything else, re-raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from aiokafka.errors import (
    BrokerResponseError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordListTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from webhook_stream.core.errors import RecordTooLarge

__all__ = ["RETRY_FIELDS_ROOM", "failure_reason", "record_size", "send_failure", "size_error"]

#: Bytes a delivery record must leave free at fan-out: its retry and dead-letter forms
#: add attempt times, status and error (the error text is capped well below this).
RETRY_FIELDS_ROOM = 4096

Failure = Literal["record", "outage", "bug"]


def record_size(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None = None
) -> int:
    """Upper bound of the record's size in a batch, as aiokafka's producer computes it."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers or ()))


def size_error(
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] | None,
    limit: int,
    what: str = "record",
) -> RecordTooLarge | None:
    """A :class:`RecordTooLarge` when the record exceeds ``limit``, else None."""
    size = record_size(key, value, headers)
    return RecordTooLarge(what, size, limit) if size > limit else None


def send_failure(exc: BaseException) -> Failure:
    """Is ``exc`` (from a send or its future) this record's fault, an outage, or a bug?"""
    if isinstance(exc, RecordTooLarge | MessageSizeTooLargeError | RecordListTooLargeError):
        return "record"
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError | ProducerClosed):
        return "outage"
    if isinstance(exc, KafkaError):
        # Retriable errors surface only once the producer's own retries ran out.
        if exc.retriable:
            return "outage"
        if isinstance(exc, BrokerResponseError):
            return "record"
    return "bug"


def failure_reason(exc: BaseException) -> str:
    """The ``webhooks.rejected`` reason for a record that could not be written."""
    if isinstance(exc, RecordTooLarge):
        return f"too_large: {exc}"
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
        return f"too_large: refused by the producer or broker ({type(exc).__name__})"
    return f"produce_failed: {type(exc).__name__}: {str(exc)[:200]}"
